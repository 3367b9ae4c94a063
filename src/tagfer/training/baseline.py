"""``stage: baseline`` — the vision-only timm classifier: ``python src/train.py --config configs/baseline.yaml``.

The "no reasoning" row of every ablation table: the same FERDataModule (same readers, splits, AU-cache
join, albumentations augmentation, balanced sampler), a timm image classifier instead of a VLM, and the
same evaluation code and ``report.json`` schema as the VLM evaluator (:mod:`tagfer.evaluation`).

1. seed, save the resolved config into ``<run_dir>/config.yaml``;
2. build ``baseline.model_name`` with timm — random init unless ``baseline.checkpoint_path`` names local
   weights (loaded through timm's ``pretrained_cfg_overlay``, classifier re-initialised for our classes;
   nothing is downloaded);
3. ``Trainer.fit`` (TensorBoard under ``<run_dir>/tb``, checkpoints under ``<run_dir>/checkpoints``,
   resume from ``last.ckpt``) with soft-label cross-entropy (FERPlus probability modes) or one-hot targets;
4. on rank 0: evaluate on ``eval.datasets`` (empty: ``data.test``) with
   :func:`tagfer.pipeline.sets.evaluate_sets` and write ``predictions.jsonl``, ``report.json`` and
   ``report.md``. There is no text to parse and no box, so the parse rate is 1.0 and every faithfulness
   score is null.

Cross-dataset: the classifier answers with its training classes; a prediction outside a test set's
classes lands in the no-answer column, exactly as a VLM answer would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import timm
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from tagfer.core.classes import CLASS_INDEX
from tagfer.core.config import ConfigError, save_config
from tagfer.core.run_lock import hold_run_dir
from tagfer.data.label_space import training_classes
from tagfer.metrics import ExpressionClassificationMetrics
from tagfer.metrics.predictions import Prediction
from tagfer.metrics.report import print_summary, write_report
from tagfer.models.device import inference_device
from tagfer.pipeline.datamodule import FERDataModule
from tagfer.pipeline.sets import evaluate_sets
from tagfer.training.optim import build_optimizer_and_scheduler
from tagfer.training.trainer import build_trainer, resume_checkpoint

log = logging.getLogger(__name__)


def normalized_pixels(images: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[B, 3, size, size]`` float32 network input from ``B`` ``[H, W, 3]`` uint8 RGB images.

    ``x = (resize(image) / 255 − mean) / std`` per channel, with an antialiased bilinear resize of each
    image to ``size × size`` (aspect ratio not kept: face crops are near-square).
    """
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    batch = []
    for image in images:
        chw = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a copy: dataset arrays may be read-only
        resized = TF.resize(chw, [size, size], antialias=True)
        batch.append((resized.float() / 255.0 - mean_t) / std_t)
    return torch.stack(batch)


def class_targets(label_names: Sequence[str], soft_labels: Sequence[np.ndarray | None], classes: Sequence[str]) -> torch.Tensor:
    """``[B, C]`` target distributions over ``classes``.

    A sample with a soft label (an ``[8]`` distribution over the canonical classes, FERPlus probability /
    crossentropy / multi_target modes) gets it restricted to ``classes`` and renormalised:
    ``t_c = s[c] / Σ_{c' ∈ classes} s[c']``; a sample without one (or whose mass lies outside
    ``classes``) gets the one-hot vector of its label. Raises ``ValueError`` for a label outside ``classes``.
    """
    columns = [CLASS_INDEX[name] for name in classes]
    rows = []
    for index, (name, soft) in enumerate(zip(label_names, soft_labels)):
        if name not in classes:
            raise ValueError(f"sample {index}: label {name!r} is not among the classifier's classes {list(classes)}")
        row = torch.zeros(len(classes), dtype=torch.float32)
        if soft is not None:
            row = torch.as_tensor(np.asarray(soft, dtype=np.float32)[columns])
        if not float(row.sum()) > 0:
            row = torch.zeros(len(classes), dtype=torch.float32)
            row[list(classes).index(name)] = 1.0
        rows.append(row / row.sum())
    return torch.stack(rows)


class BaselineCollator:
    """DataModule samples → ``{"pixels": [B,3,S,S], "target": [B,C], "meta": {id, dataset, label_name, face_found}}``."""

    def __init__(self, classes: Sequence[str], image_size: int, mean: Sequence[float], std: Sequence[float]):
        self.classes = tuple(classes)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, samples: list[dict]) -> dict:
        labels = [s["label_name"] for s in samples]
        try:
            target = class_targets(labels, [s.get("soft_label") for s in samples], self.classes)
        except ValueError as err:
            raise ValueError(f"{err} (ids: {[s['id'] for s in samples]})") from None
        return {
            "pixels": normalized_pixels([s["image"] for s in samples], self.image_size, self.mean, self.std),
            "target": target,
            "meta": {
                "id": [s["id"] for s in samples],
                "dataset": [s["dataset"] for s in samples],
                "label_name": labels,
                "face_found": [bool(s["face_found"]) for s in samples],
            },
        }


