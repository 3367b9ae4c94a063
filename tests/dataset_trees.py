"""Builders of small dataset trees in exactly the real on-disk layouts (RAF-DB, FERPlus, AffectNet,
image folders), for tests of the readers, the AU cache and anything else that reads datasets.

Every builder writes under ``root`` and returns ``root``. Images are tiny by default (random colours,
fast to write and decode); pass ``image=`` (``index -> [H, W, 3] uint8``) to put real content in them,
e.g. :func:`synthetic_face_image` for faces that landmark detectors can find.

    from dataset_trees import rafdb_tree, RAFDB_ROWS
    root = rafdb_tree(tmp_path / "basic")            # 6 train + 3 test images, every annotation file
"""

from __future__ import annotations

import csv
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ImageFactory = Callable[[int], np.ndarray]


def noise_image(index: int, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    """A tiny deterministic RGB image (``size`` = (height, width))."""
    return np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)


def synthetic_face_image(index: int, size: int = 112) -> np.ndarray:
    """A synthetic face (class ``index % 8``) for trees whose images must contain a face."""
    from tagfer.core.classes import CLASS_NAMES
    from tagfer.data.synthetic_faces import make_face

    return make_face(np.random.default_rng(index), CLASS_NAMES[index % len(CLASS_NAMES)], size).image


