"""The face crop: window geometry against hand-computed windows, which sources ``auto`` crops, served samples
of a small face in a large photo (image = face region ± margin, every box back to the photo within a pixel),
aligned sets served pixel for pixel as before, traces built for the crop, and predict drawing on the face."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_trees import affectnet_csv_tree, affectnet_npy_tree, ferplus_csv_tree, imagefolder_tree, rafdb_tree
from tagfer.core.config import ConfigError, load_config
from tagfer.core.crop import box_from_crop, box_to_crop, crop_image, crop_window, points_from_crop, points_to_crop, window_size
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.data.face_crop import FaceCrop, apply_face_crop
from tagfer.data.readers import read_split
from tagfer.pipeline.datamodule import FERDataModule

# ------------------------------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    "face_box, size, margin, square, expected",
    [
        # 20×40 box centred (50, 70): square side 40, ×1.5 → 60 → (20, 40, 80, 100)
        ((40, 50, 60, 90), (200, 200), 0.25, True, (20, 40, 80, 100)),
        # not square: 20×40 → 30×60 around (50, 70)
        ((40, 50, 60, 90), (200, 200), 0.25, False, (35, 40, 65, 100)),
        # at the left/top edge: 40×40 centred (10, 20) is shifted inside, keeping its size
        ((0, 10, 20, 30), (100, 100), 0.5, True, (0, 0, 40, 40)),
        # at the right/bottom edge: 10×15 → side 15 → 30, centred (95, 92.5) → shifted to end at 100
        ((90, 85, 100, 100), (100, 100), 0.5, True, (70, 70, 100, 100)),
        # longer than the image on both axes: the whole image
        ((0, 0, 100, 50), (80, 60), 0.2, True, (0, 0, 80, 60)),
        # fractional: 10.5 side around (15.25, 15.25) → [10, 20.5] → floor/ceil outward
        ((10.0, 10.0, 20.5, 20.5), (50, 50), 0.0, True, (10, 10, 21, 21)),
        # a degenerate box still gives one pixel
        ((5, 5, 5, 5), (10, 10), 0.3, True, (5, 5, 6, 6)),
    ],
)
def test_crop_window_matches_hand_computed_windows(face_box, size, margin, square, expected):
    assert crop_window(face_box, size, margin=margin, square=square) == expected


def test_crop_window_rejects_bad_input():
    with pytest.raises(ValueError, match="margin"):
        crop_window((0, 0, 10, 10), (20, 20), margin=-0.1, square=True)
    with pytest.raises(ValueError, match="x2 < x1"):
        crop_window((10, 0, 0, 10), (20, 20), margin=0.1, square=True)


def test_points_and_boxes_round_trip_through_the_crop():
    rng = np.random.default_rng(0)
    window = (37, 52, 137, 152)
    points = rng.uniform(0, 300, (68, 2)).astype(np.float32)
    assert np.allclose(points_from_crop(points_to_crop(points, window), window), points)
    assert np.allclose(points_to_crop(points, window), points - [37, 52])
    for _ in range(50):
        x1, y1 = rng.uniform(60, 120, 2)
        box = (x1, y1, x1 + rng.uniform(1, 15), y1 + rng.uniform(1, 15))  # inside the window
        assert box_from_crop(box_to_crop(box, window), window) == pytest.approx(box, abs=1e-4)
    assert box_to_crop((0, 0, 50, 60), window) == (0.0, 0.0, 13.0, 8.0)  # clipped at the crop's corner
    assert box_to_crop((0, 0, 30, 30), window) is None  # entirely outside
    image = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(200, 300, 3)
    assert np.array_equal(crop_image(image, window), image[52:152, 37:137]) and window_size(window) == (100, 100)


# ------------------------------------------------------------------------------------------- setting


def _evidence(face_box=(100.0, 100.0, 140.0, 150.0)) -> AUEvidence:
    return AUEvidence(
        face_found=face_box is not None,
        face_box=face_box,
        landmarks=None if face_box is None else np.array([[110.0, 120.0]] * 68, np.float32),
        au_prob={"AU12": 0.9},
        au_box={} if face_box is None else {"AU12": (105.0, 130.0, 135.0, 145.0), "AU1": (0.0, 0.0, 5.0, 5.0)},
    )


def test_auto_crops_whole_photos_only_and_prefers_the_dataset_box():
    record = FaceRecord(id="a.jpg", dataset="x", split="test", label=0, face_box=(20.0, 20.0, 60.0, 60.0))
    evidence, size = _evidence(), (400, 300)
    auto = FaceCrop(margin=0.0, square=True)
    assert auto.for_images(whole_photos=False).window(record, evidence, size) is None
    assert auto.for_images(whole_photos=True).window(record, evidence, size) == (20, 20, 60, 60)  # dataset box
    no_box = FaceRecord(id="b.jpg", dataset="x", split="test", label=0)
    assert auto.for_images(whole_photos=True).window(no_box, evidence, size) == (95, 100, 145, 150)  # detector box
    assert FaceCrop(source="detector", margin=0.0).window(record, evidence, size) == (95, 100, 145, 150)
    assert FaceCrop(source="dataset", margin=0.0).window(record, evidence, size) == (20, 20, 60, 60)  # even for crops
    assert FaceCrop(source="none").window(record, evidence, size) is None
    # no dataset box and no face found: the whole image, as before the crop existed
    assert auto.for_images(whole_photos=True).window(no_box, _evidence(None), size) is None
    with pytest.raises(ValueError, match="resolved"):
        auto.window(record, evidence, size)
    with pytest.raises(ValueError, match="source"):
        FaceCrop(source="face")


def test_cropped_evidence_is_in_crop_pixels_and_drops_boxes_outside():
    image = np.zeros((300, 400, 3), np.uint8)
    served, evidence, window = apply_face_crop(FaceCrop(source="detector", margin=0.0), None, image, _evidence())
    assert window == (95, 100, 145, 150) and served.shape == (50, 50, 3)
    assert evidence.face_box == (5.0, 0.0, 45.0, 50.0)
    assert evidence.au_box == {"AU12": (10.0, 30.0, 40.0, 45.0)}  # AU1's box lies outside the crop
    assert np.allclose(evidence.landmarks, [[15.0, 20.0]] * 68) and evidence.au_prob == {"AU12": 0.9}


def test_face_crop_config_is_checked(configs_dir):
    cfg = load_config(configs_dir / "sft.yaml", ["data.face_crop.source=detector", "data.face_crop.margin=0.3"])
    assert FaceCrop.from_config(cfg.data.face_crop) == FaceCrop(source="detector", margin=0.3, square=True)
    with pytest.raises(ConfigError, match="data.face_crop.source"):
        load_config(configs_dir / "sft.yaml", ["data.face_crop.source=always"])
    with pytest.raises(ConfigError, match="margin"):
        load_config(configs_dir / "sft.yaml", ["data.face_crop.margin=-1.0"])


# -------------------------------------------------------------------------------- readers' framing


def test_each_reader_says_whether_its_images_are_whole_photos(tmp_path):
    rafdb = rafdb_tree(tmp_path / "rafdb")
    assert read_split("rafdb", rafdb, "train", image_variant="original").whole_photos
    assert not read_split("rafdb", rafdb, "train", image_variant="aligned").whole_photos
    assert not read_split("ferplus", ferplus_csv_tree(tmp_path / "ferplus"), "train").whole_photos
    assert read_split("affectnet", affectnet_csv_tree(tmp_path / "affectnet17"), "train").whole_photos
    assert not read_split("affectnet", affectnet_npy_tree(tmp_path / "affectnet"), "train").whole_photos
    assert read_split("imagefolder", imagefolder_tree(tmp_path / "folder"), "train").whole_photos
    synthetic = tmp_path / "synthetic"
    assert not read_split("synthetic", synthetic / "a", "train", num_samples=1, image_size=32, pose="aligned").whole_photos
    assert read_split("synthetic", synthetic / "r", "train", num_samples=1, image_size=32, pose="random").whole_photos


# --------------------------------------------------------------------------------- served samples


def _module(tmp_path, configs_dir, spec: str, *extra) -> FERDataModule:
    cfg = load_config(
        configs_dir / "sft.yaml",
        [f"data.test=[{spec}]", "data.train=[]", "data.val=[]", f"au.cache_dir={tmp_path / 'au_cache'}", *extra],
    )
    dm = FERDataModule(cfg.data, cfg.au, seed=0)
    dm.prepare_data()
    dm.setup("test")
    return dm


def _photo_with_a_small_face(tmp_path) -> tuple[Path, tuple[int, int, int, int]]:
    """A 160-px synthetic face pasted at (300, 170) into a 640×480 textured background: (image folder root, paste box)."""
    from tagfer.data.synthetic_faces import make_face

    face = make_face(np.random.default_rng(3), "happiness", 160).image
    rng = np.random.default_rng(7)
    background = np.kron(rng.integers(40, 200, (24, 32, 3)), np.ones((20, 20, 1))).astype(np.uint8)
    background[170:330, 300:460] = face
    root = tmp_path / "photos"
    (root / "test" / "happy").mkdir(parents=True)
    Image.fromarray(background).save(root / "test" / "happy" / "photo.png")
    return root, (300, 170, 460, 330)


def _inside(box, region, tolerance=1.0) -> bool:
    return (
        box[0] >= region[0] - tolerance
        and box[1] >= region[1] - tolerance
        and box[2] <= region[2] + tolerance
        and box[3] <= region[3] + tolerance
    )


def test_a_small_face_in_a_large_photo_is_served_as_its_crop_and_maps_back(tmp_path, configs_dir):
    """imagefolder (whole photos) + dlib: the served image is the detector's face ± margin, and every
    served box and landmark maps back onto the cache's original-pixel evidence within a pixel."""
    root, paste = _photo_with_a_small_face(tmp_path)
    dm = _module(
        tmp_path, configs_dir, "{name: imagefolder, root: %s, split: test}" % root, "au.detector=builtin", "au.quality.enabled=false"
    )
    dataset = dm.datasets["test"]
    sample, original = dataset[0], dataset.items[0].evidence
    assert original.face_found and _inside(original.face_box, paste)
    window = sample["crop_box"]
    x1, y1, x2, y2 = original.face_box
    side = max(x2 - x1, y2 - y1) * 1.4  # margin 0.2 on both ends, square
    assert window[2] - window[0] == pytest.approx(side, abs=2) and window[3] - window[1] == pytest.approx(side, abs=2)
    assert _inside(original.face_box, window, 0) and _inside(window, paste, 0.25 * side)  # the face (± margin), not the scene
    photo = np.asarray(Image.open(root / "test" / "happy" / "photo.png").convert("RGB"))
    assert np.array_equal(sample["image"], photo[window[1] : window[3], window[0] : window[2]])
    assert sample["image_size"] == (window[2] - window[0], window[3] - window[1])
    assert box_from_crop(sample["face_box"], window) == pytest.approx(original.face_box, abs=1.0)
    assert set(sample["au_box"]) == set(original.au_box)
    for au, box in sample["au_box"].items():
        assert box_from_crop(box, window) == pytest.approx(original.au_box[au], abs=1.0)
    assert np.allclose(points_from_crop(sample["landmarks"], window), original.landmarks, atol=1.0)


