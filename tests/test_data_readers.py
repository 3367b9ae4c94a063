"""Dataset readers on small trees in the exact real layouts (built by tests/dataset_trees.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from dataset_trees import (
    AFFECTNET_TRAIN,
    AFFECTNET_VAL,
    FerRow,
    affectnet_csv_tree,
    affectnet_landmarks,
    affectnet_npy_tree,
    fer_pixels,
    ferplus_csv_tree,
    ferplus_folder_tree,
    imagefolder_tree,
    rafdb_box,
    rafdb_landmarks5,
    rafdb_tree,
    write_image,
)
from tagfer.cli import main
from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES
from tagfer.core.config import ConfigError, DatasetSpec
from tagfer.core.records import FaceRecord
from tagfer.data.ferplus_labels import label_from_votes
from tagfer.data.images import CorruptImageError, load_image
from tagfer.data.reader_base import DatasetLayoutError
from tagfer.data.readers import available_splits, read_dataset, read_split


def labels(result) -> dict[str, str]:
    return {r.id: r.label_name for r in result.records}


# ------------------------------------------------------------------------------------------- RAF-DB
@pytest.fixture
def rafdb_root(tmp_path) -> Path:
    return rafdb_tree(tmp_path / "basic")


def test_rafdb_records_labels_and_annotations(rafdb_root):
    result = read_split("rafdb", rafdb_root, "train")
    assert labels(result) == {
        "Image/aligned/train_00001_aligned.jpg": "sadness",
        "Image/aligned/train_00002_aligned.jpg": "happiness",
        "Image/aligned/train_00003_aligned.jpg": "happiness",
        "Image/aligned/train_00004_aligned.jpg": "surprise",
        "Image/aligned/train_00005_aligned.jpg": "neutral",
        "Image/aligned/train_00006_aligned.jpg": "anger",
    }
    first = result.records[0]
    assert first.dataset == "rafdb" and first.split == "train"
    assert first.image_path == rafdb_root / first.id
    np.testing.assert_allclose(first.extra["landmarks5"], rafdb_landmarks5(0))
    assert first.extra["original_face_box"] == rafdb_box(0)
    assert first.face_box is None  # the box is in original-image pixels, not the aligned crop's
    assert (first.extra["gender"], first.extra["race"], first.extra["age"]) == (0, 0, 0)
    assert first.landmarks is None


def test_rafdb_original_variant_and_test_split(rafdb_root):
    result = read_split("rafdb", rafdb_root, "test", image_variant="original")
    assert labels(result) == {
        "Image/original/test_0001.jpg": "happiness",
        "Image/original/test_0002.jpg": "fear",
        "Image/original/test_0003.jpg": "disgust",
    }
    assert result.records[1].face_box == rafdb_box(7)
    assert available_splits("rafdb", rafdb_root) == ["train", "test"]


def test_rafdb_optional_annotations_are_counted(tmp_path):
    root = rafdb_tree(tmp_path / "basic", manual=False, bounding_box=False)
    result = read_split("rafdb", root, "train")
    assert len(result.records) == 6 and "landmarks5" not in result.records[0].extra
    assert result.notes["without_manual_annotation"] == 6 and result.notes["without_bounding_box"] == 6


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00007.jpg\n", "line 10: expected '<name> <label>'"),
        ("train_00007.jpg 9\n", "line 10: label '9' is not one of 1..7"),
        ("valid_0001.jpg 3\n", "does not start with 'train_' or 'test_'"),
    ],
)
def test_rafdb_malformed_rows_name_file_and_line(rafdb_root, line, message):
    label_file = rafdb_root / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + line)
    with pytest.raises(DatasetLayoutError, match=message) as err:
        read_split("rafdb", rafdb_root, "train")
    assert str(label_file) in str(err.value)


def test_rafdb_missing_files_and_bad_options(rafdb_root, tmp_path):
    (rafdb_root / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 image\(s\).*train_00002_aligned.jpg \(line 2\)"):
        read_split("rafdb", rafdb_root, "train")
    with pytest.raises(DatasetLayoutError, match="list_patition_label.txt does not exist; expected layout"):
        read_split("rafdb", tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match="nowhere does not exist; expected layout: <root>/EmoLabel"):
        read_split("rafdb", tmp_path / "nowhere", "train")
    with pytest.raises(ConfigError, match="no split 'val'"):
        read_split("rafdb", rafdb_root, "val")
    with pytest.raises(ConfigError, match="image_variant='cropped'"):
        read_split("rafdb", rafdb_root, "test", image_variant="cropped")
    bad = rafdb_root / "Annotation" / "manual" / "test_0001_manu_attri.txt"
    bad.write_text("1.0 2.0\n3.0\n")
    with pytest.raises(DatasetLayoutError, match="test_0001_manu_attri.txt: expected 5 landmark lines"):
        read_split("rafdb", rafdb_root, "test")


# ---------------------------------------------------------------------------------- FER+ label modes
# Hand-computed from the FER+ rules (votes: neutral, happiness, surprise, sadness, anger, disgust,
# fear, contempt, unknown, NF; counts of 1 are zeroed first; T = remaining total).
MODE_CASES = [
    # votes, mode, expected (label, {class: soft}) or None
    ((0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "majority", ("happiness", None)),
    ((0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "probability", ("happiness", {"happiness": 1.0})),
    # T=8 after zeroing; neutral 4 is not > 4 → no majority; both tied levels kept in soft modes
    ((4, 0, 0, 0, 1, 0, 0, 4, 1, 0), "majority", None),
    ((4, 0, 0, 0, 1, 0, 0, 4, 1, 0), "crossentropy", ("neutral", {"neutral": 0.5, "contempt": 0.5})),
    ((4, 0, 0, 0, 1, 0, 0, 4, 1, 0), "multi_target", ("neutral", {"neutral": 0.5, "contempt": 0.5})),
    # T=9: surprise 5 > 4.5; probability keeps 5 then 4 (5 < 6.75); multi_target: both ≥ 2.7, uniform
    ((0, 0, 5, 0, 0, 0, 4, 0, 1, 0), "majority", ("surprise", None)),
    ((0, 0, 5, 0, 0, 0, 4, 0, 1, 0), "probability", ("surprise", {"surprise": 5 / 9, "fear": 4 / 9})),
    ((0, 0, 5, 0, 0, 0, 4, 0, 1, 0), "multi_target", ("surprise", {"surprise": 0.5, "fear": 0.5})),
    # T=10: sadness ties unknown at 3 → probability stops with 3 ≤ 5 kept; multi_target keeps 3 + 3 > 5
    ((2, 0, 0, 3, 0, 0, 0, 0, 3, 2), "probability", None),
    ((2, 0, 0, 3, 0, 0, 0, 0, 3, 2), "multi_target", ("sadness", {"sadness": 1.0})),
    # T=10: neutral 5 then unknown 3 alone → stop at 5 ≤ 5; multi_target keeps neutral 5 + unknown 3
    ((5, 0, 0, 0, 0, 0, 0, 0, 3, 2), "probability", None),
    ((5, 0, 0, 0, 0, 0, 0, 0, 3, 2), "multi_target", ("neutral", {"neutral": 1.0})),
    # T=10: levels 3,3 then 2,2 → 4 classes kept (> 3) → dropped
    ((3, 3, 2, 2, 0, 0, 0, 0, 0, 0), "probability", None),
    # T=9: 4 then 3 reaches 7 ≥ 6.75
    ((4, 3, 2, 0, 0, 0, 0, 0, 0, 0), "probability", ("neutral", {"neutral": 4 / 7, "happiness": 3 / 7})),
    ((4, 3, 2, 0, 0, 0, 0, 0, 0, 0), "majority", None),
    # every count is 1 → nothing left
    ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "majority", None),
    ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "multi_target", None),
    # not a face by majority in every mode
    ((0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "majority", None),
    ((0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "probability", None),
    ((0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "multi_target", None),
    # anger (column 4) and disgust (column 5) map to the canonical indices 6 and 5
    ((0, 0, 0, 0, 7, 3, 0, 0, 0, 0), "probability", ("anger", {"anger": 0.7, "disgust": 0.3})),
]


@pytest.mark.parametrize(("votes", "mode", "expected"), MODE_CASES)
def test_label_modes_on_hand_computed_vote_rows(votes, mode, expected):
    got = label_from_votes(votes, mode)
    if expected is None:
        assert got is None
        return
    label, soft = got
    assert CLASS_NAMES[label] == expected[0]
    if expected[1] is None:
        assert soft is None
    else:
        want = np.zeros(8, dtype=np.float32)
        for name, p in expected[1].items():
            want[CLASS_INDEX[name]] = p
        np.testing.assert_allclose(soft, want, rtol=1e-6)


def test_label_mode_rejects_bad_input():
    with pytest.raises(ValueError, match="label mode 'vote'"):
        label_from_votes((0,) * 10, "vote")
    with pytest.raises(ValueError, match="expected 10 votes"):
        label_from_votes((1, 2), "majority")


# ------------------------------------------------------------------------------------------ FERPlus
@pytest.fixture
def ferplus_csv(tmp_path) -> Path:
    return ferplus_csv_tree(tmp_path / "FERPlus")


def test_ferplus_csv_train_majority(ferplus_csv):
    result = read_split("ferplus", ferplus_csv, "train")
    assert labels(result) == {"FER2013Train/fer0000000.png": "happiness", "FER2013Train/fer0000003.png": "surprise"}
    assert result.skipped == {"no_face_row": 1, "unknown_or_nf": 3}
    assert result.skipped_examples["no_face_row"] == ["fer2013new.csv line 4"]
    assert result.notes == {"layout": "csv", "label_mode": "majority", "label_source": "fer2013new.csv"}
    record = result.records[1]
    assert record.image_path is None and record.soft_label is None
    np.testing.assert_array_equal(record.pixels, fer_pixels(3))
    assert record.extra["votes"] == [0, 0, 5, 0, 0, 0, 4, 0, 1, 0]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("majority", {"fer0000000.png": "happiness", "fer0000003.png": "surprise"}),
        ("probability", {"fer0000000.png": "happiness", "fer0000001.png": "neutral", "fer0000003.png": "surprise"}),
        ("crossentropy", {"fer0000000.png": "happiness", "fer0000001.png": "neutral", "fer0000003.png": "surprise"}),
        (
            "multi_target",
            {"fer0000000.png": "happiness", "fer0000001.png": "neutral", "fer0000003.png": "surprise", "fer0000004.png": "sadness"},
        ),
    ],
)
def test_ferplus_label_modes_apply_to_train_only(ferplus_csv, mode, expected):
    train = read_split("ferplus", ferplus_csv, "train", label_mode=mode)
    assert labels(train) == {f"FER2013Train/{k}": v for k, v in expected.items()}
    assert all((r.soft_label is None) == (mode == "majority") for r in train.records)
    for split, want in (
        ("val", {"FER2013Valid/fer0000006.png": "neutral"}),
        ("test", {"FER2013Test/fer0000008.png": "sadness", "FER2013Test/fer0000010.png": "anger"}),
    ):
        result = read_split("ferplus", ferplus_csv, split, label_mode=mode)
        assert labels(result) == want and result.notes["label_mode"] == "majority"
        assert all(r.soft_label is None for r in result.records)


FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}


@pytest.mark.parametrize("columns", [11, 12])
def test_ferplus_folder_layout_matches_csv_layout(tmp_path, ferplus_csv, columns):
    root = ferplus_folder_tree(tmp_path / f"folders{columns}", columns=columns)
    for split in ("train", "val", "test"):
        folders = read_split("ferplus", root, split, label_mode="probability")
        from_csv = read_split("ferplus", ferplus_csv, split, label_mode="probability")
        assert labels(folders) == labels(from_csv)
        for a, b in zip(folders.records, from_csv.records):
            np.testing.assert_array_equal(load_image(a), load_image(b))
            assert (a.soft_label is None and b.soft_label is None) or np.allclose(a.soft_label, b.soft_label)
        assert folders.notes["label_source"] == f"{FOLDERS[split]}/label.csv"
        assert "no_face_row" not in folders.skipped  # the FER+ script writes no row for them
    assert available_splits("ferplus", root) == ["train", "val", "test"]


def test_ferplus_auto_layout_prefers_the_csv_pair(tmp_path):
    root = ferplus_folder_tree(ferplus_csv_tree(tmp_path / "both"))
    assert read_split("ferplus", root, "test").notes["label_source"] == "fer2013new.csv"
    assert read_split("ferplus", root, "test", layout="folders").notes["label_source"] == "FER2013Test/label.csv"
    with pytest.raises(DatasetLayoutError, match="no fer2013.csv \\+ fer2013new.csv and no FER2013\\*/label.csv"):
        read_split("ferplus", tmp_path, "train")


def test_ferplus_duplicated_names_keep_the_last_row(tmp_path):
    rows = (
        FerRow("Training", "fer0000000.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0)),
        FerRow("Training", "fer0000000.png", (10, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
        FerRow("Training", "fer0000002.png", (0, 0, 0, 10, 0, 0, 0, 0, 0, 0)),
    )
    root = ferplus_csv_tree(tmp_path / "dup", rows)
    result = read_split("ferplus", root, "train")
    assert labels(result) == {"FER2013Train/fer0000000.png": "neutral", "FER2013Train/fer0000002.png": "sadness"}
    np.testing.assert_array_equal(result.records[0].pixels, fer_pixels(1))  # the image the FER+ script leaves on disk
    assert result.skipped == {"duplicate_id": 1}
    with pytest.raises(DatasetLayoutError, match="duplicate_id.*strict"):
        read_split("ferplus", root, "train", strict=True)


def test_ferplus_malformed_rows_name_file_and_line(ferplus_csv, tmp_path):
    new = ferplus_csv / "fer2013new.csv"
    lines = new.read_text().splitlines()
    new.write_text("\n".join([*lines[:2], "Training,fer0000001.png,4,0,x,0,1,0,0,4,1,0", *lines[3:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"fer2013new.csv line 3: expected 10 non-negative integer votes"):
        read_split("ferplus", ferplus_csv, "train")
    new.write_text("\n".join(["Usage,Image,neutral", *lines[1:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="fer2013new.csv line 1: expected header Usage,Image name"):
        read_split("ferplus", ferplus_csv, "train")
    new.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetLayoutError, match="has more rows than"):
        read_split("ferplus", ferplus_csv, "test")
    new.write_text("\n".join(lines) + "\n")
    fer = ferplus_csv / "fer2013.csv"
    fer_lines = fer.read_text().splitlines()
    fer.write_text("\n".join([*fer_lines[:1], "3,1 2 3,Training", *fer_lines[2:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="fer2013.csv line 2: expected 2304 space-separated values"):
        read_split("ferplus", ferplus_csv, "train")
    fer.write_text("\n".join([*fer_lines[:1], fer_lines[1].replace("Training", "PublicTest"), *fer_lines[2:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="not in the same row order"):
        read_split("ferplus", ferplus_csv, "train")
    folders = ferplus_folder_tree(tmp_path / "folders")
    (folders / "FER2013Valid" / "label.csv").write_text("fer0000006.png,1,2,3\n")
    with pytest.raises(DatasetLayoutError, match=r"FER2013Valid/label.csv line 1: expected 11 .* or 12"):
        read_split("ferplus", folders, "val")
    (folders / "FER2013Test" / "fer0000008.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 image\(s\) named in .*label.csv are missing.*fer0000008.png"):
        read_split("ferplus", folders, "test")
    with pytest.raises(ConfigError, match="label_mode='soft'"):
        read_split("ferplus", folders, "train", label_mode="soft")


# ----------------------------------------------------------------------------------------- AffectNet
@pytest.mark.parametrize("validation_header", [True, False])
def test_affectnet_csv_layout(tmp_path, validation_header):
    root = affectnet_csv_tree(tmp_path / "AffectNet", validation_header=validation_header, missing=("101/img_01.jpg",))
    train = read_split("affectnet", root, "train")
    assert [r.id for r in train.records] == [
        f"Manually_Annotated_Images/{row.path}" for row in AFFECTNET_TRAIN if row.expression < 8 and row.path != "101/img_01.jpg"
    ]
    assert [r.label_name for r in train.records] == ["neutral", "sadness", "surprise", "fear", "disgust", "anger", "contempt", "happiness"]
    assert train.skipped == {"missing_image": 1, "code_8_none": 1, "code_9_uncertain": 1, "code_10_no_face": 1}
    assert train.skipped_examples["missing_image"] == ["Manually_Annotated_Images/101/img_01.jpg (training.csv line 3)"]
    first = train.records[0]
    np.testing.assert_allclose(first.landmarks, affectnet_landmarks(0), atol=1e-4)
    assert first.landmarks.shape == (68, 2) and first.landmarks.dtype == np.float32
    assert first.face_box == (5.0, 6.0, 45.0, 48.0)  # x, y, w, h = 5, 6, 40, 42
    assert first.extra == {"valence": 0.25, "arousal": -0.5}
    val = read_split("affectnet", root, "val")
    assert [r.label for r in val.records] == list(range(8)) and len(val.records) == len(AFFECTNET_VAL)
    np.testing.assert_allclose(val.records[3].landmarks, affectnet_landmarks(3), atol=1e-4)


def test_affectnet_7_strict_and_errors(tmp_path):
    root = affectnet_csv_tree(tmp_path / "AffectNet", missing=("101/img_01.jpg",))
    seven = read_split("affectnet", root, "val", num_classes=7)
    assert [r.label_name for r in seven.records] == list(CLASS_NAMES[:7])
    assert seven.skipped == {"contempt_not_in_affectnet7": 1}
    with pytest.raises(DatasetLayoutError, match=r"missing_image.*strict.*101/img_01.jpg"):
        read_split("affectnet", root, "train", strict=True)
    with pytest.raises(ConfigError, match="AffectNet's validation set is its test set"):
        read_split("affectnet", root, "test")
    with pytest.raises(ConfigError, match="num_classes=6"):
        read_split("affectnet", root, "val", num_classes=6)
    val_csv = root / "Manually_Annotated_file_lists" / "validation.csv"
    lines = val_csv.read_text().splitlines()
    val_csv.write_text("\n".join([*lines[:3], lines[3].rsplit(",", 1)[0], *lines[4:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="validation.csv line 4: expected 9 columns"):
        read_split("affectnet", root, "val")
    val_csv.write_text("\n".join([*lines[:3], lines[3].replace(',"', ',"1;2;', 1), *lines[4:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="validation.csv line 4: facial_landmarks must hold 136"):
        read_split("affectnet", root, "val")
    val_csv.write_text("\n".join([*lines[:3], lines[3].replace(",2,0.25,", ",12,0.25,"), *lines[4:]]) + "\n")
    with pytest.raises(DatasetLayoutError, match="validation.csv line 4: expression '12' is not a code 0..10"):
        read_split("affectnet", root, "val")


def test_affectnet_npy_layout(tmp_path):
    root = affectnet_npy_tree(tmp_path / "AffectNet")
    train = read_split("affectnet", root, "train")
    assert [r.id for r in train.records] == [f"train_set/images/{i}.jpg" for i in (0, 1, 2, 4, 5)]
    assert [r.label_name for r in train.records] == ["neutral", "happiness", "sadness", "contempt", "happiness"]
    assert train.skipped == {"code_8_none": 1} and train.notes["layout"] == "npy"
    np.testing.assert_allclose(train.records[3].landmarks, affectnet_landmarks(4), atol=1e-4)
    assert train.records[0].face_box is None
    (root / "val_set" / "annotations" / "2_lnd.npy").unlink()
    val = read_split("affectnet", root, "val", num_classes=7)
    assert [r.label_name for r in val.records] == ["surprise", "fear", "disgust", "anger"]
    assert val.records[2].landmarks is None and val.notes["without_landmarks"] == 1
    assert available_splits("affectnet", root) == ["train", "val"]
    (root / "val_set" / "annotations" / "1_exp.npy").unlink()
    with pytest.raises(DatasetLayoutError, match="1_exp.npy does not exist"):
        read_split("affectnet", root, "val")


# -------------------------------------------------------------------------------------- image folder
def test_imagefolder_aliases_and_errors(tmp_path):
    root = imagefolder_tree(tmp_path / "faces")
    (root / "train" / "happy" / "notes.txt").write_text("not an image")
    (root / "train" / "happy" / ".DS_Store").write_text("")
    train = read_split("imagefolder", root, "train")
    assert labels(train) == {
        "train/Sad/000.jpg": "sadness",
        "train/happy/000.jpg": "happiness",
        "train/happy/001.png": "happiness",
        "train/neutral/000.jpg": "neutral",
    }
    assert train.skipped == {"not_an_image_file": 1}
    assert available_splits("imagefolder", root) == ["train", "test"]
    write_image(root / "test" / "grumpy" / "000.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="folder name 'grumpy' is not an expression class"):
        read_split("imagefolder", root, "test")
    with pytest.raises(DatasetLayoutError, match="split 'val'.*does not exist"):
        read_split("imagefolder", root, "val")


# ------------------------------------------------------------------------------------- read_dataset
@pytest.mark.parametrize("as_dictconfig", [False, True])
def test_read_dataset_filters_classes_and_limits(rafdb_root, as_dictconfig):
    spec = DatasetSpec(name="rafdb", root=str(rafdb_root), split="train", classes=["happiness", "anger"], limit=2)
    spec = OmegaConf.structured(spec) if as_dictconfig else spec
    result = read_dataset(spec)
    assert [r.id for r in result.records] == ["Image/aligned/train_00002_aligned.jpg", "Image/aligned/train_00003_aligned.jpg"]
    assert result.skipped == {"not_in_classes": 3} and result.notes["limited_from"] == 3


def test_read_dataset_rejects_unknown_reader_and_options(rafdb_root):
    with pytest.raises(ConfigError, match="unknown dataset reader 'raf'"):
        read_dataset(DatasetSpec(name="raf", root=str(rafdb_root)))
    with pytest.raises(ConfigError, match=r"takes options \['image_variant'\], not \['layout'\]"):
        read_split("rafdb", rafdb_root, "train", layout="csv")
    with pytest.raises(ConfigError, match="unknown class name"):
        read_dataset(DatasetSpec(name="rafdb", root=str(rafdb_root), split="test", classes=["joy"]))


# -------------------------------------------------------------------------------------------- images
def test_load_image_files_pixels_and_exif(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    png = write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(load_image(FaceRecord("a.png", "x", "train", 0, image_path=png)), rgb)
    grey = fer_pixels(1)
    out = load_image(FaceRecord("g", "ferplus", "train", 0, pixels=grey))
    assert out.shape == (48, 48, 3) and out.dtype == np.uint8 and (out[..., 2] == grey).all()
    palette = tmp_path / "p.png"
    Image.fromarray(rgb).convert("P").save(palette)
    assert load_image(FaceRecord("p", "x", "train", 0, image_path=palette)).shape == (6, 4, 3)
    rotated = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(rotated, exif=exif)
    assert load_image(FaceRecord("r", "x", "train", 0, image_path=rotated)).shape == (4, 6, 3)


def test_load_image_corrupt_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    full = write_image(tmp_path / "full.jpg", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[:300])
    for path, message in ((empty, "zero-byte"), (garbage, "cannot decode"), (truncated, "cannot decode")):
        with pytest.raises(CorruptImageError, match=message) as err:
            load_image(FaceRecord(path.name, "x", "train", 0, image_path=path))
        assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_image(FaceRecord("gone", "x", "train", 0, image_path=tmp_path / "gone.jpg"))


# ------------------------------------------------------------------------------------------------ CLI
def test_summarize_cli_json(tmp_path, capsys):
    root = affectnet_csv_tree(tmp_path / "AffectNet", missing=("101/img_01.jpg",))
    assert main(["data", "summarize", "--dataset", "affectnet", "--root", str(root), "--num-classes", "7", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "dataset": "affectnet",
        "splits": {
            "train": {"total": 7, "classes": {**{c: 1 for c in CLASS_NAMES[:7]}, "contempt": 0}},
            "val": {"total": 7, "classes": {**{c: 1 for c in CLASS_NAMES[:7]}, "contempt": 0}},
        },
        "skipped": {"missing_image": 1, "contempt_not_in_affectnet7": 2, "code_8_none": 1, "code_9_uncertain": 1, "code_10_no_face": 1},
    }


def test_summarize_cli_ferplus_table_and_layout_error(tmp_path, capsys):
    root = ferplus_folder_tree(tmp_path / "FERPlus", columns=11)
    assert main(["data", "summarize", "--dataset", "ferplus", "--root", str(root), "--label-mode", "multi_target"]) == 0
    table = capsys.readouterr().out
    assert "sadness" in table and "skipped unknown_or_nf: 2" in table
    shutil.rmtree(root / "FER2013Train")
    (root / "FER2013Valid" / "label.csv").unlink()
    (root / "FER2013Test" / "label.csv").unlink()
    assert main(["data", "summarize", "--dataset", "ferplus", "--root", str(root)]) == 2
    assert "expected layout" in capsys.readouterr().err
