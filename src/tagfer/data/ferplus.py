"""FERPlus reader: FER2013 images with the FER+ crowd votes, in either of its two layouts.

``layout="csv"`` — the raw pair in ``root``::

    fer2013.csv      # header "emotion,pixels,Usage"; pixels = 2304 space-separated uint8 (48x48 grey)
    fer2013new.csv   # same row order; header "Usage,Image name,neutral,happiness,surprise,sadness,
                     #   anger,disgust,fear,contempt,unknown,NF" (10 votes per row)

  Images come from the pixel strings (``record.pixels`` ``[48, 48]`` uint8, ``image_path`` None); the
  id is the file the FER+ generation script would write, ``FER2013Train/<Image name>``. Rows with an
  empty ``Image name`` (not a face) are skipped and counted (``no_face_row``). Label source:
  ``fer2013new.csv``.

``layout="folders"`` — what the FER+ script (``generate_training_data.py``) writes::

    FER2013Train/ FER2013Valid/ FER2013Test/    # ferXXXXXXX.png and a headerless label.csv each;
                                                #   rows 'name,"(0, 0, 48, 48)",v1..v10' (12 columns)
                                                #   or 'name,v1..v10' (11 columns)

  Label source: ``<folder>/label.csv`` (the shipped label files and ``fer2013new.csv`` disagree on
  about 1.6k rows, so ``notes["label_source"]`` says which one was read).

``layout="auto"`` picks csv when both CSV files exist, else folders.

Splits: Training / FER2013Train → "train", PublicTest / FER2013Valid → "val", PrivateTest /
FER2013Test → "test". ``label_mode`` (:mod:`tagfer.data.ferplus_labels`) applies to "train" only;
"val" and "test" always use majority labels. Rows whose label is unknown or NF are skipped and counted
(``unknown_or_nf``). ``soft_label`` is set in the soft modes; ``extra["votes"]`` keeps the 10 raw votes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.records import FaceRecord
from tagfer.data.ferplus_labels import LABEL_MODES, VOTE_COLUMNS, label_from_votes
from tagfer.data.reader_base import DatasetLayoutError, ReadResult, check_choice, check_split, require_file

NAME = "ferplus"
OPTIONS = ("layout", "label_mode")
LAYOUT = (
    "either <root>/fer2013.csv (emotion,pixels,Usage) + <root>/fer2013new.csv (Usage,Image name,"
    "neutral,...,NF), or <root>/FER2013Train|FER2013Valid|FER2013Test/ with ferXXXXXXX.png images and a "
    "headerless label.csv (name[,box],10 votes)"
)
LAYOUTS = ("auto", "csv", "folders")
SPLITS = ("train", "val", "test")
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLIT_FOLDER = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
FER2013_HEADER = ["emotion", "pixels", "Usage"]
FERPLUS_HEADER = ["Usage", "Image name", *VOTE_COLUMNS]
IMAGE_SIDE = 48
#: The label set needs the records read first (the classes on disk decide it); see :func:`label_set`.
LABEL_SET_FROM_RECORDS = False


def label_set(spec, labels) -> tuple[str, ...]:
    """FERPlus's label set: all 8 classes."""
    return CLASS_NAMES


def resolve_layout(root: Path, layout: str) -> str:
    """``"csv"`` or ``"folders"`` for ``layout`` ("auto" looks at what is in ``root``)."""
    check_choice("layout", layout, LAYOUTS)
    if layout != "auto":
        return layout
    if (root / "fer2013.csv").is_file() and (root / "fer2013new.csv").is_file():
        return "csv"
    if any((root / folder / "label.csv").is_file() for folder in SPLIT_FOLDER.values()):
        return "folders"
    raise DatasetLayoutError(f"FERPlus: no fer2013.csv + fer2013new.csv and no FER2013*/label.csv under {root}; expected layout: {LAYOUT}")


def _votes(fields: list[str], where: str) -> list[int]:
    try:
        votes = [int(v) for v in fields]
    except ValueError:
        votes = []
    if len(votes) != len(VOTE_COLUMNS) or min(votes) < 0:
        raise DatasetLayoutError(f"{where}: expected {len(VOTE_COLUMNS)} non-negative integer votes, got {fields}")
    return votes


def _pixels(text: str, where: str) -> np.ndarray:
    try:
        values = np.asarray(text.split(), dtype=np.int64)
    except ValueError:
        values = np.zeros(0)
    if values.size != IMAGE_SIDE * IMAGE_SIDE or values.min() < 0 or values.max() > 255:
        raise DatasetLayoutError(f"{where}: expected {IMAGE_SIDE * IMAGE_SIDE} space-separated values 0..255 in 'pixels'")
    return values.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _csv_rows(path: Path, header: list[str]):
    """``(line number, fields)`` of a CSV file after checking its header line."""
    require_file(path, "FERPlus CSV", LAYOUT)
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first is None or [c.strip() for c in first] != header:
            raise DatasetLayoutError(f"{path} line 1: expected header {','.join(header)}, got {first}")
        for fields in reader:
            if fields:
                yield reader.line_num, fields