def write_image(path: Path, pixels: np.ndarray) -> Path:
    """Save ``pixels`` at ``path`` (format from the suffix: .jpg / .png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


# ------------------------------------------------------------------------------------------- RAF-DB
#: (image name, RAF-DB label code 1..7): 6 train, 3 test.
RAFDB_ROWS: tuple[tuple[str, int], ...] = (
    ("train_00001.jpg", 5),
    ("train_00002.jpg", 4),
    ("train_00003.jpg", 4),
    ("train_00004.jpg", 1),
    ("train_00005.jpg", 7),
    ("train_00006.jpg", 6),
    ("test_0001.jpg", 4),
    ("test_0002.jpg", 2),
    ("test_0003.jpg", 3),
)


def rafdb_landmarks5(index: int) -> list[tuple[float, float]]:
    """The 5 manual points written for image ``index`` (eyes, nose tip, mouth corners)."""
    return [(30.5 + index, 40.25), (70.5 + index, 40.75), (50.0 + index, 60.0), (35.0 + index, 80.5), (65.0 + index, 80.0)]


def rafdb_box(index: int) -> tuple[float, float, float, float]:
    return (10.0 + index, 12.0, 90.0 + index, 110.5)


def rafdb_tree(
    root: Path,
    rows=RAFDB_ROWS,
    *,
    manual: bool = True,
    bounding_box: bool = True,
    image: ImageFactory = noise_image,
) -> Path:
    """``basic/``: EmoLabel/list_patition_label.txt, Image/aligned + Image/original, Annotation/manual + boundingbox."""
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{name} {code}\n" for name, code in rows))
    for index, (name, _) in enumerate(rows):
        stem = Path(name).stem
        pixels = image(index)
        write_image(root / "Image" / "aligned" / f"{stem}_aligned.jpg", pixels)
        write_image(root / "Image" / "original" / name, pixels)
        if manual:
            points = "".join(f"{x}\t{y}\n" for x, y in rafdb_landmarks5(index))
            (root / "Annotation" / "manual").mkdir(parents=True, exist_ok=True)
            (root / "Annotation" / "manual" / f"{stem}_manu_attri.txt").write_text(points + f"{index % 3}\n{index % 3}\n{index % 5}\n")
        if bounding_box:
            (root / "Annotation" / "boundingbox").mkdir(parents=True, exist_ok=True)
            box = " ".join(str(v) for v in rafdb_box(index))
            (root / "Annotation" / "boundingbox" / f"{stem}_boundingbox.txt").write_text(box + "\n")
    return root


# ------------------------------------------------------------------------------------------ FERPlus
FER2013_HEADER = "emotion,pixels,Usage"
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


@dataclass(frozen=True)
class FerRow:
    """One row of fer2013.csv + fer2013new.csv. ``name`` "" = a not-a-face row."""

    usage: str  # Training | PublicTest | PrivateTest
    name: str
    votes: tuple[int, ...]  # neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    emotion: int = 0  # the original FER2013 label (unused by FER+)


#: Two train rows per hand-computed vote case, plus val/test rows (see tests/test_data_readers.py).
FERPLUS_ROWS: tuple[FerRow, ...] = (
    FerRow("Training", "fer0000000.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0)),  # happiness everywhere
    FerRow("Training", "fer0000001.png", (4, 0, 0, 0, 1, 0, 0, 4, 1, 0)),  # tie neutral/contempt
    FerRow("Training", "", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10)),  # not a face
    FerRow("Training", "fer0000003.png", (0, 0, 5, 0, 0, 0, 4, 0, 1, 0)),  # surprise 5, fear 4
    FerRow("Training", "fer0000004.png", (2, 0, 0, 3, 0, 0, 0, 0, 3, 2)),  # sadness tied with unknown
    FerRow("Training", "fer0000005.png", (1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),  # only single votes
    FerRow("PublicTest", "fer0000006.png", (6, 0, 0, 1, 0, 0, 0, 1, 1, 1)),  # neutral
    FerRow("PublicTest", "fer0000007.png", (4, 0, 0, 0, 1, 0, 0, 4, 1, 0)),  # no majority
    FerRow("PrivateTest", "fer0000008.png", (0, 0, 0, 8, 0, 0, 2, 0, 0, 0)),  # sadness
    FerRow("PrivateTest", "", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10)),  # not a face
    FerRow("PrivateTest", "fer0000010.png", (0, 0, 0, 0, 9, 1, 0, 0, 0, 0)),  # anger
)
FERPLUS_FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}


def fer_pixels(index: int) -> np.ndarray:
    """The 48x48 grey image of FER row ``index``."""
    return np.random.default_rng(index).integers(0, 256, (48, 48), dtype=np.uint8)


def ferplus_csv_tree(root: Path, rows=FERPLUS_ROWS) -> Path:
    """``fer2013.csv`` (emotion,pixels,Usage) and ``fer2013new.csv`` (Usage,Image name,10 vote columns)."""
    root.mkdir(parents=True, exist_ok=True)
    fer = [FER2013_HEADER] + [f"{row.emotion},{' '.join(map(str, fer_pixels(i).ravel()))},{row.usage}" for i, row in enumerate(rows)]
    new = [FERPLUS_HEADER] + [f"{row.usage},{row.name},{','.join(map(str, row.votes))}" for row in rows]
    (root / "fer2013.csv").write_text("\n".join(fer) + "\n")
    (root / "fer2013new.csv").write_text("\n".join(new) + "\n")
    return root


def ferplus_folder_tree(root: Path, rows=FERPLUS_ROWS, *, columns: int = 12) -> Path:
    """What the FER+ script writes: FER2013Train/Valid/Test with PNGs and a headerless label.csv.

    ``columns=12`` writes the shipped form ``name,"(0, 0, 48, 48)",v1..v10``; ``columns=11`` the
    script's own ``name,v1..v10``. Not-a-face rows (empty name) are not written, as by the script.
    """
    labels: dict[str, list[list[str]]] = {}
    for index, row in enumerate(rows):
        if not row.name:
            continue
        folder = FERPLUS_FOLDERS[row.usage]
        write_image(root / folder / row.name, fer_pixels(index))
        box = ["(0, 0, 48, 48)"] if columns == 12 else []
        labels.setdefault(folder, []).append([row.name, *box, *map(str, row.votes)])
    for folder, lines in labels.items():
        with (root / folder / "label.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows(lines)
    return root


# ---------------------------------------------------------------------------------------- AffectNet
AFFECTNET_COLUMNS = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"


@dataclass(frozen=True)
class AffectRow:
    path: str  # subDirectory_filePath, e.g. "689/abc.jpg"
    expression: int  # 0..10
    box: tuple[int, int, int, int] = (5, 6, 40, 42)  # x, y, w, h
    valence: float = 0.25
    arousal: float = -0.5


def affectnet_landmarks(index: int) -> np.ndarray:
    """The ``[68, 2]`` landmarks written for row ``index``."""
    return (np.arange(136, dtype=np.float32).reshape(68, 2) * 0.5 + index).round(2)


#: Training rows: every code 0..10 once, plus a second happiness; validation rows: codes 0..7.
AFFECTNET_TRAIN: tuple[AffectRow, ...] = tuple(AffectRow(f"{100 + c}/img_{c:02d}.jpg", c) for c in range(11)) + (
    AffectRow("111/img_extra.jpg", 1),
)
AFFECTNET_VAL: tuple[AffectRow, ...] = tuple(AffectRow(f"{200 + c}/val_{c:02d}.jpg", c) for c in range(8))


def _affect_line(index: int, row: AffectRow) -> str:
    landmarks = ";".join(f"{v:.2f}" for v in affectnet_landmarks(index).ravel())
    x, y, w, h = row.box
    return f'{row.path},{x},{y},{w},{h},"{landmarks}",{row.expression},{row.valence},{row.arousal}'


def affectnet_csv_tree(
    root: Path,
    train=AFFECTNET_TRAIN,
    val=AFFECTNET_VAL,
    *,
    validation_header: bool = True,
    missing: tuple[str, ...] = (),
    image: ImageFactory = noise_image,
) -> Path:
    """The 2017 layout: Manually_Annotated_Images/ + Manually_Annotated_file_lists/{training,validation}.csv.

    ``missing`` lists subDirectory_filePath values whose image is not written; ``validation_header=False``
    writes validation.csv without its header line (as some copies are).
    """
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    for file_name, rows, header in (("training.csv", train, True), ("validation.csv", val, validation_header)):
        lines = ([AFFECTNET_COLUMNS] if header else []) + [_affect_line(i, row) for i, row in enumerate(rows)]
        (lists / file_name).write_text("\n".join(lines) + "\n")
        for index, row in enumerate(rows):
            if row.path not in missing:
                write_image(root / "Manually_Annotated_Images" / row.path, image(index))
    return root


def affectnet_npy_tree(root: Path, codes: dict[str, tuple[int, ...]] | None = None, *, image: ImageFactory = noise_image) -> Path:
    """The newer layout: {train_set,val_set}/images/<id>.jpg + annotations/<id>_{exp,val,aro,lnd}.npy.

    ``codes`` maps "train_set" / "val_set" to the expression code of images 0, 1, 2, ... (stored as the
    release does: a 0-d string array in ``_exp.npy``, 136 strings in ``_lnd.npy``).
    """
    codes = codes or {"train_set": (0, 1, 2, 8, 7, 1), "val_set": (3, 4, 5, 6, 7)}
    for folder, folder_codes in codes.items():
        for index, code in enumerate(folder_codes):
            write_image(root / folder / "images" / f"{index}.jpg", image(index))
            annotations = root / folder / "annotations"
            annotations.mkdir(parents=True, exist_ok=True)
            np.save(annotations / f"{index}_exp.npy", np.array(str(code)))
            np.save(annotations / f"{index}_val.npy", np.array("0.1"))
            np.save(annotations / f"{index}_aro.npy", np.array("-0.2"))
            np.save(annotations / f"{index}_lnd.npy", np.array([f"{v:.2f}" for v in affectnet_landmarks(index).ravel()]))
    return root


# ------------------------------------------------------------------------------------- image folder
def imagefolder_tree(root: Path, counts: dict[str, dict[str, int]] | None = None, *, image: ImageFactory = noise_image) -> Path:
    """``<root>/<split>/<class folder>/<n>.jpg|png`` (alternating formats); ``counts`` split → folder → n."""
    counts = counts or {"train": {"happy": 2, "Sad": 1, "neutral": 1}, "test": {"angry": 1, "surprised": 2}}
    index = 0
    for split, folders in counts.items():
        for folder, n in folders.items():
            for k in range(n):
                write_image(root / split / folder / f"{k:03d}.{'jpg' if k % 2 == 0 else 'png'}", image(index))
                index += 1
    return root


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit grey PNG declaring ``side × side`` pixels, all black (a "decompression bomb": about
    48 KB on disk for 20000², 400 megapixels once decoded)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
    rows = zlib.compress(b"\x00" * ((side // 8 + 1) * side), 9)
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
