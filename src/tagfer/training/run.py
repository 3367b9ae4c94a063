"""Run the stage a config names: ``sft``, ``rl``, ``baseline``, ``eval`` or ``demo``."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def run_stage(cfg) -> int:
    """Dispatch on ``cfg.stage``; returns a process exit code.

    ``trainer.num_threads`` (when set) fixes torch's intra-op thread count for the whole run first.
    """
    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
        log.info("torch threads: %d", cfg.trainer.num_threads)
    if cfg.stage == "sft":
        from tagfer.training.sft_stage import run_sft

        run_sft(cfg)
    elif cfg.stage == "rl":
        from tagfer.training.grpo_stage import run_grpo

        run_grpo(cfg)
    elif cfg.stage == "baseline":
        from tagfer.training.baseline import run_baseline

        run_baseline(cfg)
    elif cfg.stage == "eval":
        from tagfer.evaluation.runner import run_evaluation

        run_evaluation(cfg)
    elif cfg.stage == "demo":
        from tagfer.demo import run_demo

        run_demo(cfg)
    else:  # load_config already rejects unknown stages
        raise ValueError(f"unknown stage {cfg.stage!r}")
    return 0