def test_a_dataset_face_box_is_preferred_and_synthetic_scenes_are_cropped(tmp_path, configs_dir):
    """synthetic ``pose: random, canvas: 4``: a small face in a 256-px scene, cropped to its ground-truth face box."""
    spec = "{name: synthetic, root: %s, split: train, num_samples: 4, image_size: 256, pose: random, canvas: 4.0}" % (tmp_path / "scene")
    dataset = _module(tmp_path, configs_dir, spec).datasets["test"]
    for index, item in enumerate(dataset.items):
        sample = dataset[index]
        x1, y1, x2, y2 = item.record.face_box
        assert max(x2 - x1, y2 - y1) < 0.35 * 256  # the face is small in the scene
        window = FaceCrop().for_images(True).window(item.record, item.evidence, (256, 256))
        assert sample["crop_box"] == window and sample["image"].shape[:2] == (window[3] - window[1], window[2] - window[0])
        for au, box in sample["au_box"].items():
            assert box_from_crop(box, window) == pytest.approx(item.evidence.au_box[au], abs=1.0)


def test_aligned_sets_are_served_pixel_for_pixel_as_without_the_crop(tmp_path, configs_dir):
    spec = "{name: synthetic, root: %s, split: train, num_samples: 6, pose: aligned}" % (tmp_path / "aligned")
    auto = _module(tmp_path, configs_dir, spec).datasets["test"]
    none = _module(tmp_path, configs_dir, spec, "data.face_crop.source=none").datasets["test"]
    for index in range(len(auto)):
        a, b = auto[index], none[index]
        assert a["crop_box"] is None and np.array_equal(a["image"], b["image"])
        assert a["au_box"] == b["au_box"] and a["face_box"] == b["face_box"] and np.array_equal(a["landmarks"], b["landmarks"])


