"""``SFTModule``: stage 1 of TAG — supervised fine-tuning on AU-grounded reasoning traces.

Training: next-token cross-entropy on the trace tokens only (``labels`` are -100 on the prompt and the
image, see :func:`tagfer.models.inputs.build_sft_inputs`)::

    loss = − Σ_{t: labels_t ≠ −100} log p(labels_t | tokens_<t) / #{t: labels_t ≠ −100}

logged with the token accuracy (argmax of the shifted logits equals the label, over the same tokens).

A non-finite loss (on any rank) skips the batch; non-finite gradients skip the optimizer update (the
gradients are dropped, so Adam leaves every weight and moment untouched; the LR schedule still advances).
Either increments ``train/skipped_steps``; after ``sft.max_consecutive_skips`` in a row the run stops
with :class:`~tagfer.training.skips.NonFiniteStepError` naming the last good checkpoint
(:mod:`tagfer.training.skips`: every rank takes the same decision).

Validation: greedy generation on the first ``sft.val_generate_samples`` validation samples, scored with
accuracy (:class:`ExpressionClassificationMetrics`), parse rate (:class:`ParseRate`) and grounding
(:class:`GroundingFaithfulness`: mean IoU of predicted boxes against the cached AU boxes, in the model's
coordinate space). TensorBoard gets sample completions as text and images with predicted and detector
boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.trace import parse_trace
from tagfer.metrics import ExpressionClassificationMetrics, GroundingFaithfulness, ParseRate, answer_indices
from tagfer.models.generation import generate_completions
from tagfer.models.inputs import IGNORE_INDEX
from tagfer.training.logging import log_grounding_samples
from tagfer.training.optim import build_optimizer_and_scheduler
from tagfer.training.sharding import checkpoint_state_dict, local_gradients_finite, shard_for_strategy
from tagfer.training.skips import SkipsNonFiniteSteps


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of supervised positions where ``argmax logits[:, t-1] == labels[:, t]``.

    ``logits`` ``[B, L, V]``, ``labels`` ``[B, L]`` with -100 on unsupervised positions.
    """
    predicted = logits[:, :-1].argmax(dim=-1)
    target = labels[:, 1:]
    supervised = target != IGNORE_INDEX
    return (predicted[supervised] == target[supervised]).float().mean() if supervised.any() else logits.new_zeros(())