def build_network(baseline_cfg, num_classes: int) -> torch.nn.Module:
    """The timm classifier: random init, or local weights from ``baseline.checkpoint_path`` (never a hub)."""
    name = baseline_cfg.model_name
    if not timm.is_model(name):
        raise ConfigError(f"baseline.model_name={name!r} is not a timm model (see timm.list_models())")
    path = baseline_cfg.checkpoint_path
    if path is None:
        if baseline_cfg.pretrained:
            raise ConfigError(
                "baseline.pretrained=true needs baseline.checkpoint_path: a local timm weight file "
                "(.pth / .safetensors); nothing is downloaded from a model hub"
            )
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    if not Path(path).is_file():
        raise FileNotFoundError(f"baseline.checkpoint_path={path!r}: no such weight file")
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=num_classes)


class VisionBaseline(L.LightningModule):
    """A classifier network trained with cross-entropy against (soft) target distributions.

    ``loss = −(1/B) Σ_b Σ_c t_bc · log softmax(logits_b)_c`` (``torch.nn.functional.cross_entropy`` with
    probability targets; equal to the usual cross-entropy for one-hot targets).

    Args:
        net: a module mapping ``[B, 3, S, S]`` to ``[B, C]`` logits.
        classes: the class of each logit.
        optim_cfg: :class:`tagfer.core.config.OptimConfig`.
    """

    def __init__(self, net: torch.nn.Module, classes: Sequence[str], optim_cfg):
        super().__init__()
        self.net = net
        self.classes = tuple(classes)
        self.optim_cfg = optim_cfg
        self.save_hyperparameters({"classes": list(self.classes)})
        self.val_classification = ExpressionClassificationMetrics(self.classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        logits = self(batch["pixels"])
        loss = F.cross_entropy(logits, batch["target"])
        size = logits.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/accuracy", (logits.argmax(-1) == batch["target"].argmax(-1)).float().mean(), prog_bar=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        logits = self(batch["pixels"])
        self.log("val/loss", F.cross_entropy(logits, batch["target"]), batch_size=logits.shape[0])
        self.val_classification.update(logits.argmax(-1), batch["target"].argmax(-1))

    def on_validation_epoch_end(self) -> None:
        scores = self.val_classification.compute()
        self.log_dict(
            {"val/accuracy": scores["accuracy"].float(), "val/mean_class_accuracy": scores["mean_class_accuracy"].float()},
            prog_bar=True,
        )
        self.val_classification.reset()

    def configure_optimizers(self):
        return build_optimizer_and_scheduler(self.net, self.optim_cfg, self.trainer.estimated_stepping_batches)

    @torch.no_grad()
    def predict_names(self, pixels: torch.Tensor) -> list[str]:
        """The arg-max class name per image."""
        return [self.classes[i] for i in self(pixels).argmax(-1).tolist()]


def run_baseline(cfg, *, trainer_overrides: dict | None = None) -> Path:
    """Train, then evaluate on rank 0; returns the path of ``report.json`` (rank 0) or of ``run_dir``."""
    run_dir = Path(cfg.run_dir)
    with hold_run_dir(run_dir):  # a second run into run_dir stops at once, naming this one
        return _train_and_report(cfg, run_dir, trainer_overrides)


def _train_and_report(cfg, run_dir: Path, trainer_overrides: dict | None) -> Path:
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    config_path = save_config(cfg, run_dir)
    classes = training_classes(cfg.data)
    net = build_network(cfg.baseline, len(classes))
    data_config = timm.data.resolve_model_data_config(net)
    collate = BaselineCollator(classes, cfg.baseline.image_size, data_config["mean"], data_config["std"])
    datamodule = FERDataModule(cfg.data, cfg.au, train_collate=collate, eval_collate=collate, seed=cfg.seed)
    module = VisionBaseline(net, classes, cfg.baseline.optim)
    trainer = build_trainer(cfg, run_dir, **(trainer_overrides or {}))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg.trainer, run_dir))
    if not trainer.is_global_zero:
        return run_dir
    device = inference_device(cfg.trainer.accelerator)
    module.to(device).eval()
    entries = evaluate_sets(
        cfg,
        collate=collate,
        predictor=lambda batch: [Prediction(answer=name) for name in module.predict_names(batch["pixels"].to(device))],
        grounding=None,
        batch_size=cfg.eval.batch_size,
        out_dir=run_dir,
        progress=cfg.trainer.enable_progress_bar,
    )
    report_path = write_report(
        run_dir,
        entries,
        model={"kind": "vision_baseline", "name": cfg.baseline.model_name, "classes": list(classes), "image_size": cfg.baseline.image_size},
        checkpoint=trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path,
        config=str(config_path),
        timings={"total_s": round(time.perf_counter() - start, 3)},
    )
    print_summary(entries, report_path)
    return report_path
