"""The synthetic face dataset on disk: generation (:func:`generate_synthetic_dataset`) and its reader.

Layout::

    <root>/manifest.json                 # {"generator": "tagfer.data.synthetic_faces", "generator_version": 2,
                                         #  "seed": 0, "image_size": 112, "pose": "random", "canvas": 1.0,
                                         #  "classes": [...8 names...],
                                         #  "splits": {"train": 512, "val": 64, "test": 128}}
    <root>/<split>/images/<NNNNNN>.png   # RGB, image_size x image_size; NNNNNN = index in the split
    <root>/<split>/annotations.jsonl     # one JSON object per image, in index order:
        {"id": "train/images/000000.png",      # the record id (path relative to <root>)
         "label": "neutral",                   # canonical class name
         "landmarks": [[x, y], ...],           # 68 points, iBUG-68 order, image pixels
         "face_box": [x1, y1, x2, y2],         # the skin oval, clipped to the image
         "au_intensity": {"AU1": 0.0, ...},    # ground truth in [0, 1] for every AU of the vocabulary
         "au_side": {"AU12": "right"},         # unilateral AUs (contempt): the subject's side
         "pose": {"scale": s, "angle": deg, "centre": [x, y]}}

Image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split code, i])`` (split codes
train 0, val 1, test 2), with class ``classes[i % len(classes)]`` — so the splits differ, every prefix of
a split is class-balanced, and the first ``n`` images of a larger split are exactly the ``n``-image split.

:func:`generate_synthetic_dataset` writes a new root atomically (a temporary directory renamed into
place) and adds missing splits to an existing root the same way. An existing root is reused when its
manifest has the same generator version, seed, image size and classes and every requested split holds at
least the requested number of images; anything else is an error telling you to delete the root or choose
another one. The reader (``name: synthetic``) generates on first use from the spec (``num_samples``,
``seed``, ``image_size``, ``pose``, ``canvas``), so the demo needs no download; it returns the first ``num_samples`` images of
the split with ``landmarks``, ``face_box`` and ``extra["au_intensity"]`` / ``["au_side"]`` / ``["pose"]``.

``pose: random`` images are whole photos (:attr:`ReadResult.whole_photos`: ``data.face_crop`` ``auto``
crops them to the face box); ``pose: aligned`` images are face crops. ``canvas`` > 1 (random pose only)
draws the face ``canvas`` times smaller anywhere in the image: a scene with a small face
(:func:`tagfer.data.synthetic_faces.sample_face`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tagfer.core.atomic_files import atomic_write_text
from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES, class_subset
from tagfer.core.records import FaceRecord
from tagfer.data.reader_base import DatasetLayoutError, ReadResult, check_split, require_file
from tagfer.data.synthetic_faces import GENERATOR_VERSION, POSES, make_face

log = logging.getLogger(__name__)

NAME = "synthetic"
OPTIONS = ("num_samples", "image_size", "seed", "pose", "canvas")
LAYOUT = "<root>/manifest.json, <root>/<split>/images/<NNNNNN>.png and <root>/<split>/annotations.jsonl (made by `tagfer data synthesize`)"
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
#: The label set needs the records read first (the classes on disk decide it); see :func:`label_set`.
LABEL_SET_FROM_RECORDS = True


def label_set(spec, labels) -> tuple[str, ...]:
    """The generated classes (``manifest.json``, written when the dataset is first read)."""
    manifest = read_manifest(Path(spec.root))
    if manifest is None:
        raise FileNotFoundError(f"synthetic dataset {spec.root}: no manifest.json (read the dataset before scoring it)")
    return class_subset(list(manifest["classes"]))


GENERATOR = "tagfer.data.synthetic_faces"
MANIFEST = "manifest.json"


def face_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split`` (independent of how many images the split has)."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def _write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_manifest(root: Path) -> dict | None:
    """The manifest of ``root``, or None when ``root`` has none."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetLayoutError(f"{path}: not valid JSON ({err}); delete {root} or choose another root") from None


