"""Reader for your own images sorted into class folders::

    <root>/<split>/<class>/*.jpg | *.jpeg | *.png      # split: train | val | test

Class folder names are canonical names or aliases (``happy``, ``Angry``, ``surprised``, ...) mapped by
:func:`tagfer.core.classes.normalize_label`; a folder name that maps to no class is an error naming it.
Files in class folders are read in sorted order; hidden files (``.DS_Store``) are ignored and other
non-image files are skipped and counted (``not_an_image_file``).
"""

from __future__ import annotations

from pathlib import Path

from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES, normalize_label
from tagfer.core.records import FaceRecord
from tagfer.data.reader_base import DatasetLayoutError, ReadResult, check_split, require_dir

NAME = "imagefolder"
OPTIONS: tuple[str, ...] = ()
LAYOUT = "<root>/<split>/<class name>/*.jpg|*.jpeg|*.png (split: train|val|test; class names such as happy, sad, neutral)"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The label set needs the records read first (the classes on disk decide it); see :func:`label_set`.
LABEL_SET_FROM_RECORDS = True


def label_set(spec, labels) -> tuple[str, ...]:
    """The classes of the class folders: those of ``labels``, the canonical indices of the records read."""
    return tuple(name for i, name in enumerate(CLASS_NAMES) if i in set(labels))


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def splits(root: Path, **options) -> list[str]:
    require_dir(root, "image folder dataset root", LAYOUT)
    return [s for s in SPLITS if (root / s).is_dir()]


def read(root: Path, split: str) -> ReadResult:
    check_split(NAME, split, SPLITS)
    split_dir = require_dir(root / split, f"image folder split {split!r}", LAYOUT)
    result = ReadResult(whole_photos=True)  # whatever a camera took
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and _visible(p)):
        name = normalize_label(class_dir.name)
        if name is None:
            raise DatasetLayoutError(
                f"{class_dir}: folder name {class_dir.name!r} is not an expression class; use one of {list(CLASS_NAMES)} "
                "or an alias such as happy, sad, angry, surprised"
            )
        for path in sorted(p for p in class_dir.iterdir() if p.is_file() and _visible(p)):
            record_id = path.relative_to(root).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                result.skip("not_an_image_file", record_id)
                continue
            record = FaceRecord(id=record_id, dataset=NAME, split=split, label=CLASS_INDEX[name], image_path=path)
            result.records.append(record)
    return result
