"""Build the AU cache of a dataset: run a detector over every image, in shards, resumably, in parallel.

``tagfer au-cache build --dataset NAME --root DIR --detector NAME --out DIR``
(:mod:`tagfer.au.commands`) reads each requested split with the dataset reader and hands its records to
:func:`build_split` (this package reads no dataset), which

1. sorts the records by id and cuts them into shards of ``shard_size``;
2. writes ``<out>/<split>/plan.json`` (fingerprint, ids, detector, box mode, shard size) — a build
   resumed with the same plan keeps every finished shard (checksum verified) and recomputes the rest;
   a different plan for an unfinished split starts that split over;
3. runs the missing shards in worker processes (``workers`` > 0) or in-process: each image is decoded
   (``tagfer.data.images.decode_image``, reduced to at most ``detect_max_pixels``), passed to the
   detector (landmarks and boxes scaled back to original pixels: ``AUDetector.detect_decoded``),
   measured by the face-quality filter (on the decoded image), and stored as one row; an image that
   cannot be decoded — whatever the decoder raised — is skipped and listed with its reason (or raises
   with ``strict``); a face that is not found is stored with ``face_found = False``;
4. writes ``<out>/<split>/index.json`` and finally records the split in ``<out>/meta.json``.

The build holds ``<out>`` (:func:`tagfer.core.run_lock.hold`, lock file ``<out>/.lock``): a second build of the
same cache stops at once naming the holder (a rank of the same distributed launch waits for it instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tagfer.au.cache import (
    FORMAT,
    FORMAT_VERSION,
    AUCache,
    CacheMismatchError,
    check_expectations,
    default_cache_dir,
    read_meta,
    rebuild_command,
)
from tagfer.au.detectors import DetectorSpec
from tagfer.au.fingerprint import dataset_fingerprint
from tagfer.au.quality import VERDICTS, laplacian_sharpness, quality_verdict
from tagfer.au.quality import face_size as box_face_size
from tagfer.au.shards import atomic_write_json, evidence_row, read_shard_info, row_dtype, shard_name, write_shard
from tagfer.core.config import SPLITS, AUConfig, DatasetSpec, QualityConfig
from tagfer.core.regions import scale_box
from tagfer.core.run_lock import hold
from tagfer.core.vocabulary import AU_LIST

log = logging.getLogger(__name__)

#: DatasetSpec fields that change what a reader returns (written into the rebuild command when not default).
READER_OPTIONS = ("image_variant", "layout", "label_mode", "num_classes", "num_samples", "image_size", "seed")


# ------------------------------------------------------------------------------------------- workers
@dataclasses.dataclass(frozen=True)
class ShardTask:
    index: int
    records: list
    directory: Path


_WORKER: dict = {}


def _init_worker(detector: DetectorSpec, quality: dict, strict: bool, max_pixels: int | None) -> None:
    _WORKER.update(detector=detector.create(), quality=QualityConfig(**quality), strict=strict, max_pixels=max_pixels)


def _run_shard(task: ShardTask) -> tuple[int, int, Counter]:
    """Detect every record of one shard and write the shard; returns (index, records done, verdict counts)."""
    from tagfer.data.images import CorruptImageError, decode_image

    detector, quality, strict = _WORKER["detector"], _WORKER["quality"], _WORKER["strict"]
    prob_aus, box_aus = detector.au_list, AU_LIST
    ids, rows, skipped, counts = [], [], {}, Counter()
    for record in task.records:
        try:
            decoded = decode_image(record, _WORKER["max_pixels"])
        except CorruptImageError as err:
            if strict:
                raise
            skipped[record.id] = str(err)
            counts["corrupt (skipped)"] += 1
            continue
        evidence = detector.detect_decoded(decoded, record)
        sx, sy = decoded.scale
        sharpness = laplacian_sharpness(decoded.pixels, scale_box(evidence.face_box, 1 / sx, 1 / sy)) if evidence.face_found else 0.0
        size = box_face_size(evidence.face_box) if evidence.face_found else 0.0
        verdict = quality_verdict(evidence.face_found, evidence.face_score, size, sharpness, quality)
        counts[verdict] += 1
        ids.append(record.id)
        rows.append(evidence_row(evidence, sharpness, verdict, prob_aus, box_aus))
    array = np.array(rows, dtype=row_dtype(len(prob_aus), len(box_aus))) if rows else np.zeros(0, row_dtype(len(prob_aus), len(box_aus)))
    write_shard(task.directory, task.index, ids, array, skipped)
    return task.index, len(task.records), counts


# --------------------------------------------------------------------------------------------- build
def dataset_source(spec, detector: DetectorSpec) -> dict:
    """What ``meta.json`` keeps to write the rebuild command: root, non-default reader options, external files."""
    defaults = DatasetSpec()
    options = {name: getattr(spec, name) for name in READER_OPTIONS if getattr(spec, name) != getattr(defaults, name)}
    return {
        "dataset": spec.name,
        "root": str(spec.root),
        "reader_options": options,
        "external": detector.external,
        "crop_fallback": detector.crop_fallback,
    }


def build_split(
    records: list,
    detector: DetectorSpec,
    out,
    *,
    split: str,
    source: dict,
    quality: QualityConfig | None = None,
    shard_size: int = 256,
    workers: int = 0,
    detect_max_pixels: int | None = AUConfig.detect_max_pixels,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_shard: Callable[[int, int], None] | None = None,
) -> AUCache:
    """Cache the evidence of ``records`` (one split of one dataset) in ``out`` (module docstring).

    Args:
        source: :func:`dataset_source` (dataset name, root, reader options) for ``meta.json``.
        quality: face-quality thresholds (default ``QualityConfig()``: only "no face" fails).
        detect_max_pixels: images with more pixels are decoded reduced to at most this many for the
            detector (``tagfer.data.images.decode_image``); the cache keeps original pixels. None: full size.
        overwrite: replace this split if it is already cached, or the whole cache when it was built
            by another detector / box mode.
        on_shard: called with ``(shard index, records in it)`` after each finished shard.

    Returns the opened cache. Raises :class:`CacheMismatchError` when ``out`` holds a cache of another
    dataset, detector or box mode (and ``overwrite`` is false), ``ValueError`` when an importer matches
    none of the records.
    """
    out = Path(out)
    quality = quality or QualityConfig()
    quality_dict = {f.name: getattr(quality, f.name) for f in dataclasses.fields(QualityConfig)}
    if shard_size < 1:
        raise ValueError(f"shard_size must be ≥ 1, got {shard_size}")
    if detect_max_pixels is not None and detect_max_pixels < 1:
        raise ValueError(f"detect_max_pixels must be ≥ 1 or None (full size), got {detect_max_pixels}")
    records = sorted(records, key=lambda r: r.id)
    if any(r.split != split for r in records):
        raise ValueError(f"build_split(split={split!r}) got records of other splits: {sorted({r.split for r in records})}")
    instance = detector.create()
    _check_coverage(instance, records)
    with hold(out, "AU cache", directory=True):
        meta = _prepare_meta(out, instance, detector, source, quality_dict, overwrite)
        if split in meta["splits"] and not overwrite:
            log.info("%s: split %r is already cached", out, split)
            return AUCache.open(out)
        directory = out / split
        if split in meta["splits"]:  # overwrite: forget the split before its files go
            meta = {**meta, "splits": {k: v for k, v in meta["splits"].items() if k != split}}
            atomic_write_json(out / "meta.json", meta)
        fingerprint = dataset_fingerprint(records).get(split, hashlib.sha256(b"").hexdigest())
        plan = {
            "split": split,
            "fingerprint": fingerprint,
            "ids_sha256": hashlib.sha256("\n".join(r.id for r in records).encode()).hexdigest(),
            "records": len(records),
            "shard_size": shard_size,
            "detector": instance.describe(),
            "box_mode": detector.box_mode,
            "quality": quality_dict,
            "detect_max_pixels": detect_max_pixels,
        }
        _start_plan(directory, plan, reset=overwrite)
        shards = [records[i : i + shard_size] for i in range(0, len(records), shard_size)]
        todo = [ShardTask(i, chunk, directory) for i, chunk in enumerate(shards) if read_shard_info(directory, i) is None]
        counts = _run_tasks(
            todo,
            detector,
            (quality_dict, strict, detect_max_pixels),
            workers,
            len(records) - sum(len(t.records) for t in todo),
            len(records),
            progress,
            on_shard,
        )
        _finish_split(out, directory, meta, plan, len(shards), counts)
    return AUCache.open(out)


def _check_coverage(instance, records) -> None:
    missing = instance.missing(records)
    if records and len(missing) == len(records):
        raise ValueError(
            f"detector {instance.name!r} has data for none of the {len(records)} records "
            f"(e.g. {records[0].id!r}); check --external / the dataset's landmarks"
        )
    if missing:
        log.warning(
            "detector %s has no data for %d of %d records (stored as 'no face'), e.g. %s",
            instance.name,
            len(missing),
            len(records),
            missing[:3],
        )


def _prepare_meta(out: Path, instance, detector: DetectorSpec, source: dict, quality: dict, overwrite: bool) -> dict:
    """The cache's ``meta.json`` content (existing one checked for compatibility, or a new one)."""
    wanted = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": source["dataset"],
        "detector": instance.describe(),
        "box_mode": detector.box_mode,
        "box_aus": list(AU_LIST),
        "source": {k: v for k, v in source.items() if k != "dataset"},
        "quality": quality,
        "splits": {},
    }
    try:
        meta = read_meta(out)
    except CacheMismatchError:
        if not overwrite:
            raise
        meta = None
    if meta is not None:
        same = all(meta.get(k) == wanted[k] for k in ("dataset", "detector", "box_mode", "box_aus"))
        if same:
            return meta
        if not overwrite:
            raise CacheMismatchError(
                f"{out} holds an AU cache of dataset {meta.get('dataset')!r} by {meta['detector']['name']} "
                f"{meta['detector']['version']} with box_mode {meta.get('box_mode')!r}; this build is "
                f"{wanted['dataset']!r} by {instance.name} {instance.version} with box_mode {detector.box_mode!r}. "
                f"Choose another --out, or replace it:\n  {rebuild_command(wanted, list(meta['splits']) or ['train'], out, detector.name)}"
            )
        _remove_cache(out, meta)
    elif overwrite:
        _remove_cache(out, None)
    return wanted


