"""Synthetic faces: AU-driven geometry, rendering consistency, the on-disk layout, the reader and the CLI."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing

import numpy as np
import pytest

from tagfer.cli import main
from tagfer.core.classes import CLASS_NAMES
from tagfer.core.config import DatasetSpec
from tagfer.core.vocabulary import AU_LIST, EXPRESSION_PRIORS
from tagfer.data.face_geometry import AU_DISPLACEMENT, MIRROR, NEUTRAL_LANDMARKS, deform, side_weights, to_image
from tagfer.data.images import load_image
from tagfer.data.reader_base import DatasetLayoutError
from tagfer.data.readers import read_dataset
from tagfer.data.synthetic import generate_synthetic_dataset, read_manifest
from tagfer.data.synthetic_faces import (
    GENERATOR_VERSION,
    KEY_AUS,
    P_DROP_PROTOTYPE_AU,
    UNILATERAL,
    render_face,
    sample_aus,
    sample_face,
)

SIZE = 64  # small images keep these tests fast


# ------------------------------------------------------------------------------------------ geometry
def test_neutral_template_is_mirror_symmetric_and_every_au_moves_landmarks():
    np.testing.assert_allclose(NEUTRAL_LANDMARKS[list(MIRROR)], NEUTRAL_LANDMARKS * [-1, 1], atol=1e-9)
    assert sorted(MIRROR) == list(range(68))
    assert set(AU_DISPLACEMENT) == set(AU_LIST)
    for au in AU_LIST:
        assert np.abs(deform({au: 1.0}) - NEUTRAL_LANDMARKS).max() > 0.01, au


def test_au_displacements_move_the_right_features():
    base = NEUTRAL_LANDMARKS
    smile = deform({"AU12": 1.0})
    assert smile[48, 1] < base[48, 1] - 0.1 and smile[54, 1] < base[54, 1] - 0.1  # corners up
    assert smile[48, 0] < base[48, 0] and smile[54, 0] > base[54, 0]  # and out
    frown = deform({"AU15": 1.0})
    assert frown[48, 1] > base[48, 1] + 0.05
    inner, outer = deform({"AU1": 1.0}), deform({"AU2": 1.0})
    assert base[21, 1] - inner[21, 1] > base[17, 1] - inner[17, 1]  # AU1 lifts the inner brow most
    assert base[17, 1] - outer[17, 1] > base[21, 1] - outer[21, 1]  # AU2 the outer brow
    knit = deform({"AU4": 1.0})
    assert knit[21, 1] > base[21, 1] and knit[22, 0] - knit[21, 0] < base[22, 0] - base[21, 0]  # lowered, drawn together

    def opening(points):
        return points[41, 1] - points[37, 1]

    assert opening(deform({"AU5": 1.0})) > opening(base) > opening(deform({"AU7": 1.0}))
    assert opening(deform({"AU6": 1.0})) < opening(base)
    jaw = deform({"AU26": 1.0})
    assert jaw[8, 1] > base[8, 1] + 0.15 and jaw[66, 1] - jaw[62, 1] > 0.15  # chin down, mouth open
    assert deform({"AU10": 1.0})[51, 1] < base[51, 1] - 0.05 and deform({"AU9": 1.0})[31, 1] < base[31, 1]
    assert deform({"AU20": 1.0})[54, 0] - deform({"AU20": 1.0})[48, 0] > base[54, 0] - base[48, 0] + 0.15


def test_unilateral_aus_move_one_side_and_lips_never_fold():
    right = deform({"AU12": 1.0}, {"AU12": "right"})
    assert right[48, 1] < NEUTRAL_LANDMARKS[48, 1] - 0.1  # the subject's right corner (image left) moves
    np.testing.assert_allclose(right[54], NEUTRAL_LANDMARKS[54])
    assert side_weights("left")[54] == 1 and side_weights("left")[48] == 0 and side_weights("left")[51] == 0.5
    with pytest.raises(ValueError, match="side='up'"):
        side_weights("up")
    rng = np.random.default_rng(0)
    for _ in range(50):
        points = deform({au: float(rng.random()) for au in AU_LIST})
        assert np.all(points[[65, 66, 67], 1] >= points[[63, 62, 61], 1])


def test_pose_transform_scales_and_rotates():
    points = to_image(NEUTRAL_LANDMARKS, scale=20.0, angle_deg=10.0, centre=(50.0, 60.0))
    eye_line = points[45] - points[36]
    assert np.degrees(np.arctan2(eye_line[1], eye_line[0])) == pytest.approx(10.0)
    assert np.linalg.norm(eye_line) == pytest.approx(20.0 * 1.24)


# ------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("label", CLASS_NAMES)
def test_sampled_aus_follow_the_prototypes(label):
    rng = np.random.default_rng(1)
    for _ in range(25):
        intensity, sides = sample_aus(rng, label)
        assert set(intensity) == set(AU_LIST)
        assert all(0.0 <= v <= 1.0 for v in intensity.values())
        assert all(intensity[au] >= 0.5 for au in KEY_AUS[label])
        assert set(sides) == {au for au in UNILATERAL.get(label, ()) if intensity[au] > 0}
        if label == "neutral":
            assert max(intensity.values()) <= 0.2
    samples = [sample_aus(rng, label)[0] for _ in range(400)]
    for au in set(EXPRESSION_PRIORS[label]) - set(KEY_AUS[label]):  # sometimes missing
        assert np.mean([s[au] > 0 for s in samples]) == pytest.approx(1 - P_DROP_PROTOTYPE_AU, abs=0.06)


def test_sampled_faces_keep_every_landmark_inside_the_image():
    rng = np.random.default_rng(2)
    for index in range(40):
        spec = sample_face(rng, CLASS_NAMES[index % 8], SIZE)
        face = render_face(spec)
        assert face.image.shape == (SIZE, SIZE, 3) and face.image.dtype == np.uint8
        assert face.landmarks.shape == (68, 2)
        assert face.landmarks.min() >= 0.04 * SIZE - 1e-6 and face.landmarks.max() <= 0.96 * SIZE + 1e-6
        x1, y1, x2, y2 = face.face_box
        assert x1 <= face.landmarks[:, 0].min() and face.landmarks[:, 0].max() <= x2
        assert y1 <= face.landmarks[:17, 1].min() and face.landmarks[:, 1].max() <= y2 + 1e-3


def _plain_face(label: str, size: int = 112):
    """A face with flat lighting, no noise or blur and a mid skin tone, for pixel checks."""
    spec = sample_face(np.random.default_rng(7), label, size)
    spec.appearance = dataclasses.replace(
        spec.appearance, skin=(214, 168, 130), light_strength=0.0, brightness=1.0, noise=0.0, blur=0.0, hair_style="bald"
    )
    return spec, render_face(spec)


def _pixel(image: np.ndarray, point) -> np.ndarray:
    x, y = np.round(point).astype(int)
    return image[y, x].astype(float)


def test_landmarks_sit_on_the_drawn_features():
    spec, face = _plain_face("surprise")
    image, lm = face.image, face.landmarks
    skin = _pixel(image, lm[28])  # nose bridge
    assert np.abs(skin - (214, 168, 130)).max() < 30
    for eye in (lm[36:42], lm[42:48]):
        assert _pixel(image, eye[[1, 2, 4, 5]].mean(axis=0)).mean() < skin.mean() - 60  # iris / pupil
    assert spec.au_intensity["AU26"] >= 0.5
    assert _pixel(image, (lm[62] + lm[66]) / 2).mean() < skin.mean() - 80  # the open mouth is dark
    lip = _pixel(image, (lm[51] + lm[62]) / 2)
    assert lip[0] - lip[1] > skin[0] - skin[1] + 20  # the upper lip is redder than the skin
    brow = _pixel(image, lm[19])
    assert brow.mean() < skin.mean() - 40


def test_rendering_is_deterministic_and_pose_moves_landmarks():
    spec_a = sample_face(np.random.default_rng(11), "happiness", SIZE)
    spec_b = sample_face(np.random.default_rng(11), "happiness", SIZE)
    a, b = render_face(spec_a), render_face(spec_b)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    spec_b.angle += 5.0
    turned = render_face(spec_b)
    line_a, line_b = a.landmarks[45] - a.landmarks[36], turned.landmarks[45] - turned.landmarks[36]
    angle = np.degrees(np.arctan2(line_b[1], line_b[0]) - np.arctan2(line_a[1], line_a[0]))
    assert angle == pytest.approx(5.0, abs=1e-3)
    assert not np.array_equal(a.image, turned.image)


def test_aligned_pose_keeps_faces_near_the_canonical_place_and_differs_from_random(tmp_path):
    aligned = generate_synthetic_dataset(tmp_path / "aligned", {"train": 24}, seed=1, image_size=SIZE, pose="aligned")
    assert aligned["pose"] == "aligned"
    rows = [json.loads(line) for line in (tmp_path / "aligned" / "train" / "annotations.jsonl").read_text().splitlines()]
    centres = np.array([row["pose"]["centre"] for row in rows]) / SIZE
    angles = np.array([row["pose"]["angle"] for row in rows])
    assert (np.abs(centres - [0.5, 0.47]) <= 0.04 + 1e-6).all() and (np.abs(angles) <= 4.0).all()
    with pytest.raises(DatasetLayoutError, match="pose"):  # one root holds one pose
        generate_synthetic_dataset(tmp_path / "aligned", {"train": 24}, seed=1, image_size=SIZE, pose="random")
    with pytest.raises(ValueError, match="pose"):
        generate_synthetic_dataset(tmp_path / "other", {"train": 2}, pose="frontal")


# --------------------------------------------------------------------------------- layout and reader
def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_and_splits_differ(tmp_path):
    counts = {"train": 16, "val": 16, "test": 16}
    one = generate_synthetic_dataset(tmp_path / "a", counts, seed=3, image_size=SIZE)
    generate_synthetic_dataset(tmp_path / "b", counts, seed=3, image_size=SIZE)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert one == {
        "generator": "tagfer.data.synthetic_faces",
        "generator_version": GENERATOR_VERSION,
        "seed": 3,
        "image_size": SIZE,
        "pose": "random",
        "canvas": 1.0,
        "classes": list(CLASS_NAMES),
        "splits": counts,
    }
    train = (tmp_path / "a" / "train" / "images" / "000000.png").read_bytes()
    assert train != (tmp_path / "a" / "val" / "images" / "000000.png").read_bytes()
    generate_synthetic_dataset(tmp_path / "c", {"train": 4}, seed=4, image_size=SIZE)
    assert (tmp_path / "c" / "train" / "images" / "000000.png").read_bytes() != train
    lines = (tmp_path / "a" / "train" / "annotations.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["id"] == "train/images/000000.png" and first["label"] == "neutral"
    assert len(first["landmarks"]) == 68 and len(first["face_box"]) == 4 and set(first["au_intensity"]) == set(AU_LIST)
    assert [json.loads(line)["label"] for line in lines[:8]] == list(CLASS_NAMES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_existing_roots_are_reused_extended_or_refused(tmp_path):
    root = tmp_path / "syn"
    generate_synthetic_dataset(root, {"val": 8}, seed=0, image_size=SIZE)
    image = root / "val" / "images" / "000000.png"
    stamp = image.stat().st_mtime_ns
    assert generate_synthetic_dataset(root, {"val": 4}, seed=0, image_size=SIZE)["splits"] == {"val": 8}
    assert image.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert generate_synthetic_dataset(root, {"test": 2}, seed=0, image_size=SIZE)["splits"] == {"val": 8, "test": 2}
    assert read_manifest(root)["splits"] == {"val": 8, "test": 2}
    with pytest.raises(DatasetLayoutError, match="seed is 0, requested 1.*delete it or choose another root"):
        generate_synthetic_dataset(root, {"val": 8}, seed=1, image_size=SIZE)
    with pytest.raises(DatasetLayoutError, match="split 'val' holds 8 images, requested 9"):
        generate_synthetic_dataset(root, {"val": 9}, seed=0, image_size=SIZE)
    other = tmp_path / "other"
    other.mkdir()
    (other / "file.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match="is not a synthetic dataset.*delete it or choose another root"):
        generate_synthetic_dataset(other, {"val": 1}, seed=0, image_size=SIZE)
    larger = generate_synthetic_dataset(tmp_path / "larger", {"val": 16}, seed=0, image_size=SIZE)
    assert larger["splits"]["val"] == 16
    small_lines = (root / "val" / "annotations.jsonl").read_text().splitlines()
    large_lines = (tmp_path / "larger" / "val" / "annotations.jsonl").read_text().splitlines()
    assert large_lines[:8] == small_lines  # the first n images of a larger split are the n-image split


def _generate(args):
    root, split = args
    return generate_synthetic_dataset(root, {split: 4}, seed=0, image_size=32)["splits"]


def test_concurrent_generation_reuses_the_winner(tmp_path):
    root = str(tmp_path / "shared")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_generate, [(root, "train")] * 2) == [{"train": 4}] * 2  # a new root
        assert pool.map(_generate, [(root, "val")] * 2) == [{"train": 4, "val": 4}] * 2  # a split added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]


def test_reader_generates_on_first_use(tmp_path):
    spec = DatasetSpec(name="synthetic", root=str(tmp_path / "syn"), split="train", num_samples=16, image_size=SIZE, seed=5)
    result = read_dataset(spec)
    assert len(result.records) == 16 and result.notes["manifest"]["splits"] == {"train": 16}
    assert np.bincount([r.label for r in result.records], minlength=8).tolist() == [2] * 8
    record = result.records[3]
    assert record.id == "train/images/000003.png" and record.label_name == "surprise" and record.dataset == "synthetic"
    assert load_image(record).shape == (SIZE, SIZE, 3)
    assert record.landmarks.shape == (68, 2) and record.landmarks.dtype == np.float32
    intensity = record.extra["au_intensity"]
    assert set(intensity) == set(AU_LIST) and all(intensity[au] >= 0.5 for au in KEY_AUS["surprise"])
    fewer = read_dataset(dataclasses.replace(spec, num_samples=8, classes=["surprise", "anger"]))
    assert [r.id for r in fewer.records] == ["train/images/000003.png", "train/images/000006.png"]
    (tmp_path / "syn" / "train" / "annotations.jsonl").write_text('{"id": "train/images/000000.png"}\n')
    with pytest.raises(DatasetLayoutError, match="annotations.jsonl line 1: bad annotation"):
        read_dataset(spec)


def test_synthesize_and_summarize_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synthesize", "--out", str(out), "--seed", "1", "--train", "8", "--val", "8", "--test", "0", "--image-size", str(SIZE)]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["splits"] == {"train": 8, "val": 8} and printed["seed"] == 1 and printed["root"] == str(out)
    assert main(["data", "summarize", "--dataset", "synthetic", "--root", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    per_split = {"total": 8, "classes": {c: 1 for c in CLASS_NAMES}}
    assert summary == {"dataset": "synthetic", "splits": {"train": per_split, "val": per_split}, "skipped": {}}
    assert main([*args[:5], "2"]) == 2  # another seed into the same root
    assert "delete it or choose another root" in capsys.readouterr().err
