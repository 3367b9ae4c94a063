"""The AU cache: build → show round trip, fingerprint / detector / box-mode mismatch errors with the
rebuild command, corrupt images, faces not found, quality verdicts, ensure_au_cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagfer.au.build import build_split, dataset_source
from tagfer.au.cache import AUCache, CacheMismatchError, default_cache_dir
from tagfer.au.detectors import DetectorSpec
from tagfer.au.fingerprint import dataset_fingerprint
from tagfer.cli import main
from tagfer.core.config import AUConfig, DatasetSpec, QualityConfig
from tagfer.core.records import FaceRecord
from tagfer.core.regions import au_boxes
from tagfer.core.vocabulary import AU_LIST
from tagfer.data.face_geometry import deform, to_image
from tagfer.data.images import CorruptImageError
from tagfer.data.readers import read_dataset
from tagfer.pipeline.splits import SplitReader

N = 12


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    read_dataset(DatasetSpec(name="synthetic", root=str(root), split="train", num_samples=N))
    return root


def spec_for(root, split="train", **kw) -> DatasetSpec:
    return DatasetSpec(name="synthetic", root=str(root), split=split, num_samples=N, **kw)


def test_build_and_show_round_trip(synthetic_root, tmp_path, capsys):
    out = tmp_path / "cache"
    argv = [
        "au-cache",
        "build",
        "--dataset",
        "synthetic",
        "--root",
        str(synthetic_root),
        "--split",
        "train",
        "--num-samples",
        str(N),
        "--detector",
        "synthetic",
        "--box-mode",
        "au",
        "--out",
        str(out),
        "--shard-size",
        "5",
        "--no-progress",
    ]
    assert main(argv) == 0
    capsys.readouterr()
    records = {r.id: r for r in read_dataset(spec_for(synthetic_root)).records}
    record_id = sorted(records)[3]
    assert main(["au-cache", "show", "--cache", str(out), "--id", record_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"id", "face_box", "landmarks", "au_prob", "au_box"} <= set(shown)
    record = records[record_id]
    assert shown["id"] == record_id
    np.testing.assert_allclose(shown["landmarks"], record.landmarks, atol=1e-3)
    np.testing.assert_allclose(shown["face_box"], record.face_box, atol=1e-3)
    assert shown["au_prob"] == pytest.approx({au: record.extra["au_intensity"][au] for au in AU_LIST}, abs=1e-6)
    expected = au_boxes(record.landmarks, AU_LIST, (112, 112), box_mode="au")
    for au in AU_LIST:
        assert shown["au_box"][au] == pytest.approx(list(expected[au]), abs=1e-3)
    cache = AUCache.open(out)
    assert len(cache) == N and sorted(cache.ids) == sorted(records) and cache.splits == ("train",)
    assert cache.meta["detector"] == {"name": "synthetic", "version": "synthetic-truth-v1", "au_list": list(AU_LIST)}
    assert cache.meta["box_mode"] == "au" and cache.meta["splits"]["train"]["shards"] == 3
    assert isinstance(cache._shards[0], np.memmap)
    cache.verify()
    assert main(["au-cache", "show", "--cache", str(out), "--id", record_id]) == 0
    assert "AU" in capsys.readouterr().out
    assert main(["au-cache", "show", "--cache", str(out), "--id", "train/images/999999.png", "--json"]) == 2
    assert "not in the AU cache" in capsys.readouterr().err
    assert main(argv[:-5] + ["--detector", "dataset_landmarks", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def face_records(tmp_path: Path) -> list[FaceRecord]:
    """Three images with dataset landmarks (one without landmarks) and one corrupt file."""
    import cv2

    records = []
    for i, aus in enumerate(({"AU12": 1.0}, {}, None)):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 256, (120, 120, 3), dtype=np.uint8))
        landmarks = None if aus is None else to_image(deform(aus), 40.0, 0.0, (60, 50))
        records.append(
            FaceRecord(id=f"faces/img{i}.png", dataset="affectnet", split="train", label=i, image_path=path, landmarks=landmarks)
        )
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    records.append(
        FaceRecord(id="faces/broken.jpg", dataset="affectnet", split="train", label=0, image_path=broken, landmarks=records[0].landmarks)
    )
    return records


def build(records, out, detector=DetectorSpec("dataset_landmarks"), **kw):
    spec = DatasetSpec(name="affectnet", root="/data/AffectNet", split="train")
    return build_split(records, detector, out, split="train", source=dataset_source(spec, detector), progress=False, **kw)


def test_corrupt_images_are_counted_and_faces_not_found_are_recorded(tmp_path):
    records = face_records(tmp_path)
    cache = build(records, tmp_path / "cache", shard_size=2)
    assert cache.skipped == {"faces/broken.jpg": cache.skipped["faces/broken.jpg"]} and "empty" in cache.skipped["faces/broken.jpg"]
    assert "faces/broken.jpg" not in cache and cache.lookup("faces/broken.jpg") is None
    with pytest.raises(KeyError, match="skipped at build time"):
        cache.get("faces/broken.jpg")
    assert not cache.get("faces/img2.png").face_found
    assert cache.verdict("faces/img2.png") == "no_face" and cache.dropped == {"faces/img2.png": "no_face"}
    assert cache.split_index("train")["dropped"] == {"faces/img2.png": "no_face"}
    smile, neutral = cache.get("faces/img0.png"), cache.get("faces/img1.png")
    assert smile.au_prob["AU12"] > 0.9 > 0.1 > neutral.au_prob["AU12"]
    assert cache.passed_quality("faces/img0.png")
    with pytest.raises(CorruptImageError):
        build(records, tmp_path / "strict", strict=True)


def test_quality_verdicts_can_be_recomputed(tmp_path):
    records = face_records(tmp_path)[:2]
    cache = build(records, tmp_path / "cache", quality=QualityConfig(min_sharpness=1e9))
    assert set(cache.dropped.values()) == {"blurry"}
    reopened = AUCache.open(tmp_path / "cache", quality=QualityConfig(min_face_size=1000))
    assert set(reopened.dropped.values()) == {"small_face"}
    assert not AUCache.open(tmp_path / "cache", quality=QualityConfig()).dropped


def test_mismatch_errors_name_the_rebuild_command(tmp_path):
    records = face_records(tmp_path)[:3]
    out = tmp_path / "cache"
    build(records, out)
    changed = [records[0], records[1], FaceRecord(**{**records[2].__dict__, "label": 5})]
    with pytest.raises(CacheMismatchError, match="does not match dataset 'affectnet' split 'train'") as err:
        AUCache.open(out, expect_fingerprint=dataset_fingerprint(changed))
    command = str(err.value).splitlines()[-1].strip()
    assert command.startswith("tagfer au-cache build --dataset affectnet --root /data/AffectNet --split train")
    assert "--detector dataset_landmarks" in command and f"--out {out}" in command and "--overwrite" in command
    assert AUCache.open(out, expect_fingerprint=dataset_fingerprint(records)) is not None
    with pytest.raises(CacheMismatchError, match="--detector builtin"):
        AUCache.open(out, expect_detector="builtin")
    with pytest.raises(CacheMismatchError, match="--box-mode au"):
        AUCache.open(out, expect_box_mode="au")
    with pytest.raises(CacheMismatchError, match="has no split 'val'"):
        AUCache.open(out, expect_fingerprint={"val": "0" * 64})
    with pytest.raises(CacheMismatchError, match="Choose another --out"):
        build(records, out, detector=DetectorSpec("dataset_landmarks", box_mode="au"))
    rebuilt = build(records, out, detector=DetectorSpec("dataset_landmarks", box_mode="au"), overwrite=True)
    assert rebuilt.meta["box_mode"] == "au"
    with pytest.raises(FileNotFoundError, match="no AU cache"):
        AUCache.open(tmp_path / "nowhere")


def test_importer_without_any_match_is_an_error(tmp_path):
    (tmp_path / "openface").mkdir()
    (tmp_path / "openface" / "unrelated.csv").write_text("face,confidence\n")
    with pytest.raises(ValueError, match="has data for none"):
        build(face_records(tmp_path)[:2], tmp_path / "cache", detector=DetectorSpec("openface", external=str(tmp_path / "openface")))


def test_ensure_au_cache_builds_once_and_checks(synthetic_root, tmp_path):
    au_cfg = AUConfig(detector="synthetic", cache_dir=str(tmp_path / "au_cache"))
    cache = SplitReader(au_cfg, progress=False).au_cache(spec_for(synthetic_root, limit=3))
    directory = default_cache_dir(spec_for(synthetic_root), au_cfg)
    assert directory.parent == tmp_path / "au_cache" and directory.name.startswith("synthetic-synthetic-")
    assert cache.directory == directory and len(cache) == N  # the whole split, not the limit
    other_root = spec_for(synthetic_root)
    other_root.root = str(tmp_path / "another-copy")
    assert default_cache_dir(other_root, au_cfg) != directory  # two copies of a dataset never share a cache
    stamp = (directory / "meta.json").stat().st_mtime_ns
    again = SplitReader(au_cfg, progress=False).au_cache(spec_for(synthetic_root))
    assert (directory / "meta.json").stat().st_mtime_ns == stamp and len(again) == N
    with pytest.raises(CacheMismatchError, match="box_mode"):
        SplitReader(AUConfig(detector="synthetic", cache_dir=str(tmp_path / "au_cache"), box_mode="au")).au_cache(spec_for(synthetic_root))
    explicit = SplitReader(au_cfg, progress=False).au_cache(spec_for(synthetic_root, au_cache=str(tmp_path / "mine")))
    assert explicit.directory == tmp_path / "mine"


def test_a_smaller_synthetic_spec_shares_the_cache_of_the_larger_split(synthetic_root, tmp_path):
    au_cfg = AUConfig(detector="synthetic", cache_dir=str(tmp_path / "au_cache"))
    full = SplitReader(au_cfg, progress=False).au_cache(spec_for(synthetic_root))
    smaller = DatasetSpec(name="synthetic", root=str(synthetic_root), split="train", num_samples=N // 2)
    again = SplitReader(au_cfg, progress=False).au_cache(smaller)
    assert again.directory == full.directory and len(again) == N
