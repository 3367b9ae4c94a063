"""Bad data, through the path training takes (``FERDataModule``: reader → AU cache → samples): every case
ends in a clear error naming the file (and line) or in a documented, counted skip. One test per row of
the fault table in ``docs/faults.md``.

The dataset is a RAF-DB tree of synthetic faces (the real layout, ``tests/dataset_trees.py``) with the
builtin dlib detector, damaged one way per test; FERPlus, AffectNet, trace files and the AU cache are
damaged where their own formats can be.
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from dataset_trees import AffectRow, affectnet_csv_tree, ferplus_csv_tree, noise_image, rafdb_tree, synthetic_face_image, write_image
from tagfer.au.cache import CacheMismatchError
from tagfer.core.config import AUConfig, DataConfig, DatasetSpec
from tagfer.data.images import CorruptImageError
from tagfer.data.reader_base import DatasetLayoutError
from tagfer.data.readers import read_dataset
from tagfer.data.trace_file import TraceFileError, read_traces
from tagfer.pipeline.datamodule import FERDataModule
from tagfer.pipeline.splits import SplitReader

pytest.importorskip("dlib")

LABELS = "EmoLabel/list_patition_label.txt"
CORRUPT = "not in AU cache (corrupt image)"


@pytest.fixture
def rafdb(tmp_path):
    return rafdb_tree(tmp_path / "basic", image=lambda index: synthetic_face_image(index, 100))


def datamodule(root, tmp_path, *, strict: bool = False) -> FERDataModule:
    data = DataConfig(
        train=[DatasetSpec(name="rafdb", root=str(root), split="train")],
        val=[DatasetSpec(name="rafdb", root=str(root), split="test")],
        test=[],
        strict=strict,
    )
    au = AUConfig(detector="builtin", cache_dir=str(tmp_path / "au"))
    return FERDataModule(OmegaConf.structured(data), OmegaConf.structured(au), seed=0)


def setup(root, tmp_path, **kwargs) -> FERDataModule:
    dm = datamodule(root, tmp_path, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def image(root, name: str):
    return root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")


# ---------------------------------------------------------------------------- images: counted skips
@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda path: path.write_bytes(b"\x00\x01garbage" * 20), "cannot decode image"),
        (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]), "cannot decode image"),
        (lambda path: path.write_bytes(b""), "empty \\(zero-byte\\) image file"),
    ],
    ids=["corrupt", "truncated", "zero-byte"],
)
def test_undecodable_images_are_skipped_and_counted_or_name_the_file_under_strict(rafdb, tmp_path, damage, message):
    damage(image(rafdb, "train_00002.jpg"))
    dm = setup(rafdb, tmp_path)
    assert dm.skipped["train"] == {CORRUPT: 1}
    assert len(dm.datasets["train"]) == 5
    assert "train_00002" not in {item.record.id for item in dm.datasets["train"].items}
    with pytest.raises(CorruptImageError, match=rf"train_00002_aligned\.jpg: {message}.*data\.strict=true"):
        setup(rafdb, tmp_path, strict=True)


def test_images_without_a_face_are_dropped_from_training_and_kept_for_evaluation(rafdb, tmp_path):
    for name in ("train_00001.jpg", "test_0001.jpg"):
        write_image(image(rafdb, name), noise_image(0, (100, 100)))
    dm = setup(rafdb, tmp_path)
    assert dm.skipped["train"] == {"failed face-quality filter": 1}
    assert len(dm.datasets["train"]) == 5 and len(dm.datasets["val"]) == 3
    faceless = next(item for item in dm.datasets["val"].items if item.record.id.endswith("test_0001_aligned.jpg"))
    assert not faceless.evidence.face_found and not faceless.evidence.au_box


def test_a_split_whose_every_image_is_damaged_is_an_error_with_the_counts(rafdb, tmp_path):
    for path in (rafdb / "Image" / "aligned").glob("train_*"):
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"data\.train: no usable samples \(skipped: \{'not in AU cache \(corrupt image\)': 6\}\)"):
        setup(rafdb, tmp_path)


# ------------------------------------------------------------------------- label files: file + line
@pytest.mark.parametrize(
    "line,message",
    [
        ("train_00003.jpg 9", r"list_patition_label\.txt line 3: label '9' is not one of 1\.\.7"),
        ("train_00003.jpg -1", r"list_patition_label\.txt line 3: label '-1' is not one of 1\.\.7"),
        ("train_00003.jpg", r"list_patition_label\.txt line 3: expected '<name> <label>', got 'train_00003\.jpg'"),
        ("train_00003.jpg 4 extra", r"list_patition_label\.txt line 3: expected '<name> <label>'"),
        ("val_00003.jpg 4", r"list_patition_label\.txt line 3: image name 'val_00003\.jpg' does not start with 'train_' or 'test_'"),
    ],
    ids=["unknown-code", "negative-code", "missing-column", "extra-column", "unknown-split"],
)
def test_bad_label_rows_name_the_file_and_line(rafdb, tmp_path, line, message):
    labels = (rafdb / LABELS).read_text().splitlines()
    labels[2] = line
    (rafdb / LABELS).write_text("\n".join(labels) + "\n")
    with pytest.raises(DatasetLayoutError, match=message):
        setup(rafdb, tmp_path)


def test_duplicated_ids_keep_the_last_row_counted_or_fail_under_strict(rafdb, tmp_path):
    labels = (rafdb / LABELS).read_text().splitlines()
    (rafdb / LABELS).write_text("\n".join([labels[0], *labels]) + "\n")
    dm = setup(rafdb, tmp_path)
    assert dm.skipped["train"] == {"duplicate_id": 1} and len(dm.datasets["train"]) == 6
    with pytest.raises(DatasetLayoutError, match=r"'duplicate_id': 1.*strict.*train_00001_aligned\.jpg"):
        setup(rafdb, tmp_path, strict=True)


def test_listed_images_missing_on_disk_are_listed(rafdb, tmp_path):
    image(rafdb, "train_00004.jpg").unlink()
    with pytest.raises(
        DatasetLayoutError,
        match=r"1 image\(s\) listed in .*list_patition_label\.txt are missing, e\.g\. \['Image/aligned/train_00004_aligned\.jpg \(line 4\)'\]",
    ):
        setup(rafdb, tmp_path)


def test_an_empty_split_is_an_error_naming_the_split(rafdb, tmp_path):
    labels = [row for row in (rafdb / LABELS).read_text().splitlines() if row.startswith("test_")]
    (rafdb / LABELS).write_text("\n".join(labels) + "\n")
    with pytest.raises(ValueError, match=r"data\.train: no usable samples \(skipped: \{\}\); check the dataset roots and splits"):
        setup(rafdb, tmp_path)


# --------------------------------------------------------------------------------- other formats
def test_ferplus_and_affectnet_rows_name_the_file_and_line(tmp_path):
    ferplus = ferplus_csv_tree(tmp_path / "ferplus")
    lines = (ferplus / "fer2013new.csv").read_text().splitlines()
    lines[2] = ",".join(lines[2].split(",")[:-3])  # 3 vote columns missing
    (ferplus / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"fer2013new\.csv line 3: expected 12 columns, got 9"):
        read_dataset(DatasetSpec(name="ferplus", root=str(ferplus), split="train"))

    affectnet = affectnet_csv_tree(tmp_path / "affectnet", train=(AffectRow("1/a.jpg", 12), AffectRow("1/b.jpg", 1)))
    with pytest.raises(DatasetLayoutError, match=r"training\.csv line 2: expression '12' is not a code 0\.\.10"):
        read_dataset(DatasetSpec(name="affectnet", root=str(affectnet), split="train"))


def test_a_trace_file_cut_mid_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text('{"id": "a"')
    with pytest.raises(TraceFileError, match=r"traces\.jsonl:1: truncated last line \(interrupted build\); rerun `tagfer traces build`"):
        read_traces(path)


def test_an_au_cache_shard_damaged_after_the_build_is_never_read(rafdb, tmp_path):
    dm = setup(rafdb, tmp_path)
    cache = SplitReader(dm.au_cfg, progress=False).au_cache(dm.data_cfg.train[0])
    shard = cache.directory / "train" / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte: same size, valid header, wrong numbers
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheMismatchError, match=r"shard-00000\.npy is damaged \(checksum mismatch\); rebuild:\s+tagfer au-cache build"):
        setup(rafdb, tmp_path)
    shard.write_bytes(bytes(data[:200]))  # cut short (an interrupted copy of the cache directory)
    with pytest.raises(CacheMismatchError, match=r"shard-00000\.npy is damaged or missing"):
        setup(rafdb, tmp_path)


def test_an_image_changed_after_the_cache_was_built_asks_for_a_rebuild(rafdb, tmp_path):
    setup(rafdb, tmp_path)
    write_image(image(rafdb, "train_00005.jpg"), np.zeros((100, 100, 3), np.uint8))  # another file size
    with pytest.raises(CacheMismatchError, match=r"images, labels or ids changed since it was built[\s\S]*tagfer au-cache build"):
        setup(rafdb, tmp_path)
