"""Decoding images: the decode boundary (any decoder failure is a ``CorruptImageError`` naming the file),
bounded decode of large images (JPEG reduced in the decoder), EXIF and 16-bit handling, and detector
evidence mapped back from a reduced decode to original pixels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from dataset_trees import bomb_png
from tagfer.au.detectors.base import AUDetector
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.regions import au_boxes, scale_box
from tagfer.core.vocabulary import AU_LIST
from tagfer.data.images import CorruptImageError, DecodedImage, decode_image, image_size, load_image, working_size
from tagfer.data.synthetic_faces import make_face


def record(path: Path) -> FaceRecord:
    return FaceRecord(path.name, "x", "train", 0, image_path=path)


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1).astype(np.uint8)


# ---------------------------------------------------------------------------------- working size
@pytest.mark.parametrize(
    "size,max_pixels", [((12000, 9000), 4_194_304), ((20000, 20000), 4_194_304), ((5000, 7), 1000), ((640, 480), 100), ((3, 1), 2)]
)
def test_working_size_fits_the_ceiling_keeps_the_aspect_and_wastes_little(size, max_pixels):
    width, height = working_size(size, max_pixels)
    assert width * height <= max_pixels
    assert (width + 1) * (height + 1) > max_pixels or width == 1 or height == 1  # no room for one more row and column
    assert abs(width * size[1] - height * size[0]) <= max(size)  # the aspect ratio, to a pixel
    assert working_size(size, None) == size and working_size(size, size[0] * size[1]) == size


def test_working_size_of_a_108_megapixel_photo():
    # f = sqrt(108e6 / 2048²) = 5.0744...: floor(12000 / f), floor(9000 / f)
    assert working_size((12000, 9000), 2048 * 2048) == (2364, 1773)


# ------------------------------------------------------------------------------------ bounded decode
def test_a_large_jpeg_is_reduced_in_the_decoder_and_reports_its_original_size(tmp_path, monkeypatch):
    path = tmp_path / "big.jpg"
    Image.fromarray(gradient(1600, 1200)).save(path, quality=95)
    drafts = []
    original_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(
        JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: drafts.append(size) or original_draft(self, mode, size)
    )
    decoded = decode_image(record(path), max_pixels=120_000)
    assert drafts == [(400, 300)]
    assert decoded.size == (400, 300) and decoded.original_size == (1600, 1200) and decoded.scale == (4.0, 4.0)
    full = Image.fromarray(load_image(record(path))).resize((400, 300), Image.Resampling.BOX)
    assert np.abs(decoded.pixels.astype(int) - np.asarray(full, dtype=int)).mean() < 2.0


def test_a_large_png_is_decoded_whole_then_box_filtered(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(gradient(900, 300)).save(path)
    decoded = decode_image(record(path), max_pixels=30_000)
    expected = Image.fromarray(gradient(900, 300)).resize(working_size((900, 300), 30_000), Image.Resampling.BOX)
    np.testing.assert_array_equal(decoded.pixels, np.asarray(expected))
    assert decoded.original_size == (900, 300) and decoded.scale == (900 / 300, 300 / 100)


def test_exif_orientation_gives_the_upright_original_size(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 800 × 400, displayed turned 90°
    Image.fromarray(gradient(800, 400)).save(path, exif=exif)
    decoded = decode_image(record(path), max_pixels=20_000)
    assert decoded.original_size == (400, 800) == image_size(record(path))
    assert decoded.size == (100, 200) and decoded.pixels.shape == (200, 100, 3)


def test_16_bit_grey_keeps_its_contrast(tmp_path):
    values = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 21
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    pixels = load_image(record(path))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], (values >> 8).astype(np.uint8))


def test_pixel_records_are_never_reduced_and_a_bad_ceiling_is_a_value_error(tmp_path):
    grey = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    decoded = decode_image(FaceRecord("g", "ferplus", "train", 0, pixels=grey), max_pixels=100)
    assert decoded.size == decoded.original_size == (48, 48)
    Image.fromarray(grey).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="max_pixels must be ≥ 1"):
        decode_image(record(tmp_path / "g.png"), max_pixels=0)


# ------------------------------------------------------------------------------------ decode boundary
def test_any_decoder_failure_names_the_file_and_its_type(tmp_path, monkeypatch):
    from PIL import ImageFile

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(20_000))
    for call in (load_image, image_size):
        with pytest.raises(CorruptImageError, match=rf"{bomb}: cannot .*\(DecompressionBombError: Image size \(400000000 pixels\)"):
            call(record(bomb))
    good = tmp_path / "good.png"
    Image.fromarray(gradient(8, 8)).save(good)

    def broken_decoder(self):
        raise ValueError("decoder says no")

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken_decoder)
    with pytest.raises(CorruptImageError, match=rf"{good}: cannot decode image \(ValueError: decoder says no\)"):
        load_image(record(good))
    with pytest.raises(FileNotFoundError):
        load_image(record(tmp_path / "gone.png"))


# ----------------------------------------------------------------------------- evidence to original
class Scripted(AUDetector):
    """Finds the given face: landmarks in the pixels of the image it is handed (``reads_pixels``) or
    always in original pixels (a detector that imports them)."""

    name = "scripted"
    au_list = ("AU12",)

    def __init__(self, landmarks: np.ndarray, original_width: int, reads_pixels: bool):
        super().__init__("region")
        self.landmarks, self.original_width, self.reads_pixels = landmarks, original_width, reads_pixels

    def detect(self, image, record):
        ratio = image.shape[1] / self.original_width if self.reads_pixels else 1.0
        points = self.landmarks * ratio
        box = (points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max())
        return self.evidence(points, (image.shape[1], image.shape[0]), {"AU12": 0.7}, box, 0.9)


@pytest.mark.parametrize("reads_pixels", [True, False])
def test_evidence_of_a_reduced_decode_is_in_original_pixels(reads_pixels):
    face = make_face(np.random.default_rng(0), "happiness", 400)
    landmarks = face.landmarks.astype(np.float64)
    original = (400, 400)
    reduced = DecodedImage(np.zeros((100, 100, 3), np.uint8), original)
    evidence = Scripted(landmarks, 400, reads_pixels).detect_decoded(reduced, None)
    np.testing.assert_allclose(evidence.landmarks, landmarks, atol=1e-3)
    expected = au_boxes(landmarks, AU_LIST, original, "region")
    for au in AU_LIST:
        np.testing.assert_allclose(evidence.au_box[au], expected[au], atol=1e-3)
    np.testing.assert_allclose(evidence.face_box, (*landmarks.min(0), *landmarks.max(0)), atol=1e-3)
    assert evidence.au_prob == {"AU12": 0.7} and evidence.face_score == pytest.approx(0.9)
    unreduced = DecodedImage(np.zeros((400, 400, 3), np.uint8), original)
    assert Scripted(landmarks, 400, reads_pixels).detect_decoded(unreduced, None).au_box == expected


def test_no_face_in_a_reduced_decode_stays_no_face():
    class Blind(Scripted):
        def detect(self, image, record):
            return AUEvidence(face_found=False)

    evidence = Blind(np.zeros((68, 2)), 400, True).detect_decoded(DecodedImage(np.zeros((10, 10, 3), np.uint8), (400, 400)), None)
    assert not evidence.face_found and evidence.landmarks is None


def test_scale_box():
    assert scale_box((1, 2, 3, 4), 2.0, 0.5) == (2.0, 1.0, 6.0, 2.0)
    assert math.isclose(scale_box(scale_box((10, 20, 30, 40), 4.0, 3.0), 1 / 4.0, 1 / 3.0)[3], 40.0)


def test_the_detection_ceiling_is_a_positive_int_or_null(configs_dir):
    from tagfer.core.config import ConfigError, load_config

    assert load_config(configs_dir / "eval.yaml").au.detect_max_pixels == 2048 * 2048
    assert load_config(configs_dir / "eval.yaml", ["au.detect_max_pixels=null"]).au.detect_max_pixels is None
    with pytest.raises(ConfigError, match=r"au\.detect_max_pixels=0; expected a positive int or null"):
        load_config(configs_dir / "eval.yaml", ["au.detect_max_pixels=0"])


def test_reduce_pixels_bounds_the_detection_copy_and_keeps_the_original_size():
    from tagfer.data.images import reduce_pixels

    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    reduced = reduce_pixels(pixels, 30_000)
    assert reduced.original_size == (400, 300)
    assert reduced.size[0] * reduced.size[1] <= 30_000
    assert reduced.scale == pytest.approx((400 / reduced.size[0], 300 / reduced.size[1]))
    assert reduce_pixels(pixels, None).pixels is pixels
