"""The start and the end that the SFT and GRPO stages share.

* :func:`start_run` — preflight (paths, AU caches: fail before anything heavy loads), hold the run
  directory for this process (:func:`tagfer.core.run_lock.hold_run_dir`: a second run into it stops at once,
  naming this one), seed everything, save the resolved config into ``<run_dir>/config.yaml``;
* :func:`fit_and_export` — ``Trainer.fit`` resuming from ``trainer.resume`` (a checkpoint of another
  model or stage is refused before fit), then the consolidated weights (FSDP2: gathered on every rank)
  exported by rank 0 to ``<run_dir>/export`` with the stage's metadata; every rank returns once the
  export is complete (a barrier), so a next stage in the same process (the demo, RL after its SFT) finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L

from tagfer.core.config import save_config
from tagfer.core.run_lock import hold_run_dir
from tagfer.models.export import export_policy
from tagfer.training.preflight import preflight
from tagfer.training.resume import check_resume, run_signature
from tagfer.training.sharding import consolidated_state_dict
from tagfer.training.trainer import resume_checkpoint

log = logging.getLogger(__name__)


@contextmanager
def start_run(cfg) -> Iterator[Path]:
    """Check the config's inputs, hold ``run_dir`` for the ``with`` block, seed, save the config; yields ``run_dir``."""
    preflight(cfg)
    run_dir = Path(cfg.run_dir)
    with hold_run_dir(run_dir):
        L.seed_everything(cfg.seed, workers=True)
        save_config(cfg, run_dir)
        yield run_dir


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
    trainer.strategy.barrier("export")  # the next stage of this process may load the export on any rank
    return export_dir
