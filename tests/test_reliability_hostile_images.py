"""Hostile image files (issue 16): a decompression-bomb header, truncated chunks, wrong extensions,
CMYK, 16-bit, palette with transparency, animated GIF, zero-byte, 1×1 and huge images, all generated
here next to a real face photo (``tests/fixtures/astronaut_face.jpg``). Any decoder failure is that
file's problem — a counted skip with its reason — and huge images are detected at a bounded size with
landmarks in original pixels.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from dataset_trees import bomb_png, png_chunk
from tagfer.au.cache import AUCache
from tagfer.cli import main
from tagfer.core.config import AUConfig, DataConfig, DatasetSpec
from tagfer.pipeline.datamodule import FERDataModule

pytest.importorskip("dlib")

FACE = Path(__file__).parent / "fixtures" / "astronaut_face.jpg"
HUGE_SIDE = 4000  # 16 MP; built with --detect-max-pixels 250000 (500 × 500): the JPEG decoder reduces 8×
MAX_PIXELS = 250_000


def hostile_folder(root: Path) -> Path:
    """``<root>/test/happy/``: the real photo and every hostile variant (see the module docstring)."""
    folder = root / "test" / "happy"
    folder.mkdir(parents=True)
    face = Image.open(FACE).convert("RGB")
    face.save(folder / "photo.jpg", quality=95)
    (folder / "bomb.png").write_bytes(bomb_png())
    face.save(folder / "full.png")
    png = (folder / "full.png").read_bytes()
    (folder / "truncated_chunk.png").write_bytes(png[: len(png) // 2])
    (folder / "no_image_data.png").write_bytes(png[:33] + png_chunk(b"IEND", b""))  # IHDR, then no IDAT
    (folder / "full.png").rename(folder / "png_named.jpg")  # wrong extension
    (folder / "text.jpg").write_text("this is not an image\n")
    face.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257).save(folder / "deep16.png")
    palette = face.quantize(64)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(folder / "animated_gif.png", format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (128, 128, 128)).save(folder / "one_pixel.png")
    face.resize((HUGE_SIDE, HUGE_SIDE), Image.Resampling.BICUBIC).save(folder / "huge.jpg", quality=90)
    face.resize((1200, 1200), Image.Resampling.BICUBIC).save(folder / "huge.png", compress_level=1)
    return root


CACHED_WITH_FACE = ("photo.jpg", "png_named.jpg", "cmyk.jpg", "deep16.png", "palette.png", "animated_gif.png", "huge.jpg", "huge.png")
SKIPPED = {
    "bomb.png": "DecompressionBombError: Image size \\(400000000 pixels\\) exceeds limit",
    "truncated_chunk.png": "cannot decode image \\(OSError: .*truncated",
    "no_image_data.png": "cannot decode image",
    "text.jpg": "cannot decode image \\(UnidentifiedImageError",
    "empty.jpg": "empty \\(zero-byte\\) image file",
}


def build(root: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "au-cache",
            "build",
            "--dataset",
            "imagefolder",
            "--root",
            str(root),
            "--split",
            "test",
            "--detector",
            "builtin",
            "--out",
            str(out),
            "--detect-max-pixels",
            str(MAX_PIXELS),
            "--no-progress",
            *extra,
        ]
    )


def test_a_folder_of_hostile_files_builds_each_file_cached_or_skipped_with_its_reason(tmp_path, capsys):
    root = hostile_folder(tmp_path / "faces")
    out = tmp_path / "cache"
    assert build(root, out) == 0
    printed = capsys.readouterr().out
    assert "test: the reader skipped {'not_an_image_file': 1}" in printed  # animated.gif: not a reader suffix
    cache = AUCache.open(out)
    index = json.loads((out / "test" / "index.json").read_text())
    names = {p.name for p in (root / "test" / "happy").iterdir()} - {"animated.gif"}
    cached = {rid.rsplit("/", 1)[1] for rid in cache.ids}
    skipped = {rid.rsplit("/", 1)[1]: reason for rid, reason in index["skipped"].items()}
    assert cached | set(skipped) == names and not cached & set(skipped)
    assert set(skipped) == set(SKIPPED)
    for name, pattern in SKIPPED.items():
        assert str(root / "test" / "happy" / name) in skipped[name]
        assert re.search(pattern, skipped[name]), (name, skipped[name])
    for name in CACHED_WITH_FACE:
        assert cache.lookup(f"test/happy/{name}").face_found, name
    assert index["dropped"] == {"test/happy/one_pixel.png": "no_face"}
    assert cache.meta["splits"]["test"]["skipped"] == len(SKIPPED)

    # The huge image was detected at 500 × 500: its landmarks are in its own 4000 × 4000 pixels and,
    # scaled down, land on the photo's own landmarks.
    photo = cache.lookup("test/happy/photo.jpg")
    huge = cache.lookup("test/happy/huge.jpg")
    ratio = HUGE_SIDE / Image.open(FACE).size[0]
    assert np.abs(huge.landmarks / ratio - photo.landmarks).mean() < 2.0
    assert np.max(huge.landmarks) > 0.5 * HUGE_SIDE
    for au, box in huge.au_box.items():
        assert max(box) <= HUGE_SIDE and np.allclose(np.asarray(box) / ratio, photo.au_box[au], atol=6.0), au


def test_strict_names_the_bomb_and_training_counts_it_as_a_skip(tmp_path, capsys):
    folder = tmp_path / "faces" / "test" / "happy"
    folder.mkdir(parents=True)
    Image.open(FACE).save(folder / "photo.jpg")
    (folder / "bomb.png").write_bytes(bomb_png())
    assert build(tmp_path / "faces", tmp_path / "strict", "--strict") == 2
    assert re.search(r"^tagfer au-cache: .*bomb\.png: cannot decode image \(DecompressionBombError", capsys.readouterr().err, re.M)
    data = DataConfig(train=[], val=[DatasetSpec(name="imagefolder", root=str(tmp_path / "faces"), split="test")], test=[])
    au = AUConfig(detector="builtin", cache_dir=str(tmp_path / "au"))
    dm = FERDataModule(OmegaConf.structured(data), OmegaConf.structured(au), seed=0)
    dm.prepare_data()
    dm.setup("validate")
    assert dm.skipped["val"] == {"not in AU cache (corrupt image)": 1}
    assert [item.record.id for item in dm.datasets["val"].items] == ["test/happy/photo.jpg"]


def test_a_bug_in_the_detector_is_not_taken_for_a_bad_image(tmp_path, monkeypatch):
    """Only decoding is guarded: an exception from the detector stops the build."""
    from tagfer.au.build import build_split
    from tagfer.au.detectors import DetectorSpec
    from tagfer.au.detectors.landmarks import BuiltinDetector
    from tagfer.core.records import FaceRecord

    def broken(self, image, record):
        raise RuntimeError("detector bug")

    monkeypatch.setattr(BuiltinDetector, "detect", broken)
    photo = FaceRecord("photo.jpg", "imagefolder", "test", 3, image_path=FACE)
    with pytest.raises(RuntimeError, match="detector bug"):
        build_split([photo], DetectorSpec("builtin"), tmp_path / "cache", split="test", source={"dataset": "imagefolder"}, progress=False)
