"""FERDataModule: samples with AU maps, augmentation that moves boxes/landmarks, balanced sampling under DDP."""

from __future__ import annotations

from collections import Counter

import albumentations as A
import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from omegaconf import OmegaConf
from torch.utils.data import WeightedRandomSampler

from tagfer.core.config import AugmentConfig, load_config
from tagfer.core.regions import au_boxes
from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.data.sampling import SampleKey
from tagfer.data.trace_boxes import TraceBoxMapper, template_step_boxes
from tagfer.data.transforms import FLIP_68, apply_augmentation, build_augmentation, reseed
from tagfer.pipeline.datamodule import FERDataModule, class_balanced_weights


def _cfg(tmp_path, configs_dir, *extra):
    root = tmp_path / "synthetic"
    spec = "{name: synthetic, root: %s, split: %s, num_samples: %d}"
    return load_config(
        configs_dir / "sft.yaml",
        [
            f"data.train=[{spec % (root, 'train', 24)}]",
            f"data.val=[{spec % (root, 'val', 8)}]",
            f"data.test=[{spec % (root, 'test', 8)}]",
            f"au.cache_dir={tmp_path / 'au_cache'}",
            *extra,
        ],
    )


def test_flip_permutation_is_an_involution_that_keeps_left_right_order():
    assert sorted(FLIP_68.tolist()) == list(range(68))
    assert (FLIP_68[FLIP_68] == np.arange(68)).all()
    # a symmetric toy face: x = +-offset around 50
    x = np.linspace(10, 90, 68)
    landmarks = np.stack([x, np.full(68, 40.0)], axis=1).astype(np.float32)
    landmarks[36], landmarks[45] = (20, 40), (80, 40)
    landmarks[48], landmarks[54] = (30, 70), (70, 70)
    flip = build_augmentation(AugmentConfig(horizontal_flip=1.0, shift_scale_rotate=0.0, color_jitter=0.0), seed=0)
    image = np.zeros((100, 100, 3), np.uint8)
    out = apply_augmentation(flip, image, {"AU12": (30.0, 60.0, 45.0, 80.0)}, landmarks)
    assert out.flipped
    assert out.landmarks[36][0] < out.landmarks[45][0] and out.landmarks[48][0] < out.landmarks[54][0]
    # old 36 is now 45, mirrored (albumentations mirrors keypoints as pixel indices: x -> W - 1 - x)
    np.testing.assert_allclose(out.landmarks[45], [79.0, 40.0], atol=1e-4)
    np.testing.assert_allclose(out.boxes["AU12"], (55.0, 60.0, 70.0, 80.0), atol=1e-4)


def test_boxes_and_landmarks_follow_an_affine_transform():
    cfg = AugmentConfig(horizontal_flip=0.0, shift_scale_rotate=1.0, max_rotate_deg=10.0, color_jitter=0.0)
    pipeline = build_augmentation(cfg, seed=3)
    rng = np.random.default_rng(0)
    landmarks = rng.uniform(30, 70, size=(68, 2)).astype(np.float32)
    box = (float(landmarks[:, 0].min()), float(landmarks[:, 1].min()), float(landmarks[:, 0].max()), float(landmarks[:, 1].max()))
    out = apply_augmentation(pipeline, np.zeros((100, 100, 3), np.uint8), {"all": box}, landmarks)
    x1, y1, x2, y2 = out.boxes["all"]
    # the box of the points stays around the moved points (rotation enlarges it, never cuts them)
    assert (out.landmarks[:, 0] >= x1 - 1).all() and (out.landmarks[:, 0] <= x2 + 1).all()
    assert (out.landmarks[:, 1] >= y1 - 1).all() and (out.landmarks[:, 1] <= y2 + 1).all()
    assert not np.allclose(out.landmarks, landmarks)


def test_balanced_sampler_draws_classes_equally_and_splits_disjointly_across_ranks():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    weights = class_balanced_weights(labels)
    assert torch.allclose(weights[:90].sum(), weights[90:99].sum()) and torch.allclose(weights[99], weights[:90].sum())
    draws = []
    for rank in range(2):
        sampler = WeightedRandomSampler(weights, num_samples=3000, replacement=True, generator=torch.Generator().manual_seed(7))
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        wrapper.set_epoch(0)
        draws.append(list(wrapper))
    single = list(WeightedRandomSampler(weights, num_samples=3000, replacement=True, generator=torch.Generator().manual_seed(7)))
    assert sorted(draws[0] + draws[1]) == sorted(single)  # the two ranks share one global draw
    counts = Counter(labels[i] for i in single)
    assert all(abs(counts[c] / 3000 - 1 / 3) < 0.05 for c in range(3))