def _remove_cache(out: Path, meta: dict | None) -> None:
    """Delete what a cache build wrote in ``out`` (split folders with a plan, meta.json) — nothing else."""
    for split in SPLITS:
        if (out / split / "plan.json").is_file():
            shutil.rmtree(out / split)
    (out / "meta.json").unlink(missing_ok=True)


def _start_plan(directory: Path, plan: dict, reset: bool) -> None:
    """Write ``plan.json``; an older, different plan (or ``reset``) discards the split's shards first."""
    path = directory / "plan.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if reset or previous != plan:
            if not reset:
                log.info("%s: the dataset or settings changed since the unfinished build; starting this split over", directory)
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.tmp"):
        stale.unlink()
    if not path.is_file():
        atomic_write_json(path, plan)


def _run_tasks(todo, detector, settings: tuple, workers, done, total, progress, on_shard) -> Counter:
    """Run the shards ``todo``; ``settings`` = ``(quality dict, strict, detect_max_pixels)`` for :func:`_init_worker`."""
    from tqdm.auto import tqdm

    counts: Counter = Counter()
    bar = tqdm(total=total, initial=done, unit="img", desc="AU cache", disable=not progress)
    try:
        if workers > 0 and len(todo) > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(detector, *settings)) as pool:
                for index, n, shard_counts in pool.map(_run_shard, todo):
                    counts.update(shard_counts)
                    bar.update(n)
                    if on_shard:
                        on_shard(index, n)
        else:
            _init_worker(detector, *settings)
            for task in todo:
                index, n, shard_counts = _run_shard(task)
                counts.update(shard_counts)
                bar.update(n)
                if on_shard:
                    on_shard(index, n)
    finally:
        bar.close()
    return counts