class SFTModule(SkipsNonFiniteSteps, L.LightningModule):
    """Supervised fine-tuning of a prepared policy (:func:`tagfer.models.policy.prepare_policy`).

    Args:
        model: the policy (peft ``PeftModel`` with LoRA, or a full model with the vision tower frozen).
        processor: its processor (decoding of validation completions).
        convention: the family's box convention ("norm1000" | "pixels"), for drawing boxes.
        sft_cfg: :class:`tagfer.core.config.SFTConfig`.
        classes: the label space of the prompts and the metrics.
        au_threshold: AU activation threshold of the faithfulness metric.
    """

    STAGE, SKIP_METRIC = "SFT", "train/skipped_steps"
    SKIP_HINT = "lower sft.optim.lr or check the data."

    def __init__(self, model, processor, sft_cfg, *, convention: str, classes: Sequence[str] = CLASS_NAMES, au_threshold: float = 0.5):
        super().__init__()
        self.model = model
        self.processor = processor
        self.convention = convention
        self.cfg = sft_cfg
        self.max_consecutive_skips = sft_cfg.max_consecutive_skips
        self.classes = tuple(classes)
        self.strict_loading = False  # checkpoints hold only the trainable weights (see on_save_checkpoint)
        self.val_classification = ExpressionClassificationMetrics(self.classes)
        self.val_parse_rate = ParseRate()
        self.val_grounding = GroundingFaithfulness(threshold=au_threshold)
        self._val_generated = 0
        self.skipped_steps = 0
        self.consecutive_skips = 0

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor | None:
        inputs = batch["inputs"]
        out = self.model(**inputs)
        batch_size = inputs["input_ids"].shape[0]
        if not self._all_ranks(torch.isfinite(out.loss)):
            self._skip("non-finite loss")
            return None  # Lightning skips backward and the update for this batch
        self.log("train/loss", out.loss, prog_bar=True, batch_size=batch_size)
        self.log("train/token_accuracy", token_accuracy(out.logits.detach(), inputs["labels"]), prog_bar=True, batch_size=batch_size)
        return out.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        """Drop non-finite gradients (every rank together) so the optimizer skips this update."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:  # every batch of this step was skipped already
            return
        if self._all_ranks(local_gradients_finite(params)):  # one device sync
            self.consecutive_skips = 0
            return
        for p in params:
            p.grad = None  # torch optimizers leave parameters without a gradient untouched
        self._skip("non-finite gradient")

    def on_validation_epoch_start(self) -> None:
        self._val_generated = 0

    def validation_step(self, batch: dict, batch_index: int) -> None:
        room = self.cfg.val_generate_samples - self._val_generated
        if room <= 0:
            return
        meta = batch["meta"]
        inputs = _first_rows(batch["inputs"], room)
        n = inputs["input_ids"].shape[0]
        completions = generate_completions(self.model, self.processor, inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
        parsed = [parse_trace(text) for text in completions.texts]
        targets = [self.classes.index(name) for name in meta["label_name"][:n]]
        self.val_classification.update(answer_indices(parsed, self.classes), targets)
        self.val_parse_rate.update(parsed)
        self.val_grounding.update(parsed, meta["au_prob"][:n], meta["au_box"][:n])
        if self._val_generated < self.cfg.log_images:
            log_grounding_samples(
                self.logger,
                "val",
                self.global_step,
                completions.texts,
                meta,
                limit=self.cfg.log_images - self._val_generated,
                convention=self.convention,
            )
        self._val_generated += n

    def on_validation_epoch_end(self) -> None:
        if self._val_generated == 0:
            return
        scores = self.val_classification.compute()
        grounding = self.val_grounding.compute()
        self.log_dict(
            {
                "val/accuracy": scores["accuracy"].float(),
                "val/mean_class_accuracy": scores["mean_class_accuracy"].float(),
                "val/parse_rate": self.val_parse_rate.compute().float(),
                "val/mean_iou": torch.nan_to_num(grounding["mean_iou"]).float(),
                "val/hallucination_rate": torch.nan_to_num(grounding["hallucination_rate"]).float(),
            },
            prog_bar=True,
        )
        for metric in (self.val_classification, self.val_parse_rate, self.val_grounding):
            metric.reset()

    def configure_optimizers(self):
        return build_optimizer_and_scheduler(self.model, self.cfg.optim, self.trainer.estimated_stepping_batches)

    def configure_model(self) -> None:
        """FSDP2 (``trainer.strategy: fsdp``): shard the policy per block (:mod:`tagfer.training.sharding`)."""
        shard_for_strategy(self, self.model)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep only trainable tensors (LoRA adapters, projector; everything for a full fine-tune); a
        sharded checkpoint keeps everything (see :func:`tagfer.training.sharding.checkpoint_state_dict`)."""
        checkpoint["state_dict"] = checkpoint_state_dict(self, checkpoint["state_dict"])
        checkpoint["sft"] = {"skipped_steps": self.skipped_steps, "consecutive_skips": self.consecutive_skips}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        counters = checkpoint.get("sft", {})
        self.skipped_steps = counters.get("skipped_steps", 0)
        self.consecutive_skips = counters.get("consecutive_skips", 0)


def _first_rows(inputs, n: int):
    """The first ``n`` samples of a generation batch (pixel rows follow ``image_grid_thw``)."""
    if inputs["input_ids"].shape[0] <= n:
        return inputs
    patches = int(inputs["image_grid_thw"][:n].prod(-1).sum())
    out = {k: v[:n] for k, v in inputs.items() if k != "pixel_values"}
    out["pixel_values"] = inputs["pixel_values"][:patches]
    return out
