"""AdamW over the trainable parameters and a warm-up + decay schedule stepped every optimizer step."""

from __future__ import annotations

import math

import torch
from transformers import get_scheduler


def optimizer_steps(
    max_steps: int, batches_per_epoch: float, max_epochs: int | None, *, num_iterations: int = 1, accumulation: int = 1
) -> float:
    """Optimizer steps of a run that makes ``μ = num_iterations`` steps per batch and one step per
    ``accumulation`` batches (TRL counts both in its schedule's length)::

        min(max_steps, ⌊batches_per_epoch · max_epochs / accumulation⌋ · μ)

    ``max_steps`` counts optimizer steps (Lightning's ``global_step`` under manual optimisation);
    ``-1`` (no step limit) and ``max_epochs`` of ``None``/``-1`` (no epoch limit) drop their bound.
    ``inf`` when neither bounds the run. Lightning's ``estimated_stepping_batches`` counts batches and
    would make a cosine schedule run past its end with ``μ > 1`` (its LR climbs back up) and never reach
    it with accumulation.
    """
    if num_iterations < 1 or accumulation < 1:
        raise ValueError(f"num_iterations and accumulation must be ≥ 1, got {num_iterations} and {accumulation}")
    step_bound = math.inf if max_steps is None or max_steps < 0 else float(max_steps)
    if max_epochs is None or max_epochs < 0 or not math.isfinite(batches_per_epoch):
        epoch_bound = math.inf
    else:
        epoch_bound = float(int(batches_per_epoch * max_epochs) // accumulation * num_iterations)
    return min(step_bound, epoch_bound)


def build_optimizer_and_scheduler(model: torch.nn.Module, optim_cfg, total_steps: int | float) -> dict:
    """Lightning's ``configure_optimizers`` dict for :class:`tagfer.core.config.OptimConfig`.

    ``scheduler``: cosine | linear | constant, each after ``warmup_ratio · total_steps`` linear warm-up
    steps (transformers' schedules). ``total_steps``: the optimizer steps of the run (SFT:
    ``trainer.estimated_stepping_batches``; GRPO: :func:`optimizer_steps`); not finite → 1.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (check model.finetune / freeze settings)")
    optimizer = torch.optim.AdamW(params, lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay, betas=tuple(optim_cfg.betas))
    total = max(1, int(total_steps)) if math.isfinite(total_steps) else 1
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[optim_cfg.scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(optim_cfg.warmup_ratio * total), num_training_steps=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