def test_template_traces_are_built_for_the_crop_and_checked_when_served(tmp_path, configs_dir, tiny_qwen2_vl_dir):
    from tagfer.core.trace import parse_trace
    from tagfer.reasoning.build import build_traces
    from tagfer.training.sft_stage import ensure_traces

    traces = tmp_path / "traces.jsonl"
    spec = "{name: synthetic, root: %s, split: train, num_samples: 8, image_size: 192, canvas: 3.0, traces: %s}" % (tmp_path / "s", traces)
    overrides = [
        f"data.train=[{spec}]",
        f"data.val=[{spec}]",
        "data.test=[]",
        f"au.cache_dir={tmp_path / 'au_cache'}",
        f"model.name_or_path={tiny_qwen2_vl_dir}",
        "model.build_tiny=false",
        "data.augment.enabled=false",
    ]
    cfg = load_config(configs_dir / "sft.yaml", overrides)
    dm = FERDataModule(cfg.data, cfg.au, require_traces=True, prepare_traces=lambda: ensure_traces(cfg, build_traces), seed=0)
    dm.prepare_data()
    dm.setup("fit")
    lines = [json.loads(line) for line in traces.read_text().splitlines()]
    assert lines and all(line["crop_box"] is not None for line in lines)
    dataset = dm.datasets["train"]
    for index, item in enumerate(dataset.items):
        sample = dataset[index]
        line = next(entry for entry in lines if entry["id"] == item.record.id)
        assert list(sample["crop_box"]) == line["crop_box"] and list(sample["image_size"]) == line["orig_size"]
        assert parse_trace(sample["trace"]).valid
    # served with another crop than the one the traces were built for: a clear error naming the file
    wider = load_config(configs_dir / "sft.yaml", [*overrides, "data.face_crop.margin=0.5"])
    dm = FERDataModule(wider.data, wider.au, require_traces=True, seed=0)
    dm.setup("fit")
    with pytest.raises(ValueError, match="rebuild"):
        dm.datasets["train"][0]