def _mode_for(split: str, label_mode: str) -> str:
    return label_mode if split == "train" else "majority"


def _labelled(result: ReadResult, record_id: str, votes: list[int], mode: str, where: str):
    """``label_from_votes`` for the row, counting an ``unknown_or_nf`` skip when it is dropped."""
    labelled = label_from_votes(votes, mode)
    if labelled is None:
        result.skip("unknown_or_nf", f"{record_id} ({where})")
    return labelled


def _record(record_id: str, split: str, labelled, votes: list[int], **image) -> FaceRecord:
    label, soft = labelled
    return FaceRecord(id=record_id, dataset=NAME, split=split, label=label, soft_label=soft, extra={"votes": votes}, **image)


def _read_csv(root: Path, split: str, mode: str, result: ReadResult) -> None:
    fer_path, new_path = root / "fer2013.csv", root / "fer2013new.csv"
    fer_rows = _csv_rows(fer_path, FER2013_HEADER)
    for new_line, new_fields in _csv_rows(new_path, FERPLUS_HEADER):
        fer_line, fer_fields = next(fer_rows, (None, None))
        where = f"{new_path.name} line {new_line}"
        if fer_fields is None:
            raise DatasetLayoutError(f"{fer_path}: has fewer rows than {new_path} (no row for {where})")
        if len(new_fields) != len(FERPLUS_HEADER):
            raise DatasetLayoutError(f"{new_path} line {new_line}: expected {len(FERPLUS_HEADER)} columns, got {len(new_fields)}")
        if len(fer_fields) != len(FER2013_HEADER):
            raise DatasetLayoutError(f"{fer_path} line {fer_line}: expected {len(FER2013_HEADER)} columns, got {len(fer_fields)}")
        usage, name = new_fields[0].strip(), new_fields[1].strip()
        if usage not in USAGE_SPLIT:
            raise DatasetLayoutError(f"{new_path} line {new_line}: Usage {usage!r} is not one of {list(USAGE_SPLIT)}")
        if fer_fields[2].strip() != usage:
            raise DatasetLayoutError(
                f"{fer_path} line {fer_line} has Usage {fer_fields[2]!r} but {where} has {usage!r}: "
                "the two files are not in the same row order"
            )
        if USAGE_SPLIT[usage] != split:
            continue
        votes = _votes(new_fields[2:], f"{new_path} line {new_line}")
        if not name:
            result.skip("no_face_row", where)
            continue
        record_id = f"{SPLIT_FOLDER[split]}/{name}"
        labelled = _labelled(result, record_id, votes, mode, where)
        if labelled is not None:
            pixels = _pixels(fer_fields[1], f"{fer_path} line {fer_line}")
            result.records.append(_record(record_id, split, labelled, votes, pixels=pixels))
    if next(fer_rows, None) is not None:
        raise DatasetLayoutError(f"{fer_path} has more rows than {new_path}: both must list the same images in order")
    result.notes["label_source"] = "fer2013new.csv"


def _read_folder(root: Path, split: str, mode: str, result: ReadResult) -> None:
    folder = SPLIT_FOLDER[split]
    label_path = require_file(root / folder / "label.csv", f"FERPlus {split} labels", LAYOUT)
    missing = []
    with label_path.open(newline="") as handle:
        reader = csv.reader(handle)
        for fields in reader:
            if not fields:
                continue
            where = f"{folder}/label.csv line {reader.line_num}"
            if len(fields) not in (11, 12):
                raise DatasetLayoutError(
                    f"{root / where}: expected 11 (name, 10 votes) or 12 (name, box, 10 votes) columns, got {len(fields)}"
                )
            votes = _votes(fields[-10:], str(root / where))
            record_id = f"{folder}/{fields[0].strip()}"
            if not (root / record_id).is_file():
                missing.append(f"{record_id} ({where})")
                continue
            labelled = _labelled(result, record_id, votes, mode, where)
            if labelled is not None:
                result.records.append(_record(record_id, split, labelled, votes, image_path=root / record_id))
    if missing:
        raise DatasetLayoutError(f"FERPlus: {len(missing)} image(s) named in {label_path} are missing, e.g. {missing[:5]}")
    result.notes["label_source"] = f"{folder}/label.csv"


def splits(root: Path, layout: str = "auto", **options) -> list[str]:
    if resolve_layout(root, layout) == "folders":
        return [s for s in SPLITS if (root / SPLIT_FOLDER[s] / "label.csv").is_file()]
    present = {USAGE_SPLIT.get(fields[0].strip()) for _, fields in _csv_rows(root / "fer2013new.csv", FERPLUS_HEADER)}
    return [s for s in SPLITS if s in present]


def read(root: Path, split: str, layout: str = "auto", label_mode: str = "majority") -> ReadResult:
    check_choice("label_mode", label_mode, LABEL_MODES)
    check_split(NAME, split, SPLITS)
    resolved = resolve_layout(root, layout)
    mode = _mode_for(split, label_mode)
    result = ReadResult(whole_photos=False, notes={"layout": resolved, "label_mode": mode})  # 48×48 face crops
    (_read_csv if resolved == "csv" else _read_folder)(root, split, mode, result)
    return result