def _annotation(face, record_id: str, label: str) -> dict:
    return {
        "id": record_id,
        "label": label,
        "landmarks": np.round(face.landmarks.astype(float), 3).tolist(),
        "face_box": [round(v, 3) for v in face.face_box],
        "au_intensity": {au: round(v, 4) for au, v in face.au_intensity.items()},
        "au_side": face.au_side,
        "pose": {
            "scale": round(face.pose["scale"], 4),
            "angle": round(face.pose["angle"], 4),
            "centre": [round(v, 3) for v in face.pose["centre"]],
        },
    }


def _write_split(
    directory: Path, split: str, count: int, seed: int, image_size: int, classes: tuple[str, ...], pose: str, canvas: float
) -> None:
    """Draw ``count`` faces of ``split`` into ``directory`` (``images/`` + ``annotations.jsonl``)."""
    images = directory / "images"
    images.mkdir(parents=True)
    with (directory / "annotations.jsonl").open("w") as handle:
        for index in range(count):
            label = classes[index % len(classes)]
            face = make_face(face_rng(seed, split, index), label, image_size, pose, canvas)
            name = f"{index:06d}.png"
            Image.fromarray(face.image).save(images / name, compress_level=1)
            handle.write(json.dumps(_annotation(face, f"{split}/images/{name}", label)) + "\n")


def _incompatibility(manifest: dict, wanted: dict, counts: dict[str, int]) -> str | None:
    manifest = {"pose": "random", "canvas": 1.0, **manifest}  # manifests written before the pose / canvas options
    for key, value in wanted.items():
        if manifest.get(key) != value:
            return f"{key} is {manifest.get(key)!r}, requested {value!r}"
    for split, count in counts.items():
        have = manifest.get("splits", {}).get(split)
        if have is not None and have < count:
            return f"split {split!r} holds {have} images, requested {count}"
    return None


def _check_reusable(root: Path, manifest: dict, wanted: dict, counts: dict[str, int]) -> None:
    problem = _incompatibility(manifest, wanted, counts)
    if problem:
        raise DatasetLayoutError(f"{root} holds a different synthetic dataset ({problem}); delete it or choose another root")


def generate_synthetic_dataset(
    root: str | os.PathLike,
    counts: dict[str, int],
    seed: int = 0,
    image_size: int = 112,
    classes: tuple[str, ...] | list[str] = CLASS_NAMES,
    pose: str = "random",
    canvas: float = 1.0,
) -> dict:
    """Make sure ``root`` holds the synthetic splits ``counts`` (split → number of images); return the manifest.

    Writes atomically (see the module docstring); reuses a compatible existing root; raises
    :class:`DatasetLayoutError` for an incompatible one or a non-empty directory without a manifest.
    """
    root = Path(root)
    classes = class_subset(list(classes))
    for split, count in counts.items():
        check_split(NAME, split, SPLITS)
        if int(count) < 1:
            raise ValueError(f"synthetic split {split!r}: need at least 1 image, got {count}")
    if pose not in POSES:
        raise ValueError(f"synthetic pose={pose!r}; expected one of {list(POSES)}")
    if float(canvas) < 1.0 or (pose == "aligned" and float(canvas) != 1.0):
        raise ValueError(f"synthetic canvas={canvas}: expected ≥ 1, and exactly 1 with pose='aligned'")
    wanted = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "pose": pose,
        "canvas": float(canvas),
        "classes": list(classes),
    }
    manifest = read_manifest(root)
    if manifest is None and root.exists() and any(root.iterdir()):
        raise DatasetLayoutError(f"{root} exists and is not a synthetic dataset (no {MANIFEST}); delete it or choose another root")
    if manifest is not None:
        _check_reusable(root, manifest, wanted, counts)
        counts = {s: n for s, n in counts.items() if s not in manifest["splits"]}
        if not counts:
            return manifest
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        for split, count in counts.items():
            log.info("generating %d synthetic faces for %s/%s (seed %d, %dpx)", count, root, split, seed, image_size)
            _write_split(tmp / split, split, int(count), int(seed), int(image_size), classes, pose, float(canvas))
        if manifest is None:
            _write_json_atomic(tmp / MANIFEST, {**wanted, "splits": {s: int(n) for s, n in counts.items()}})
            try:
                os.rename(tmp, root)  # onto a missing or empty directory
            except OSError:
                return _concurrent_result(root, wanted, counts)
            return read_manifest(root)
        for split in counts:
            try:
                os.rename(tmp / split, root / split)
            except OSError:
                return _concurrent_result(root, wanted, counts)
        manifest = read_manifest(root)  # re-read: another process may have added a split meanwhile
        manifest = {**manifest, "splits": {**manifest["splits"], **{s: int(n) for s, n in counts.items()}}}
        _write_json_atomic(root / MANIFEST, manifest)
        return manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _concurrent_result(root: Path, wanted: dict, counts: dict[str, int], wait_s: float = 10.0) -> dict:
    """Another process wrote ``root`` first: reuse its dataset when compatible.

    A process that moved a split in updates the manifest right after, so this waits up to ``wait_s``
    seconds for the manifest to list the splits.
    """
    deadline = time.monotonic() + wait_s
    manifest = read_manifest(root)
    while (manifest is None or any(s not in manifest["splits"] for s in counts)) and time.monotonic() < deadline:
        time.sleep(0.05)
        manifest = read_manifest(root)
    if manifest is None or any(s not in manifest["splits"] for s in counts):
        raise DatasetLayoutError(f"{root} changed while generating the synthetic dataset; delete it or choose another root")
    _check_reusable(root, manifest, wanted, counts)
    return manifest


