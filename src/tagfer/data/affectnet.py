"""AffectNet reader (manually annotated part), in either of its two releases.

``layout="csv"`` — the 2017 release::

    Manually_Annotated_Images/<subDirectory_filePath>
    Manually_Annotated_file_lists/training.csv     # "train"
    Manually_Annotated_file_lists/validation.csv   # "val"
    # columns: subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
    # facial_landmarks = "x0;y0;x1;y1;...": 68 points; some copies of validation.csv have no header line

  The face box ``x, y, w, h`` becomes ``face_box = (x, y, x + w, y + h)`` and ``facial_landmarks``
  ``landmarks [68, 2]`` (float32 pixels). The header line is detected from the first line. Rows naming
  a missing image are skipped and counted (``missing_image``).

``layout="npy"`` — the newer release::

    train_set/images/<id>.jpg     train_set/annotations/<id>_exp.npy, <id>_lnd.npy (136 floats x,y,...)
    val_set/images/<id>.jpg       val_set/annotations/<id>_exp.npy, <id>_lnd.npy

  The images are face crops (``face_box`` None). ``_lnd.npy`` is optional (images without it are
  counted in ``notes["without_landmarks"]``); ``_exp.npy`` is required.

``layout="auto"`` picks csv when ``Manually_Annotated_file_lists/`` exists, else npy.

Expression codes: 0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger,
7 contempt (= the canonical class indices), 8 none, 9 uncertain, 10 no face. Codes 8–10 are never
targets (counted skips ``code_8_none``, ``code_9_uncertain``, ``code_10_no_face``); ``num_classes=7``
(AffectNet-7) also skips contempt (``contempt_not_in_affectnet7``). Splits: "train" and "val" — the
validation set is AffectNet's test set. ``extra`` holds ``valence`` and ``arousal`` (csv layout).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.records import FaceRecord
from tagfer.data.reader_base import DatasetLayoutError, ReadResult, check_choice, check_split, require_dir, require_file

NAME = "affectnet"
OPTIONS = ("layout", "num_classes")
LAYOUT = (
    "either <root>/Manually_Annotated_Images/ + <root>/Manually_Annotated_file_lists/{training,validation}.csv "
    "(subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal), "
    "or <root>/{train_set,val_set}/images/<id>.jpg + annotations/<id>_exp.npy and <id>_lnd.npy"
)
LAYOUTS = ("auto", "csv", "npy")
SPLITS = ("train", "val")
CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
NPY_FOLDERS = {"train": "train_set", "val": "val_set"}
IMAGES_DIR = "Manually_Annotated_Images"
LISTS_DIR = "Manually_Annotated_file_lists"
NON_TARGET_CODES = {8: "code_8_none", 9: "code_9_uncertain", 10: "code_10_no_face"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The label set needs the records read first (the classes on disk decide it); see :func:`label_set`.
LABEL_SET_FROM_RECORDS = False


def label_set(spec, labels) -> tuple[str, ...]:
    """AffectNet-``num_classes``: the first 7 (no contempt) or all 8 classes."""
    return CLASS_NAMES[: int(spec.num_classes)]


def resolve_layout(root: Path, layout: str) -> str:
    check_choice("layout", layout, LAYOUTS)
    if layout != "auto":
        return layout
    if (root / LISTS_DIR).is_dir():
        return "csv"
    if any((root / folder).is_dir() for folder in NPY_FOLDERS.values()):
        return "npy"
    raise DatasetLayoutError(f"AffectNet: neither {root / LISTS_DIR} nor {root}/train_set|val_set exists; expected layout: {LAYOUT}")


def _code(text: str, where: str) -> int:
    try:
        code = int(float(text))
    except ValueError:
        code = -1
    if not 0 <= code <= 10:
        raise DatasetLayoutError(f"{where}: expression {text!r} is not a code 0..10")
    return code


def _target(code: int, num_classes: int, result: ReadResult, example: str) -> bool:
    """True when ``code`` is a target of AffectNet-``num_classes``; counts the skip otherwise."""
    if code in NON_TARGET_CODES:
        result.skip(NON_TARGET_CODES[code], example)
        return False
    if code >= num_classes:
        result.skip("contempt_not_in_affectnet7", example)
        return False
    return True


def parse_landmarks(text: str, where: str) -> np.ndarray:
    """``"x0;y0;x1;y1;..."`` (136 numbers) → ``[68, 2]`` float32."""
    try:
        values = np.asarray([float(v) for v in text.strip().strip(";").split(";")], dtype=np.float32)
    except ValueError:
        values = np.zeros(0, dtype=np.float32)
    if values.size != 136:
        raise DatasetLayoutError(f"{where}: facial_landmarks must hold 136 ';'-separated numbers (68 x,y points), got {values.size}")
    return values.reshape(68, 2)


def _csv_rows(path: Path):
    """``(line number, fields)`` of a file list, with or without its header line."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        for fields in reader:
            if not fields:
                continue
            if reader.line_num == 1 and fields[0].strip() == CSV_COLUMNS[0]:
                if [f.strip() for f in fields] != list(CSV_COLUMNS):
                    raise DatasetLayoutError(f"{path} line 1: expected header {','.join(CSV_COLUMNS)}, got {fields}")
                continue
            yield reader.line_num, fields