def _finish_split(out: Path, directory: Path, meta: dict, plan: dict, n_shards: int, counts: Counter) -> None:
    shards, skipped, dropped = [], {}, {}
    for index in range(n_shards):
        info = read_shard_info(directory, index)
        if info is None:
            raise RuntimeError(f"{directory}: shard {index} is missing or damaged after the build")
        shards.append({"file": f"{shard_name(index)}.npy", "sha256": info["sha256"], "ids": info["ids"]})
        skipped.update(info["skipped"])
        codes = np.load(directory / f"{shard_name(index)}.npy", mmap_mode="r")["quality"]
        dropped.update({rid: VERDICTS[int(c)] for rid, c in zip(info["ids"], codes) if int(c) != 0})
    rows = sum(len(s["ids"]) for s in shards)
    atomic_write_json(
        directory / "index.json",
        {"split": plan["split"], "fingerprint": plan["fingerprint"], "shards": shards, "skipped": skipped, "dropped": dropped},
    )
    meta = dict(meta)
    meta["splits"] = {
        **meta["splits"],
        plan["split"]: {
            "fingerprint": plan["fingerprint"],
            "records": plan["records"],
            "rows": rows,
            "skipped": len(skipped),
            "shards": n_shards,
        },
    }
    atomic_write_json(out / "meta.json", meta)
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "all shards were already finished"
    log.info(
        "%s/%s: %d images cached, %d skipped, %d dropped by the quality filter (%s)",
        out,
        plan["split"],
        rows,
        len(skipped),
        len(dropped),
        summary,
    )