def _record(root: Path, split: str, data: dict, where: str) -> FaceRecord:
    try:
        label = CLASS_INDEX[data["label"]]
        landmarks = np.asarray(data["landmarks"], dtype=np.float32)
        box = tuple(float(v) for v in data["face_box"])
        extra = {
            "au_intensity": {k: float(v) for k, v in data["au_intensity"].items()},
            "au_side": dict(data.get("au_side", {})),
            "pose": dict(data.get("pose", {})),
        }
        record_id = data["id"]
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetLayoutError(f"{where}: bad annotation ({err!r}); expected id, label, landmarks, face_box, au_intensity") from None
    if landmarks.shape != (68, 2) or len(box) != 4:
        raise DatasetLayoutError(f"{where}: landmarks must be 68 [x, y] pairs and face_box 4 numbers")
    return FaceRecord(
        id=record_id, dataset=NAME, split=split, label=label, image_path=root / record_id, landmarks=landmarks, face_box=box, extra=extra
    )


def splits(root: Path, **options) -> list[str]:
    manifest = read_manifest(root)
    if manifest is None:
        raise DatasetLayoutError(f"{root / MANIFEST} does not exist; expected layout: {LAYOUT}")
    return [s for s in SPLITS if s in manifest.get("splits", {})]


def read(
    root: Path,
    split: str,
    num_samples: int | None = 512,
    image_size: int = 112,
    seed: int = 0,
    pose: str = "random",
    canvas: float = 1.0,
) -> ReadResult:
    """The first ``num_samples`` faces of ``split``, generating the split first when it is missing.

    ``num_samples=None`` reads the split as it is on disk (no generation, no check of seed and size).
    """
    check_split(NAME, split, SPLITS)
    if num_samples is not None:
        generate_synthetic_dataset(root, {split: int(num_samples)}, seed=seed, image_size=image_size, pose=pose, canvas=canvas)
    path = require_file(root / split / "annotations.jsonl", f"synthetic split {split!r}", LAYOUT)
    manifest = read_manifest(root)
    pose_on_disk = (manifest or {}).get("pose", "random")  # manifests written before the pose option: random
    result = ReadResult(whole_photos=pose_on_disk != "aligned", notes={"manifest": manifest})
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if num_samples is not None and len(result.records) >= num_samples:
                break
            where = f"{path} line {number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetLayoutError(f"{where}: not valid JSON ({err})") from None
            result.records.append(_record(root, split, data, where))
    return result


def synthesize_command(args) -> int:
    """``tagfer data synthesize``: write the dataset and print its manifest."""
    counts = {split: n for split, n in (("train", args.train), ("val", args.val), ("test", args.test)) if n > 0}
    manifest = generate_synthetic_dataset(args.out, counts, seed=args.seed, image_size=args.image_size, pose=args.pose, canvas=args.canvas)
    print(json.dumps({"root": str(args.out), **manifest}, indent=2))
    return 0
