"""The AU cache: per dataset and detector, the evidence of every image, read memory-mapped.

Layout of a cache directory (built by :mod:`tagfer.au.build`)::

    <cache>/meta.json             format, dataset, detector {name, version, au_list}, box_mode, box_aus,
                                  source (how to rebuild), quality thresholds at build time,
                                  splits {split: {fingerprint, records, rows, skipped, shards}}
    <cache>/<split>/plan.json     what this split is built from (fingerprint, record count, shard size)
    <cache>/<split>/shard-00000.npy   structured rows, one per image (tagfer.au.shards)
    <cache>/<split>/shard-00000.json  ids of those rows, corrupt images skipped, sha256 of the .npy
    <cache>/<split>/index.json    the finished split: shards with checksums and ids, "skipped" {id: error},
                                  "dropped" {id: quality verdict} (images the face-quality filter drops)

A split appears in ``meta.json`` only once all its shards are written, so a killed build leaves a
cache that :meth:`AUCache.open` does not see (the build resumes from the finished shards).
Coordinates are pixels of the original image.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np

from tagfer.au.quality import VERDICTS, quality_codes
from tagfer.au.shards import row_evidence, sha256_file
from tagfer.core.evidence import AUEvidence

FORMAT = "tagfer-au-cache"
FORMAT_VERSION = 1


class CacheMismatchError(RuntimeError):
    """The AU cache does not fit the dataset or the configuration; the message says how to rebuild it."""


def read_meta(directory: Path) -> dict | None:
    """``meta.json`` of an AU cache directory, or None when there is none."""
    path = Path(directory) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except ValueError as err:
        raise CacheMismatchError(f"{path} is not valid JSON ({err}); delete {directory} and build the cache again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CacheMismatchError(f"{path} is not a tagfer AU cache (format {meta.get('format') if isinstance(meta, dict) else meta!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CacheMismatchError(
            f"{path}: AU cache format version {meta.get('format_version')} but this tagfer reads {FORMAT_VERSION}; "
            f"rebuild it:\n  {rebuild_command(meta, list(meta.get('splits', {})), directory)}"
        )
    return meta


def rebuild_command(meta: dict, splits: list[str], directory, detector: str | None = None) -> str:
    """The ``tagfer au-cache build`` command line that rebuilds ``splits`` of the cache in ``directory``."""
    source = meta.get("source", {})
    args = ["tagfer", "au-cache", "build", "--dataset", meta.get("dataset", "NAME"), "--root", source.get("root", "DIR")]
    for split in splits:
        args += ["--split", split]
    for option, value in sorted(source.get("reader_options", {}).items()):
        args += [f"--{option.replace('_', '-')}", str(value)]
    args += ["--detector", detector or meta.get("detector", {}).get("name", "NAME")]
    if source.get("external") and (detector is None or detector == meta.get("detector", {}).get("name")):
        args += ["--external", source["external"]]
    if source.get("crop_fallback"):
        args.append("--crop-fallback")
    args += ["--box-mode", meta.get("box_mode", "region"), "--out", str(directory), "--overwrite"]
    return shlex.join(args)


class AUCache:
    """Read access to a built AU cache (see the module docstring for the layout).

    Use :meth:`open`. ``ids`` are record ids (image paths relative to the dataset root) of every split
    in the cache; corrupt images skipped at build time are not among them (see :attr:`skipped`).
    """

    def __init__(self, directory: Path, meta: dict, shards: list[np.ndarray], index: dict[str, tuple[int, int]], splits: dict):
        self.directory = directory
        self.meta = meta
        self.prob_aus: tuple[str, ...] = tuple(meta["detector"]["au_list"])
        self.box_aus: tuple[str, ...] = tuple(meta["box_aus"])
        self._shards = shards
        self._index = index
        self._splits = splits
        self.skipped: dict[str, str] = {k: v for info in splits.values() for k, v in info["skipped"].items()}
        self._codes = [np.asarray(shard["quality"]) for shard in shards]

    @classmethod
    def open(
        cls,
        directory,
        expect_fingerprint: dict[str, str] | None = None,
        expect_detector: str | None = None,
        expect_version: str | None = None,
        expect_box_mode: str | None = None,
        quality=None,
    ) -> AUCache:
        """Open the cache in ``directory``, memory-mapping its shards.

        Args:
            expect_fingerprint: ``{split: fingerprint}`` (:func:`tagfer.au.fingerprint.dataset_fingerprint`)
                every split of which must be in the cache with that fingerprint.
            expect_detector / expect_version / expect_box_mode: what the configuration asks for.
            quality: a ``QualityConfig`` to recompute the quality verdicts with (default: the build's).

        Raises:
            FileNotFoundError: no cache in ``directory``.
            CacheMismatchError: the cache does not match; the message holds the command that rebuilds it.
        """
        directory = Path(directory)
        meta = read_meta(directory)
        if meta is None:
            raise FileNotFoundError(f"no AU cache in {directory} (no meta.json); build one with `tagfer au-cache build`")
        check_expectations(meta, directory, expect_fingerprint, expect_detector, expect_version, expect_box_mode)
        shards, index, splits = [], {}, {}
        for split in meta["splits"]:
            split_index = json.loads((directory / split / "index.json").read_text())
            splits[split] = split_index
            for shard in split_index["shards"]:
                try:
                    rows = np.load(directory / split / shard["file"], mmap_mode="r", allow_pickle=False)
                except (OSError, ValueError) as err:
                    raise CacheMismatchError(
                        f"{directory / split / shard['file']} is damaged or missing ({err}); rebuild:\n  {rebuild_command(meta, [split], directory)}"
                    ) from None
                if len(rows) != len(shard["ids"]):
                    raise CacheMismatchError(
                        f"{directory / split / shard['file']}: {len(rows)} rows but the index lists {len(shard['ids'])} ids; "
                        f"rebuild:\n  {rebuild_command(meta, [split], directory)}"
                    )
                for row, record_id in enumerate(shard["ids"]):
                    index[record_id] = (len(shards), row)
                shards.append(rows)
        cache = cls(directory, meta, shards, index, splits)
        if quality is not None:
            cache.apply_quality(quality)
        return cache

    # ---------------------------------------------------------------------------------- access
    @property
    def ids(self) -> list[str]:
        return list(self._index)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def split_index(self, split: str) -> dict:
        """The ``<split>/index.json`` content: shards (file, sha256, ids), ``skipped`` and ``dropped``."""
        return self._splits[split]

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._index

    def _row(self, record_id: str) -> np.ndarray:
        try:
            shard, row = self._index[record_id]
        except KeyError:
            reason = f" (skipped at build time: {self.skipped[record_id]})" if record_id in self.skipped else ""
            raise KeyError(f"{record_id!r} is not in the AU cache {self.directory}{reason}") from None
        return self._shards[shard][row]

    def get(self, record_id: str) -> AUEvidence:
        """The evidence of one image; ``KeyError`` (naming the cache) when the id is not cached."""
        return row_evidence(self._row(record_id), self.prob_aus, self.box_aus)

    def lookup(self, record_id: str) -> AUEvidence | None:
        """Like :meth:`get` but None for an id that is not cached (a corrupt image skipped at build time)."""
        return self.get(record_id) if record_id in self._index else None

    def verdict(self, record_id: str) -> str:
        """The face-quality verdict of one image (:data:`tagfer.au.quality.VERDICTS`)."""
        shard, row = self._index[record_id] if record_id in self._index else self._row(record_id)
        return VERDICTS[int(self._codes[shard][row])]

    def passed_quality(self, record_id: str) -> bool:
        return self.verdict(record_id) == "ok"

    @property
    def dropped(self) -> dict[str, str]:
        """``{id: verdict}`` of every cached image the face-quality filter drops (verdict other than ``ok``)."""
        return {record_id: self.verdict(record_id) for record_id in self._index if not self.passed_quality(record_id)}

    def apply_quality(self, config) -> None:
        """Recompute every verdict from the stored measures with another ``QualityConfig``."""
        codes = []
        for shard in self._shards:
            boxes = np.asarray(shard["face_box"], dtype=np.float64)
            size = np.nan_to_num(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), nan=0.0)
            codes.append(
                quality_codes(
                    np.asarray(shard["face_found"], dtype=bool),
                    np.asarray(shard["face_score"], dtype=np.float64),
                    size,
                    np.asarray(shard["sharpness"], dtype=np.float64),
                    config,
                )
            )
        self._codes = codes

    def show(self, record_id: str) -> dict:
        """The ``tagfer au-cache show --json`` object of one image (original-image pixels)."""
        evidence = self.get(record_id)
        data = {"id": record_id, **_rounded(evidence.to_json()), "quality": self.verdict(record_id)}
        return {key: data[key] for key in ("id", "face_found", "face_box", "landmarks", "au_prob", "au_box", "face_score", "quality")}

    def verify(self) -> None:
        """Recompute every shard checksum; ``CacheMismatchError`` naming the first damaged shard."""
        for split, split_index in self._splits.items():
            for shard in split_index["shards"]:
                path = self.directory / split / shard["file"]
                if sha256_file(path) != shard["sha256"]:
                    raise CacheMismatchError(
                        f"{path} is damaged (checksum mismatch); rebuild:\n  {rebuild_command(self.meta, [split], self.directory)}"
                    )


def _rounded(value, digits: int = 4):
    """Floats of a JSON-like value rounded to ``digits`` decimals (the cache stores float32)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def check_expectations(meta, directory, expect_fingerprint, expect_detector, expect_version, expect_box_mode) -> None:
    detector = meta["detector"]
    if expect_detector is not None and detector["name"] != expect_detector:
        raise CacheMismatchError(
            f"the AU cache {directory} was built by detector {detector['name']!r} ({detector['version']}) but the "
            f"configuration asks for {expect_detector!r}. Rebuild it (or point au.cache_dir / the spec's au_cache elsewhere):\n  "
            + rebuild_command(meta, list(meta["splits"]), directory, detector=expect_detector)
        )
    if expect_version is not None and detector["version"] != expect_version:
        raise CacheMismatchError(
            f"the AU cache {directory} was built by {detector['name']} version {detector['version']!r}; this tagfer's "
            f"detector is {expect_version!r}. Rebuild it:\n  " + rebuild_command(meta, list(meta["splits"]), directory)
        )
    if expect_box_mode is not None and meta["box_mode"] != expect_box_mode:
        rebuild = rebuild_command({**meta, "box_mode": expect_box_mode}, list(meta["splits"]), directory)
        raise CacheMismatchError(
            f"the AU cache {directory} has box_mode {meta['box_mode']!r} but the configuration asks for "
            f"{expect_box_mode!r}. Rebuild it:\n  {rebuild}"
        )
    for split, fingerprint in (expect_fingerprint or {}).items():
        stored = meta["splits"].get(split)
        if stored is None:
            raise CacheMismatchError(
                f"the AU cache {directory} has no split {split!r} (it has {sorted(meta['splits'])}). Build it:\n  "
                + rebuild_command(meta, [split], directory).replace(" --overwrite", "")
            )
        if stored["fingerprint"] != fingerprint:
            raise CacheMismatchError(
                f"the AU cache {directory} does not match dataset {meta['dataset']!r} split {split!r}: the images, "
                f"labels or ids changed since it was built (fingerprint {stored['fingerprint'][:12]}… ≠ "
                f"{fingerprint[:12]}…). Rebuild it:\n  " + rebuild_command(meta, [split], directory)
            )


# ---------------------------------------------------------------------------------- entry points
def default_cache_dir(spec, au_cfg) -> Path:
    """``spec.au_cache`` when given, else ``<au.cache_dir>/<dataset>-<detector>-<root hash>``.

    The hash (8 hex digits of the SHA-1 of the absolute dataset root) keeps two copies of a dataset
    (e.g. two synthetic sets) from sharing one cache directory.
    """
    if spec.au_cache:
        return Path(spec.au_cache)
    root_hash = hashlib.sha1(str(Path(spec.root).resolve()).encode()).hexdigest()[:8]
    return Path(au_cfg.cache_dir) / f"{spec.name}-{au_cfg.detector}-{root_hash}"


def show_command(args) -> int:
    """``tagfer au-cache show --cache DIR --id ID [--json]``."""
    cache = AUCache.open(args.cache)
    data = cache.show(args.id)
    if args.json:
        print(json.dumps(data))
        return 0
    print(f"{data['id']}  face_found={data['face_found']}  quality={data['quality']}  face_box={data['face_box']}")
    for au in sorted(data["au_prob"], key=lambda a: -data["au_prob"][a]):
        box = data["au_box"].get(au)
        print(f"  {au:5s} p={data['au_prob'][au]:.3f}  box={box}")
    return 0


__all__ = ["AUCache", "CacheMismatchError", "default_cache_dir", "rebuild_command"]
