"""Vision-only baseline: input normalisation and (soft) targets against references, timm weights only from
local files, and a couple of training steps on synthetic faces ending in the evaluator's report schema."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES
from tagfer.core.config import ConfigError, load_config
from tagfer.metrics import SCORE_NAMES
from tagfer.metrics.predictions import PREDICTIONS_FILE, read_predictions
from tagfer.metrics.report import DATASET_KEYS, REPORT_JSON
from tagfer.training.baseline import VisionBaseline, build_network, class_targets, normalized_pixels


def test_normalized_pixels_of_a_flat_image_are_the_normalised_colour():
    colour = np.array([200, 100, 50], dtype=np.uint8)
    images = [np.broadcast_to(colour, (30, 50, 3)), np.zeros((64, 64, 3), np.uint8)]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    out = normalized_pixels(images, 16, mean, std)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    expected = (colour / 255.0 - np.array(mean)) / np.array(std)  # resizing a flat image keeps it flat
    np.testing.assert_allclose(out[0].mean(dim=(1, 2)).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(out[0].std(dim=(1, 2)).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[1, :, 0, 0].numpy(), -np.array(mean) / np.array(std), rtol=1e-6)


def test_targets_are_one_hot_or_renormalised_soft_labels():
    classes = ("happiness", "sadness", "surprise")
    soft = np.zeros(8, np.float32)
    soft[[CLASS_INDEX["happiness"], CLASS_INDEX["surprise"], CLASS_INDEX["contempt"]]] = (0.6, 0.2, 0.2)
    only_outside = np.zeros(8, np.float32)
    only_outside[CLASS_INDEX["contempt"]] = 1.0
    targets = class_targets(["happiness", "sadness", "surprise"], [soft, None, only_outside], classes)
    expected = torch.tensor([[0.75, 0.0, 0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(targets, expected)
    with pytest.raises(ValueError, match="not among"):
        class_targets(["anger"], [None], classes)


def test_soft_target_loss_is_the_expected_cross_entropy():
    """The module's loss equals −Σ t·log softmax computed by hand."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    module = VisionBaseline(net, ("happiness", "sadness", "surprise"), optim_cfg=None)
    module.log = lambda *args, **kwargs: None
    pixels = torch.randn(4, 3, 2, 2)
    target = torch.softmax(torch.randn(4, 3), dim=-1)
    loss = module.training_step({"pixels": pixels, "target": target}, 0)
    reference = -(target * torch.log_softmax(net(pixels), dim=-1)).sum(-1).mean()
    assert torch.allclose(loss, reference)


def test_network_weights_come_only_from_local_files(tmp_path):
    cfg = SimpleNamespace(model_name="resnet18", pretrained=True, checkpoint_path=None)
    with pytest.raises(ConfigError, match="checkpoint_path"):
        build_network(cfg, 7)
    with pytest.raises(ConfigError, match="not a timm model"):
        build_network(SimpleNamespace(model_name="resnet_nope", pretrained=False, checkpoint_path=None), 7)
    source = build_network(SimpleNamespace(model_name="resnet18", pretrained=False, checkpoint_path=None), 1000)
    weights = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights)
    loaded = build_network(SimpleNamespace(model_name="resnet18", pretrained=False, checkpoint_path=str(weights)), 7)
    assert torch.equal(loaded.conv1.weight, source.conv1.weight) and loaded.fc.out_features == 7
    with pytest.raises(FileNotFoundError):
        build_network(SimpleNamespace(model_name="resnet18", pretrained=False, checkpoint_path=str(tmp_path / "x.pth")), 7)


def test_baseline_trains_and_reports_in_the_evaluator_schema(tmp_path, configs_dir):
    from tagfer.training.commands import run_recipe

    spec = "{name: synthetic, root: %s, split: %s, num_samples: %d}"
    root = tmp_path / "synthetic"
    cfg = load_config(
        configs_dir / "baseline.yaml",
        [
            f"data.train=[{spec % (root, 'train', 16)}]",
            f"data.val=[{spec % (root, 'val', 8)}]",
            f"data.test=[{spec % (root, 'test', 8)}]",
            f"au.cache_dir={tmp_path / 'au'}",
            f"run_dir={tmp_path / 'run'}",
            "data.batch_size=8",
            "baseline.model_name=test_efficientnet",  # timm's tiny test network: the resnet18 path is the same code
            "baseline.image_size=48",
            "trainer.max_steps=2",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
        ],
    )
    run_recipe(cfg)
    run = tmp_path / "run"
    report = json.loads((run / REPORT_JSON).read_text())
    entry = report["datasets"]["synthetic/test"]
    assert set(DATASET_KEYS) <= set(entry) and entry["n"] == 8 and entry["classes"] == list(CLASS_NAMES)
    assert entry["parse_rate"] == 1.0 and entry["faithfulness"] == dict.fromkeys(SCORE_NAMES)
    assert len(entry["confusion_matrix"]) == 8 and all(len(row) == 9 and row[-1] == 0 for row in entry["confusion_matrix"])
    lines = read_predictions(run / PREDICTIONS_FILE)
    assert entry["accuracy"] == pytest.approx(sum(line["correct"] for line in lines) / 8)
    assert all(line["completion"] is None and line["faithfulness"] is None for line in lines)
    assert report["model"]["kind"] == "vision_baseline" and report["checkpoint"].endswith("last.ckpt")
    assert (run / "checkpoints" / "last.ckpt").is_file() and any((run / "tb").glob("events.out.tfevents.*"))
