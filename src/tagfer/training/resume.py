"""Kill-safe checkpoints and exact resumption of a training run.

A run killed at any moment (SIGKILL, pre-emption) and started again with the same command continues from
``<run_dir>/checkpoints/last.ckpt`` and ends with the same weights and metrics as a run that was never
interrupted (bitwise on CPU). Lightning restores the weights, optimizer, scheduler and loop counters; this
module adds what it does not:

* :class:`AtomicCheckpointIO` — a checkpoint is written to a temporary file in its own directory,
  flushed to disk and renamed over the target, so ``last.ckpt`` is always a whole checkpoint (Lightning's
  default writes through a temporary file in the system temp dir, which turns into a copy — not a rename —
  when that is another file system);
* :class:`RunState` — the global RNG states (torch CPU and CUDA, numpy, python) at the moment of the
  checkpoint, restored when training restarts, so GRPO's sampling (and any dropout) draws the same numbers;
  and the run's :func:`run_signature`, checked by :func:`check_resume` before anything is loaded;
* :class:`EpochEndCheckpoint` — a step checkpoint due at the last batch of an epoch that ends with
  validation is written after that validation instead (Lightning skips the validation of the epoch a
  checkpoint was taken in when it resumes, so a kill between the two would lose those metrics).

The data loader's position (epoch, batches done) is the datamodule's ``state_dict``
(:class:`tagfer.pipeline.datamodule.FERDataModule`): the order and the augmentation of every sample are
functions of ``(seed, epoch)`` (:mod:`tagfer.data.sampling`), so the resumed loader starts at the exact
next batch.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import OmegaConf

from tagfer.core.config import ConfigError

log = logging.getLogger(__name__)

#: The ``model`` keys that decide which weights a checkpoint holds and what they start from. (``model.tiny``
#: only shapes a tiny model built when ``name_or_path`` is missing; the directory's weights are what load.)
MODEL_KEYS = ("name_or_path", "init_from", "finetune", "lora", "freeze_vision", "train_projector", "family")


class ResumeMismatchError(ConfigError):
    """The checkpoint to resume from was written by a run with another model or stage configuration (a
    :class:`~tagfer.core.config.ConfigError`: the CLI prints it and exits with code 2)."""


# ------------------------------------------------------------------------------------------ RNG states
def capture_rng() -> dict[str, Any]:
    """The global RNG states: torch (CPU and every CUDA device), numpy's legacy global, python's ``random``.

    Only tensors and plain python values, so Lightning's ``weights_only`` checkpoint loading accepts them.
    """
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNG states captured by :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------- signature
def run_signature(cfg) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed by ``cfg``: the stage and the model keys
    :data:`MODEL_KEYS` (``model.name_or_path`` is compared as an absolute path)."""
    model = OmegaConf.to_container(cfg.model, resolve=True) if OmegaConf.is_config(cfg.model) else dict(vars(cfg.model))
    signature = {f"model.{key}": model.get(key) for key in MODEL_KEYS}
    for key in ("model.name_or_path", "model.init_from"):
        if signature[key]:
            signature[key] = str(Path(signature[key]).resolve())
    return {"stage": cfg.stage, **_flatten(signature)}


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten({f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = value
    return flat


def check_resume(path: str | os.PathLike | None, module: L.LightningModule, signature: dict[str, Any]) -> None:
    """Refuse, before training starts, a checkpoint that does not fit this run.

    The checkpoint (read memory-mapped, the tensors are not loaded) must carry the same
    :func:`run_signature` and hold exactly the module's trainable tensors with the same shapes. A
    directory (a sharded FSDP2 checkpoint) is checked by Lightning when it loads.

    Raises:
        ResumeMismatchError: naming every difference and how to start fresh instead.
    """
    if path is None or Path(path).is_dir():
        return
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # noqa: BLE001 — any unreadable file gets the same clear message
        raise ResumeMismatchError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); {_fresh_hint(path)}") from None
    problems = []
    saved = (checkpoint.get("callbacks") or {}).get(RunState.__qualname__, {}).get("signature")
    if saved is None:
        problems.append("it records no run signature (it was not written by a tagfer training stage)")
    else:
        for key in sorted(saved):  # keys a newer tagfer added are not in an older checkpoint's signature
            if saved[key] != signature.get(key):
                problems.append(f"{key}: checkpoint {saved.get(key)!r}, this config {signature.get(key)!r}")
    expected = {name: tuple(p.shape) for name, p in module.named_parameters() if p.requires_grad}
    stored = {name: tuple(t.shape) for name, t in checkpoint.get("state_dict", {}).items()}
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing:
        problems.append(f"{len(missing)} trainable tensor(s) missing, e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensor(s) this model does not train, e.g. {unexpected[:3]}")
    reshaped = [f"{n} {stored[n]} vs {expected[n]}" for n in sorted(set(stored) & set(expected)) if stored[n] != expected[n]]
    if reshaped:
        problems.append(f"{len(reshaped)} tensor(s) with other shapes, e.g. {reshaped[:3]}")
    if problems:
        raise ResumeMismatchError(f"cannot resume from {path}: " + "; ".join(problems) + f". {_fresh_hint(path)}")


def _fresh_hint(path) -> str:
    return (
        "Resume with the configuration that wrote it, or start this run fresh: trainer.resume=null, another run_dir, "
        f"or delete {Path(path).parent}"
    )


# ------------------------------------------------------------------------------------------ callbacks
class RunState(L.Callback):
    """Saves the RNG states and the run signature in every checkpoint; restores the RNG states when a
    resumed run starts training (after data setup and the sanity check, right before the next batch)."""

    def __init__(self, signature: dict[str, Any]) -> None:
        self.signature = signature
        self._restored: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Delete the temporary files of checkpoint writes a kill interrupted (:class:`AtomicCheckpointIO`)."""
        directory = getattr(trainer.checkpoint_callback, "dirpath", None)
        if trainer.is_global_zero and directory and Path(directory).is_dir():
            for partial in Path(directory).glob(".*.tmp-*"):
                log.info("removing %s (a checkpoint write that was interrupted)", partial)
                partial.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng(), "signature": self.signature}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is not None:
            restore_rng(self._restored)
            self._restored = None


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that moves a step checkpoint due on the last batch of an epoch that validates
    to the end of that epoch (after validation): see the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._validates_after(trainer) and self._step_save_due(trainer):
            self._deferred = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._deferred:
            self._deferred = False
            if not self._should_skip_saving_checkpoint(trainer):
                candidates = self._monitor_candidates(trainer)
                self._save_topk_checkpoint(trainer, candidates)
                self._save_last_checkpoint(trainer, candidates)
        super().on_train_epoch_end(trainer, pl_module)

    def _step_save_due(self, trainer) -> bool:
        every = self._every_n_train_steps
        return every >= 1 and trainer.global_step % every == 0 and trainer.global_step != self._last_global_step_saved

    @staticmethod
    def _validates_after(trainer) -> bool:
        """True on the last batch of an epoch after which the fit loop validates."""
        every = trainer.check_val_every_n_epoch
        return (
            trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
            and trainer.enable_validation
            and trainer.val_check_interval == 1.0
            and (every is None or (trainer.current_epoch + 1) % every == 0)
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``.<name>.tmp-<pid>`` beside the target, fsync, then ``os.replace`` (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself reaches the disk
        finally:
            os.close(directory)
