"""RAF-DB (basic) reader.

Layout (``root`` is the ``basic/`` folder)::

    EmoLabel/list_patition_label.txt              # sic; rows "<name> <label>", e.g. "train_00001.jpg 5"
    Image/aligned/<stem>_aligned.jpg              # image_variant="aligned" (100x100, the default)
    Image/original/<name>                         # image_variant="original"
    Annotation/manual/<stem>_manu_attri.txt       # optional: 5 lines "x y" (eye centres, nose tip,
                                                  #   mouth corners), then gender, race, age lines
    Annotation/boundingbox/<stem>_boundingbox.txt # optional: "x0 y0 x1 y1"

* Split = the name prefix: ``train_XXXXX.jpg`` → "train", ``test_XXXX.jpg`` → "test" (RAF-DB has no
  validation split; configs validate on a slice of "test").
* Labels 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral → canonical names.
* The manual landmarks and the bounding box are in pixels of the *original* image:
  ``extra["landmarks5"]`` (``[5, 2]`` float32) and ``extra["original_face_box"]`` are stored for both
  variants, and ``record.face_box`` is set only for ``image_variant="original"`` (the aligned crop's
  transform is not shipped). ``extra["gender"|"race"|"age"]`` hold the manual attribute codes.
  Images without these optional files are counted in ``notes["without_manual_annotation"]`` /
  ``notes["without_bounding_box"]``.
* No 68-point landmarks ship with RAF-DB (``record.landmarks`` is None): the AU cache detects them.
* Every listed image must exist: missing ones raise :class:`DatasetLayoutError` listing them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagfer.core.classes import CLASS_INDEX, class_subset
from tagfer.core.records import FaceRecord
from tagfer.data.reader_base import DatasetLayoutError, ReadResult, check_choice, check_split, require_file

NAME = "rafdb"
OPTIONS = ("image_variant",)
LAYOUT = (
    "<root>/EmoLabel/list_patition_label.txt with rows '<name> <1..7>', images in <root>/Image/aligned/"
    "<stem>_aligned.jpg (or <root>/Image/original/<name>), optional <root>/Annotation/manual/"
    "<stem>_manu_attri.txt and <root>/Annotation/boundingbox/<stem>_boundingbox.txt"
)
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"
SPLITS = ("train", "test")
IMAGE_VARIANTS = ("aligned", "original")

#: RAF-DB label code → canonical class name.
RAFDB_LABELS: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}

#: The label set needs the records read first (the classes on disk decide it); see :func:`label_set`.
LABEL_SET_FROM_RECORDS = False


def label_set(spec, labels) -> tuple[str, ...]:
    """RAF-DB's label set: its 7 basic expressions (no contempt), in canonical order."""
    return class_subset(list(RAFDB_LABELS.values()))


def _label_rows(root: Path) -> list[tuple[int, str, str, int]]:
    """``(line number, name, split, canonical label index)`` of every row of the label file."""
    path = require_file(root / LABEL_FILE, "RAF-DB label file", LAYOUT)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path} line {number}"
        if len(fields) != 2:
            raise DatasetLayoutError(f"{where}: expected '<name> <label>', got {line!r}")
        name, code = fields
        split = name.split("_", 1)[0]
        if split not in SPLITS:
            raise DatasetLayoutError(f"{where}: image name {name!r} does not start with 'train_' or 'test_'")
        if not code.isdigit() or int(code) not in RAFDB_LABELS:
            raise DatasetLayoutError(f"{where}: label {code!r} is not one of 1..7")
        rows.append((number, name, split, CLASS_INDEX[RAFDB_LABELS[int(code)]]))
    return rows


def _numbers(path: Path, line: str, number: int, count: int) -> list[float]:
    fields = line.split()
    try:
        values = [float(v) for v in fields]
    except ValueError:
        values = []
    if len(values) != count:
        raise DatasetLayoutError(f"{path} line {number}: expected {count} numbers, got {line!r}")
    return values


def read_manual_annotation(path: Path) -> dict:
    """``{"landmarks5": [5, 2] float32, "gender": int, "race": int, "age": int}`` from a ``_manu_attri.txt``."""
    lines = path.read_text().splitlines()
    if len(lines) < 8:
        raise DatasetLayoutError(f"{path}: expected 5 landmark lines then gender, race and age lines, got {len(lines)} lines")
    points = [_numbers(path, lines[i], i + 1, 2) for i in range(5)]
    attributes = [int(_numbers(path, lines[5 + i], 6 + i, 1)[0]) for i in range(3)]
    return {
        "landmarks5": np.asarray(points, dtype=np.float32),
        "gender": attributes[0],
        "race": attributes[1],
        "age": attributes[2],
    }


def read_bounding_box(path: Path) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` from a ``_boundingbox.txt``."""
    text = path.read_text()
    x0, y0, x1, y1 = _numbers(path, text, 1, 4)
    return (x0, y0, x1, y1)


def image_relpath(name: str, image_variant: str) -> str:
    """Path of the image of ``name`` relative to the root (the record id)."""
    if image_variant == "aligned":
        return f"Image/aligned/{Path(name).stem}_aligned.jpg"
    return f"Image/original/{name}"


def splits(root: Path, **options) -> list[str]:
    present = {split for _, _, split, _ in _label_rows(root)}
    return [s for s in SPLITS if s in present]


def read(root: Path, split: str, image_variant: str = "aligned") -> ReadResult:
    check_choice("image_variant", image_variant, IMAGE_VARIANTS)
    check_split(NAME, split, SPLITS, "; configs use split: test for validation")
    result = ReadResult(
        whole_photos=image_variant == "original",
        notes={"image_variant": image_variant, "without_manual_annotation": 0, "without_bounding_box": 0},
    )
    missing = []
    for number, name, row_split, label in _label_rows(root):
        if row_split != split:
            continue
        relpath = image_relpath(name, image_variant)
        image_path = root / relpath
        if not image_path.is_file():
            missing.append(f"{relpath} (line {number})")
            continue
        stem = Path(name).stem
        extra: dict = {}
        manual = root / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
        if manual.is_file():
            extra.update(read_manual_annotation(manual))
        else:
            result.notes["without_manual_annotation"] += 1
        box_file = root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt"
        box = read_bounding_box(box_file) if box_file.is_file() else None
        if box is None:
            result.notes["without_bounding_box"] += 1
        else:
            extra["original_face_box"] = box
        result.records.append(
            FaceRecord(
                id=relpath,
                dataset=NAME,
                split=split,
                label=label,
                image_path=image_path,
                face_box=box if image_variant == "original" else None,
                extra=extra,
            )
        )
    if missing:
        raise DatasetLayoutError(
            f"RAF-DB: {len(missing)} image(s) listed in {root / LABEL_FILE} are missing, e.g. {missing[:5]}; expected layout: {LAYOUT}"
        )
    return result
