"""AdamW over the trainable parameters and a warm-up + decay schedule stepped every optimizer step."""

from __future__ import annotations

import math

import torch
from transformers import get_scheduler


def build_optimizer_and_scheduler(model: torch.nn.Module, optim_cfg, total_steps: int | float) -> dict:
    """Lightning's ``configure_optimizers`` dict for :class:`tagfer.config.OptimConfig`.

    ``scheduler``: cosine | linear | constant, each after ``warmup_ratio · total_steps`` linear warm-up
    steps (transformers' schedules). ``total_steps`` is ``trainer.estimated_stepping_batches``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (check model.finetune / freeze settings)")
    optimizer = torch.optim.AdamW(params, lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay, betas=tuple(optim_cfg.betas))
    total = max(1, int(total_steps)) if math.isfinite(total_steps) else 1
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[optim_cfg.scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(optim_cfg.warmup_ratio * total), num_training_steps=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