# ------------------------------------------------------------------------------------ from a config
def detector_spec(au_cfg) -> DetectorSpec:
    """The :class:`DetectorSpec` an ``au`` config section asks for."""
    return DetectorSpec(
        name=au_cfg.detector,
        box_mode=au_cfg.box_mode,
        external=au_cfg.external_dir,
        crop_fallback=bool(au_cfg.crop_fallback),
    )


def ensure_au_cache(spec, au_cfg, records: list, *, progress: bool = True) -> AUCache:
    """The AU cache of the dataset split ``spec`` under the ``au`` config, built from ``records`` first when missing.

    ``records`` are those of the whole split (``tagfer.data.readers.read_full_split``: ``spec.limit``
    and ``spec.classes`` are ignored here, so every subset of the split shares the cache); whoever reads
    the dataset hands them in. Raises :class:`CacheMismatchError` — with the rebuild command — when an
    existing cache was built from other data, by another detector or detector version, or with another box
    mode, or when a shard's checksum no longer matches (:meth:`AUCache.verify`). The cache directory is
    :func:`tagfer.au.cache.default_cache_dir`.
    """
    directory = default_cache_dir(spec, au_cfg)
    detector = detector_spec(au_cfg)
    fingerprint = dataset_fingerprint(records)
    meta = read_meta(directory)
    if meta is None or spec.split not in meta.get("splits", {}):
        build_split(
            records,
            detector,
            directory,
            split=spec.split,
            source=dataset_source(spec, detector),
            quality=au_cfg.quality,
            shard_size=au_cfg.shard_size,
            workers=au_cfg.workers,
            detect_max_pixels=au_cfg.detect_max_pixels,
            progress=progress,
        )
    cache = AUCache.open(
        directory,
        expect_fingerprint=fingerprint,
        expect_detector=detector.name,
        expect_version=detector.create().version,
        expect_box_mode=detector.box_mode,
        quality=au_cfg.quality,
    )
    cache.verify()  # a shard damaged or cut short after the build is never read as valid
    return cache


def check_existing_cache(spec, au_cfg) -> None:
    """Fail fast when the cache :func:`ensure_au_cache` would use for ``spec`` exists but was built by
    another detector, detector version or box mode (reads ``meta.json`` only; the dataset fingerprint is
    checked when the cache is opened). Raises :class:`CacheMismatchError` with the rebuild command."""
    directory = default_cache_dir(spec, au_cfg)
    meta = read_meta(directory)
    if meta is None:
        return
    detector = detector_spec(au_cfg)
    check_expectations(meta, directory, None, detector.name, detector.create().version, detector.box_mode)