def _read_csv(root: Path, split: str, num_classes: int, result: ReadResult) -> None:
    path = require_file(root / LISTS_DIR / CSV_FILES[split], f"AffectNet {split} file list", LAYOUT)
    require_dir(root / IMAGES_DIR, "AffectNet images", LAYOUT)
    for line, fields in _csv_rows(path):
        where = f"{path} line {line}"
        if len(fields) != len(CSV_COLUMNS):
            raise DatasetLayoutError(f"{where}: expected {len(CSV_COLUMNS)} columns ({','.join(CSV_COLUMNS)}), got {len(fields)}")
        record_id = f"{IMAGES_DIR}/{fields[0].strip()}"
        example = f"{record_id} ({path.name} line {line})"
        code = _code(fields[6], where)
        if not _target(code, num_classes, result, example):
            continue
        if not (root / record_id).is_file():
            result.skip("missing_image", example)
            continue
        try:
            x, y, w, h, valence, arousal = (float(fields[i]) for i in (1, 2, 3, 4, 7, 8))
        except ValueError:
            raise DatasetLayoutError(f"{where}: face_x, face_y, face_width, face_height, valence, arousal must be numbers") from None
        result.records.append(
            FaceRecord(
                id=record_id,
                dataset=NAME,
                split=split,
                label=code,
                image_path=root / record_id,
                landmarks=parse_landmarks(fields[5], where),
                face_box=(x, y, x + w, y + h),
                extra={"valence": valence, "arousal": arousal},
            )
        )


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetLayoutError(f"{path}: not a readable numeric .npy file ({err})") from None


def _image_order(path: Path) -> tuple:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def _read_npy(root: Path, split: str, num_classes: int, result: ReadResult) -> None:
    folder = NPY_FOLDERS[split]
    images = require_dir(root / folder / "images", f"AffectNet {split} images", LAYOUT)
    annotations = require_dir(root / folder / "annotations", f"AffectNet {split} annotations", LAYOUT)
    result.notes["without_landmarks"] = 0
    for image in sorted((p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_image_order):
        record_id = f"{folder}/images/{image.name}"
        exp_path = require_file(annotations / f"{image.stem}_exp.npy", f"AffectNet expression of {record_id}", LAYOUT)
        code = _code(str(_load_npy(exp_path).reshape(-1)[0]), str(exp_path))
        if not _target(code, num_classes, result, record_id):
            continue
        lnd_path = annotations / f"{image.stem}_lnd.npy"
        landmarks = None
        if lnd_path.is_file():
            values = _load_npy(lnd_path).astype(np.float32).reshape(-1)
            if values.size != 136:
                raise DatasetLayoutError(f"{lnd_path}: expected 136 values (68 interleaved x,y), got {values.size}")
            landmarks = values.reshape(68, 2)
        else:
            result.notes["without_landmarks"] += 1
        result.records.append(FaceRecord(id=record_id, dataset=NAME, split=split, label=code, image_path=image, landmarks=landmarks))


def splits(root: Path, layout: str = "auto", **options) -> list[str]:
    if resolve_layout(root, layout) == "csv":
        return [s for s in SPLITS if (root / LISTS_DIR / CSV_FILES[s]).is_file()]
    return [s for s in SPLITS if (root / NPY_FOLDERS[s] / "images").is_dir()]


def read(root: Path, split: str, layout: str = "auto", num_classes: int = 8) -> ReadResult:
    check_choice("num_classes", num_classes, (7, 8))
    check_split(NAME, split, SPLITS, "; AffectNet's validation set is its test set: use split: val")
    resolved = resolve_layout(root, layout)
    # the 2017 release ships whole photos with a face box; the npy release ships face crops
    result = ReadResult(whole_photos=resolved == "csv", notes={"layout": resolved, "num_classes": num_classes})
    (_read_csv if resolved == "csv" else _read_npy)(root, split, num_classes, result)
    return result
