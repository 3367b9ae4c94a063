"""Build a Lightning ``Trainer`` from :class:`tagfer.core.config.TrainerConfig`, and find the checkpoint to resume.

Run directory layout (every stage)::

    <run_dir>/config.yaml          resolved config of the run
    <run_dir>/tb/                  TensorBoard logs (``tensorboard --logdir <run_dir>/tb``)
    <run_dir>/checkpoints/         Lightning checkpoints (``last.ckpt`` for resume, ``step=N.ckpt``)
    <run_dir>/export/              exported model/adapter + processor (what the next stage loads)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from tagfer.training.resume import AtomicCheckpointIO, EpochEndCheckpoint, RunState, run_signature

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def resume_checkpoint(trainer_cfg, run_dir: str | Path) -> str | None:
    """The checkpoint ``trainer.fit`` should resume from, or None.

    ``trainer.resume``: ``auto`` → ``<run_dir>/checkpoints/last.ckpt`` when it exists; a path → that
    checkpoint (it must exist); ``null`` → start fresh. Under ``strategy: fsdp`` a checkpoint is a
    directory (Lightning's distributed checkpoint: one shard file per rank plus ``meta.pt``).
    """
    choice = trainer_cfg.resume
    if choice is None:
        return None
    if choice == "auto":
        last = checkpoint_dir(run_dir) / "last.ckpt"
        return str(last) if last.exists() else None
    if not Path(choice).exists():
        raise FileNotFoundError(f"trainer.resume={choice!r}: no such checkpoint file (use 'auto' or null to start fresh)")
    return str(choice)


def build_strategy(trainer_cfg):
    """``auto`` | ``ddp`` | ``ddp_spawn`` → Lightning's names; ``fsdp`` → FSDP2 via ``ModelParallelStrategy``.

    FSDP2 (``fully_shard``, applied in the module's ``configure_model``, :mod:`tagfer.training.sharding`)
    runs on CPU with gloo as well as on GPUs, so the sharded code path is the one the tests exercise. It
    is data-parallel only: the mesh has ``devices × num_nodes`` data-parallel ranks and no tensor
    parallelism; checkpoints are sharded (Lightning's distributed checkpoint, one directory each).
    """
    name = trainer_cfg.strategy
    if name == "fsdp":
        from lightning.pytorch.strategies import ModelParallelStrategy

        return ModelParallelStrategy(
            data_parallel_size=processes_per_node(trainer_cfg) * trainer_cfg.num_nodes,
            tensor_parallel_size=1,
            save_distributed_checkpoint=True,
        )
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False)
    return name


def processes_per_node(trainer_cfg) -> int:
    """The number of processes per node that ``trainer.devices`` asks for: a count or a list of device ids.

    Raises ValueError for ``auto``/``-1``: FSDP2's device mesh needs the count up front.
    """
    devices = trainer_cfg.devices
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, Sequence) and not isinstance(devices, str) and len(devices) > 0:
        return len(devices)
    raise ValueError(f"trainer.devices={devices!r}: strategy fsdp needs the number of devices per node (e.g. 8) or a list of ids")


def build_trainer(cfg, run_dir: str | Path, *, callbacks=(), monitor: str | None = None, **overrides) -> L.Trainer:
    """A ``Trainer`` with TensorBoard logging, checkpointing, LR monitoring and a progress bar.

    Checkpoints are written atomically and carry the RNG states and the run signature, so a killed run
    resumes exactly (:mod:`tagfer.training.resume`).

    ``cfg`` is the root config (``cfg.trainer`` is used); ``overrides`` replace Trainer kwargs (e.g.
    ``max_steps`` for the demo).
    """
    tcfg = cfg.trainer
    run_dir = Path(run_dir)
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="", default_hp_metric=False)
    ckpt = EpochEndCheckpoint(
        dirpath=str(checkpoint_dir(run_dir)),
        filename="step={step}",
        auto_insert_metric_name=False,
        every_n_train_steps=tcfg.checkpoint.every_n_train_steps or None,
        save_last=tcfg.checkpoint.save_last,
        save_top_k=tcfg.checkpoint.save_top_k if (monitor or tcfg.checkpoint.monitor) else 1,
        monitor=monitor or tcfg.checkpoint.monitor,
        mode=tcfg.checkpoint.mode,
        save_on_train_epoch_end=True,
    )
    all_callbacks = [ckpt, LearningRateMonitor(logging_interval="step"), RunState(run_signature(cfg)), *callbacks]
    if tcfg.enable_progress_bar:
        all_callbacks.append(TQDMProgressBar(refresh_rate=1))
    kwargs = dict(
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        strategy=build_strategy(tcfg),
        precision=tcfg.precision,
        max_epochs=tcfg.max_epochs,
        max_steps=tcfg.max_steps,
        accumulate_grad_batches=tcfg.accumulate_grad_batches,
        gradient_clip_val=tcfg.gradient_clip_val,
        log_every_n_steps=tcfg.log_every_n_steps,
        val_check_interval=tcfg.val_check_interval,
        check_val_every_n_epoch=tcfg.check_val_every_n_epoch,
        limit_train_batches=tcfg.limit_train_batches,
        limit_val_batches=tcfg.limit_val_batches,
        num_sanity_val_steps=tcfg.num_sanity_val_steps,
        deterministic=tcfg.deterministic,
        enable_progress_bar=tcfg.enable_progress_bar,
        default_root_dir=str(run_dir),
        logger=logger,
        callbacks=all_callbacks,
        plugins=None if tcfg.strategy == "fsdp" else [AtomicCheckpointIO()],  # fsdp: Lightning's sharded checkpoint
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)