def test_datamodule_serves_synthetic_samples_with_au_maps(tmp_path, configs_dir):
    cfg = _cfg(tmp_path, configs_dir, "data.augment.enabled=false", "data.batch_size=4")
    dm = FERDataModule(cfg.data, cfg.au, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 4
    sample = batch[0]
    width, height = sample["image_size"]
    assert sample["image"].shape == (height, width, 3) and sample["image"].dtype == np.uint8
    x1, y1, x2, y2 = sample["crop_box"]  # pose random: whole photos, cropped to the face (data.face_crop auto)
    assert (x2 - x1, y2 - y1) == (width, height) and 0 <= x1 < x2 <= 112 and 0 <= y1 < y2 <= 112
    assert sample["face_found"] and sample["landmarks"].shape == (68, 2)
    assert set(sample["au_prob"]) == set(sample["au_box"])
    assert sample["label_name"] in ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
    assert len(dm.datasets["val"]) == 8


def test_trace_boxes_follow_the_augmentation(tmp_path, configs_dir):
    """A flipped SFT sample gets its trace rewritten with mirrored boxes (identity box space here)."""
    cfg = _cfg(
        tmp_path, configs_dir, "data.augment.horizontal_flip=1.0", "data.augment.shift_scale_rotate=0.0", "data.face_crop.source=none"
    )
    dm = FERDataModule(cfg.data, cfg.au, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm.datasets["train"]
    item = dataset.items[0]
    step = TraceStep("lip corners", ("AU12",), "corners pulled up", (20.0, 60.0, 50.0, 80.0))
    item.trace = render_trace(Trace("A smile.", (step,), ("AU12",), item.record.label_name))
    dataset.trace_mapper = TraceBoxMapper(to_pixels=lambda box, size: box, to_model=lambda box, size: box)
    sample = dataset[0]
    parsed = parse_trace(sample["trace"])
    assert parsed.valid
    width = sample["image_size"][0]
    assert parsed.steps[0].box == pytest.approx((width - 50.0, 60.0, width - 20.0, 80.0), abs=1.0)
    assert OmegaConf.select(cfg, "data.augment.horizontal_flip") == 1.0


def test_a_trace_box_pushed_out_of_the_image_leaves_the_trace():
    """A step whose box the augmentation dropped (entirely outside the image) is left out of the
    rewritten trace instead of keeping its pre-augmentation coordinates; the other steps move."""
    steps = (
        TraceStep("cheeks", ("AU6",), "raised", (10.0, 10.0, 30.0, 30.0)),
        TraceStep("lip corners", ("AU12",), "pulled up", (20.0, 60.0, 50.0, 80.0)),
    )
    trace = render_trace(Trace("A smile.", steps, ("AU6", "AU12"), "happiness"))
    mapper = TraceBoxMapper(to_pixels=lambda box, size: box, to_model=lambda box, size: box)
    keys = list(mapper.boxes_in_pixels(trace, "face-1", (100, 100, 3)))
    rewritten = parse_trace(mapper.rewrite(trace, {keys[0]: None, keys[1]: (25.0, 62.0, 55.0, 82.0)}, (100, 100, 3), "face-1"))
    assert rewritten.valid
    assert [(s.aus, s.box) for s in rewritten.steps] == [(("AU12",), (25.0, 62.0, 55.0, 82.0))]
    assert rewritten.conclusion_aus == ("AU6", "AU12")
    with pytest.raises(ValueError, match="face-1"):
        mapper.rewrite(trace, {}, (100, 100, 3), "face-1")


def test_missing_template_traces_are_built_in_prepare_data_once(tmp_path, configs_dir, tiny_qwen2_vl_dir):
    """SFT builds missing template traces in ``prepare_data`` (one process per node under DDP; two ranks
    building the same file before the Trainer started once wrote every record twice), and ``setup``
    then serves every training sample with its trace."""
    from tagfer.reasoning.build import build_traces
    from tagfer.training.sft_stage import ensure_traces, missing_traces

    traces = tmp_path / "traces.jsonl"
    face = "{name: synthetic, root: %s, split: train, num_samples: 24, traces: %s}" % (tmp_path / "synthetic", traces)
    model = [f"model.name_or_path={tiny_qwen2_vl_dir}", "model.build_tiny=false"]
    cfg = _cfg(tmp_path, configs_dir, f"data.train=[{face}]", "data.augment.enabled=false", *model)
    assert [spec.traces for spec in missing_traces(cfg)] == [str(traces)]
    calls = []
    dm = FERDataModule(cfg.data, cfg.au, require_traces=True, prepare_traces=lambda: calls.append(ensure_traces(cfg, build_traces)), seed=0)
    assert not traces.exists()
    dm.prepare_data()
    assert len(calls) == 1 and traces.is_file() and missing_traces(cfg) == []
    dm.setup("fit")
    assert len(dm.datasets["train"]) > 0
    assert all(parse_trace(item.trace).answer == item.record.label_name for item in dm.datasets["train"].items)

    teacher = _cfg(tmp_path, configs_dir, f"data.train=[{face.replace('traces.jsonl', 'teacher.jsonl')}]", "traces.source=teacher", *model)
    with pytest.raises(FileNotFoundError, match="tagfer traces build --source teacher"):
        missing_traces(teacher)


def test_one_sft_setup_reads_each_split_once_and_opens_each_au_cache_once(tmp_path, configs_dir, tiny_qwen2_vl_dir, monkeypatch):
    """An SFT run's ``prepare_data`` (AU caches, then the template-trace build) and ``setup`` share one
    :class:`SplitReader`: each split is read once and each AU cache is opened and verified once."""
    from tagfer.pipeline import splits as splits_module
    from tagfer.pipeline.splits import SplitReader
    from tagfer.reasoning.build import build_traces
    from tagfer.training.sft_stage import ensure_traces

    reads, opens = Counter(), Counter()
    read_full_split, ensure_au_cache = splits_module.read_full_split, splits_module.ensure_au_cache

    def counted_read(spec, **kwargs):
        reads[spec.split] += 1
        return read_full_split(spec, **kwargs)

    def counted_cache(spec, au_cfg, records, **kwargs):
        opens[spec.split] += 1
        return ensure_au_cache(spec, au_cfg, records, **kwargs)

    monkeypatch.setattr(splits_module, "read_full_split", counted_read)
    monkeypatch.setattr(splits_module, "ensure_au_cache", counted_cache)
    traces = tmp_path / "traces.jsonl"
    train = "{name: synthetic, root: %s, split: train, num_samples: 16, traces: %s}" % (tmp_path / "synthetic", traces)
    model = [f"model.name_or_path={tiny_qwen2_vl_dir}", "model.build_tiny=false"]
    cfg = _cfg(tmp_path, configs_dir, f"data.train=[{train}]", "data.test=[]", "data.augment.enabled=false", *model)
    splits = SplitReader(cfg.au)
    dm = FERDataModule(
        cfg.data, cfg.au, require_traces=True, prepare_traces=lambda: ensure_traces(cfg, build_traces, splits), seed=0, splits=splits
    )
    dm.prepare_data()
    dm.setup("fit")
    assert traces.is_file() and len(dm.datasets["train"]) > 0 and len(dm.datasets["val"]) > 0
    assert reads == {"train": 1, "val": 1}
    assert opens == {"train": 1, "val": 1}


def test_a_split_reader_selection_equals_a_fresh_read(tmp_path):
    """``SplitReader.read(spec)`` (derived from one read of the whole split) is what ``read_dataset`` returns."""
    from tagfer.core.config import AUConfig, DatasetSpec
    from tagfer.data.readers import read_dataset
    from tagfer.pipeline.splits import SplitReader

    root = str(tmp_path / "synthetic")
    splits = SplitReader(AUConfig(detector="synthetic", cache_dir=str(tmp_path / "au")), progress=False)
    whole = DatasetSpec(name="synthetic", root=root, split="train", num_samples=24)
    for spec in (
        whole,
        DatasetSpec(name="synthetic", root=root, split="train", num_samples=12),
        DatasetSpec(name="synthetic", root=root, split="train", num_samples=24, limit=5),
        DatasetSpec(name="synthetic", root=root, split="train", num_samples=24, classes=["happiness", "sadness"]),
    ):
        derived, fresh = splits.read(spec), read_dataset(spec)
        assert [r.id for r in derived.records] == [r.id for r in fresh.records]
        assert derived.skipped == fresh.skipped and derived.notes == fresh.notes
    assert len(splits.full(whole).records) == 24  # the selections left the shared read unchanged


def _fixed_rotation(rotate_deg: float):
    """The training pipeline's box/keypoint handling with exactly one affine: a rotation by ``rotate_deg``."""
    reference = build_augmentation(AugmentConfig(horizontal_flip=0.0, shift_scale_rotate=0.0, color_jitter=0.0), seed=0)
    return A.Compose(
        [A.Affine(rotate=(rotate_deg, rotate_deg), border_mode=0, p=1.0)],
        bbox_params=reference.processors["bboxes"].params,
        keypoint_params=reference.processors["keypoints"].params,
        save_applied_params=True,
    )


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


@pytest.mark.parametrize("box_mode", ["region", "au"])
def test_rotation_recomputes_au_boxes_from_the_transformed_landmarks(tmp_path, configs_dir, box_mode):
    """Under a 30° rotation the served AU boxes are ``au_boxes`` of the served landmarks (the function that
    made them, in the cache's box mode), smaller than albumentations' rotated hulls; a template trace's step
    box is the union of its AUs' recomputed boxes, a teacher trace's box keeps the geometric transform."""
    cfg = _cfg(tmp_path, configs_dir, f"au.box_mode={box_mode}", "data.face_crop.source=none")
    dm = FERDataModule(cfg.data, cfg.au, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm.datasets["train"]
    dataset.augment = None
    plain = dataset[0]
    dataset.augment = _fixed_rotation(30.0)
    served = dataset[0]
    size = served["image_size"]
    assert served["landmarks"].shape == (68, 2)
    reference = au_boxes(served["landmarks"], list(plain["au_box"]), size, box_mode)
    assert set(served["au_box"]) == set(plain["au_box"]) == set(reference)
    for au, box in served["au_box"].items():
        assert box == pytest.approx(reference[au], abs=1e-6)
    hulls = apply_augmentation(_fixed_rotation(30.0), plain["image"], plain["au_box"], plain["landmarks"]).boxes
    assert sum(_area(served["au_box"][au]) for au in hulls) < 0.8 * sum(_area(b) for b in hulls.values())

    item = dataset.items[0]
    steps = (TraceStep("lip corners", ("AU12",), "corners pulled up", tuple(plain["au_box"]["AU12"])),)
    item.trace = render_trace(Trace("A smile.", steps, ("AU12",), item.record.label_name))
    dataset.trace_mapper = TraceBoxMapper(to_pixels=lambda box, size: box, to_model=lambda box, size: box)
    item.trace_source = "template"
    template_box = parse_trace(dataset[0]["trace"]).steps[0].box
    assert template_box == pytest.approx(served["au_box"]["AU12"], abs=1.0)  # traces write integers
    item.trace_source = "teacher"
    teacher_box = parse_trace(dataset[0]["trace"]).steps[0].box
    assert teacher_box == pytest.approx(hulls["AU12"], abs=1.0)
    assert _area(template_box) < _area(teacher_box)


def test_without_rotation_the_au_boxes_are_the_moved_boxes(tmp_path, configs_dir):
    """Flip, scale and shift without rotation keep today's boxes: those albumentations moved."""
    cfg = _cfg(
        tmp_path,
        configs_dir,
        "data.augment.horizontal_flip=1.0",
        "data.augment.shift_scale_rotate=1.0",
        "data.augment.max_rotate_deg=0.0",
        "data.augment.color_jitter=0.0",
        "data.face_crop.source=none",
    )
    dm = FERDataModule(cfg.data, cfg.au, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    dataset = dm.datasets["train"]
    pipeline = dataset.augment
    dataset.augment = None
    plain = dataset[0]
    reseed(pipeline, 7)
    moved = apply_augmentation(pipeline, plain["image"], plain["au_box"], plain["landmarks"]).boxes
    dataset.augment = pipeline
    served = dataset[SampleKey(0, 7)]
    assert served["au_box"] == moved


def test_template_step_boxes_are_unions_of_the_steps_au_boxes():
    """A cited step's box is the union of its AUs' boxes; an AU-less step's, that of its region's AUs with a
    box; a step none of whose AUs kept a box gets None (it leaves the trace)."""
    steps = (
        TraceStep("cheeks", ("AU6",), "raised", (1.0, 1.0, 2.0, 2.0)),
        TraceStep("lip corners", ("AU12", "AU14"), "pulled up", (1.0, 1.0, 2.0, 2.0)),
        TraceStep("mouth", (), "relaxed", (1.0, 1.0, 2.0, 2.0)),
    )
    trace = render_trace(Trace("A smile.", steps, ("AU6", "AU12", "AU14"), "happiness"))
    au_box = {
        "AU12": (20.0, 60.0, 40.0, 70.0),
        "AU14": (25.0, 55.0, 50.0, 68.0),
        "AU16": (30.0, 70.0, 45.0, 80.0),
        "AU26": (28.0, 72.0, 44.0, 90.0),
    }
    assert template_step_boxes(trace, au_box) == {
        "__trace_0__": None,
        "__trace_1__": (20.0, 55.0, 50.0, 70.0),
        "__trace_2__": (28.0, 70.0, 45.0, 90.0),
    }