def test_predict_crops_the_photo_and_draws_the_boxes_on_the_face(tiny_qwen2_vl_dir, tmp_path):
    """The same small face in a large photo through predict: the model sees the crop, its norm1000 box comes
    back in photo pixels inside the face, and the PNG of the whole photo has the boxes on the face."""
    from fixtures_models import tiny_model_cfg
    from tagfer.au.detectors import create_detector
    from tagfer.core.visualize import DETECTOR_COLOUR, PREDICTED_COLOUR
    from tagfer.evaluation.inference import load_inference_model
    from tagfer.evaluation.predict import predict_images
    from tagfer.metrics.predictions import Prediction

    root, paste = _photo_with_a_small_face(tmp_path)
    photo_path = root / "test" / "happy" / "photo.png"
    engine = load_inference_model(tiny_model_cfg(tiny_qwen2_vl_dir), checkpoint=None, think_tags=False, accelerator="cpu")
    text = (
        "Global analysis: A smile.\nVerification loop:\n"
        "Inspect lip corners (AU12) → corners pulled up → <bbox>[250,500,750,1000]</bbox>\n"
        "Final conclusion: Combined AU12 indicate a dominant emotion of happiness.\n<answer> happiness </answer>"
    )
    seen = []

    def scripted(inputs, max_new_tokens):
        seen.append(inputs["image_grid_thw"].tolist())
        return [Prediction.from_completion(text)] * inputs["input_ids"].shape[0]

    engine.predict = scripted
    (result,) = predict_images(engine, create_detector("builtin"), [str(photo_path)], out_dir=tmp_path / "png", max_new_tokens=4)
    window = result.crop_box
    assert window is not None and _inside(window, paste, 0.25 * (window[2] - window[0]))
    width, height = window[2] - window[0], window[3] - window[1]
    patch = engine.processor.image_processor.patch_size
    ((_, grid_h, grid_w),) = seen[0]
    assert (grid_w * patch, grid_h * patch) == engine.space.input_size((width, height))  # the model saw the crop
    assert engine.space.input_size((width, height)) != engine.space.input_size((640, 480))
    (step,) = result.steps
    expected = (window[0] + 0.25 * width, window[1] + 0.5 * height, window[0] + 0.75 * width, window[1] + 1.0 * height)
    assert step["box_pixels"] == pytest.approx(expected, abs=1.0)  # crop's norm1000 → photo pixels
    assert json.loads(json.dumps(result.to_json(0.5)))["crop_box"] == list(window)
    drawn = np.asarray(Image.open(result.png).convert("RGB"))
    assert drawn.shape[:2] == (480, 640)  # the whole photo, drawn at scale 1
    for colour in (PREDICTED_COLOUR, DETECTOR_COLOUR):
        ys, xs = np.nonzero(np.all(drawn == colour, axis=-1))
        ys, xs = ys[ys > 12], xs[ys > 12]  # below the caption bar
        assert len(xs) > 0 and _inside((xs.min(), ys.min(), xs.max(), ys.max()), window, 12)  # labels may overhang a little
