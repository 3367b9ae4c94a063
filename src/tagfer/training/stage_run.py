"""The start and the end that the SFT and GRPO stages share.

* :func:`start_run` — preflight (paths, AU caches: fail before anything heavy loads), seed everything,
  save the resolved config into ``<run_dir>/config.yaml``;
* :func:`fit_and_export` — ``Trainer.fit`` resuming from ``trainer.resume`` (a checkpoint of another
  model or stage is refused before fit), then the consolidated weights (FSDP2: gathered on every rank)
  exported by rank 0 to ``<run_dir>/export`` with the stage's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from tagfer.config import save_config
from tagfer.models.export import export_policy
from tagfer.training.preflight import preflight
from tagfer.training.resume import check_resume, run_signature
from tagfer.training.sharding import consolidated_state_dict
from tagfer.training.trainer import resume_checkpoint

log = logging.getLogger(__name__)


def start_run(cfg) -> Path:
    """Check the config's inputs, seed, save the config; returns ``run_dir``."""
    preflight(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    save_config(cfg, run_dir)
    return run_dir


def fit_and_export(cfg, trainer: L.Trainer, module, datamodule, processor, *, family: str, base_name_or_path: str, classes) -> Path:
    """Fit ``module`` (its policy is ``module.model``) and export it; returns ``<run_dir>/export``."""
    run_dir = Path(cfg.run_dir)
    ckpt_path = resume_checkpoint(cfg.trainer, run_dir)
    check_resume(ckpt_path, module, run_signature(cfg))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    export_dir = run_dir / "export"
    weights = consolidated_state_dict(module.model, rank=trainer.global_rank)
    if trainer.is_global_zero:
        export_policy(
            module.model,
            processor,
            export_dir,
            base_name_or_path=base_name_or_path,
            family=family,
            extra_meta={
                "stage": cfg.stage,
                "global_step": trainer.global_step,
                "classes": list(classes),
                "think_tags": bool(cfg.traces.think_tags),
            },
            state_dict=weights,
        )
        log.info("exported the %s policy to %s", cfg.stage.upper(), export_dir)
    return export_dir
