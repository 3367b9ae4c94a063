"""``stage: rl`` — ``python src/train.py --config configs/rl.yaml``.

1. seed everything, save the resolved config;
2. load the SFT export named by ``model.init_from`` and make it the policy. The reference model of the
   KL term is the policy *at the start of RL* (the SFT model), as in TAG and its public recipes:
   * LoRA: the SFT adapter is merged into the base weights and a fresh adapter is trained, so the
     adapter-disabled network is exactly the SFT model (no second copy in memory);
   * full fine-tune: a frozen copy of the SFT model (only when ``rl.beta ≠ 0``);
3. ``Trainer.fit`` of :class:`GRPOModule` with the reward callbacks of ``rl.rewards`` (resuming from
   ``<run_dir>/checkpoints/last.ckpt`` by default);
4. export to ``<run_dir>/export``: the RL adapter over the SFT export (loaded as a chain by
   :func:`tagfer.models.loader.load_vlm`), or the full model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from peft import PeftModel

from tagfer.pipeline.datamodule import FERDataModule
from tagfer.data.label_space import training_classes
from tagfer.models.loader import load_vlm
from tagfer.models.policy import count_parameters, frozen_reference_copy, prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.models.collate import PromptCollator
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.rewards import build_rewards
from tagfer.training.stage_run import fit_and_export, start_run
from tagfer.training.trainer import build_trainer

log = logging.getLogger(__name__)


def load_rl_policy(cfg):
    """``(policy, processor, family, reference)`` initialised from ``model.init_from`` (see the module docstring;
    :func:`tagfer.training.preflight.preflight`, run by :func:`start_run` first, checks that it is set and exists)."""
    model, processor, family = load_vlm(cfg.model, for_training=True)
    if isinstance(model, PeftModel) and cfg.model.finetune == "lora":
        model = model.merge_and_unload()  # the SFT model becomes the base: the disabled adapter = reference
    policy = prepare_policy(model, cfg.model)
    reference = frozen_reference_copy(policy) if cfg.rl.beta != 0.0 else None
    return policy, processor, family, reference


def run_grpo(cfg, *, trainer_overrides: dict | None = None) -> Path:
    """Train with GRPO and export; returns the export directory."""
    with start_run(cfg) as run_dir:
        rewards = build_rewards(cfg.rl.rewards)
        policy, processor, family, reference = load_rl_policy(cfg)
        log.info("policy: %s; rewards: %s", count_parameters(policy), ", ".join(f"{r.name}×{r.weight}" for r in rewards))
        space = ModelSpace.of(processor, family)
        classes = training_classes(cfg.data)
        collate = PromptCollator(processor, space, classes=classes, think_tags=cfg.traces.think_tags)
        datamodule = FERDataModule(
            cfg.data, cfg.au, train_collate=collate, eval_collate=collate, train_batch_size=cfg.rl.batch_size, seed=cfg.seed
        )
        module = GRPOModule(
            policy,
            processor,
            cfg.rl,
            rewards,
            convention=space.convention,
            classes=classes,
            reference=reference,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
        )
        overrides = {"gradient_clip_val": None, "accumulate_grad_batches": 1, "limit_val_batches": 0, **(trainer_overrides or {})}
        trainer = build_trainer(cfg, run_dir, **overrides)
        return fit_and_export(cfg, trainer, module, datamodule, processor, family=family, base_name_or_path=cfg.model.init_from, classes=classes)
