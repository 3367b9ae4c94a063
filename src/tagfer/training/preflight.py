"""Checks a training stage runs before it loads anything heavy: a bad path fails in a second, not after
the model has loaded.

:func:`preflight` collects every problem it finds — a dataset root that does not exist, an AU cache built
by another detector or box mode, a missing model / ``model.init_from`` / ``trainer.resume`` /
external-detector path, an RL ``engine.backend: vllm`` the policy cannot use — and raises one :class:`tagfer.core.config.ConfigError` listing them, each with the
key at fault and the fix. (Unknown keys and wrong types were already refused by
:func:`tagfer.core.config.load_config`; a checkpoint of another model is refused by
:func:`tagfer.training.resume.check_resume` once the model exists.)
"""

from __future__ import annotations

from pathlib import Path

from tagfer.au.build import check_existing_cache
from tagfer.au.cache import CacheMismatchError
from tagfer.core.config import EXTERNAL_DETECTORS, ConfigError
from tagfer.data.readers import reader


def preflight(cfg) -> None:
    """Raise :class:`ConfigError` listing every problem found in ``cfg`` (module docstring)."""
    problems = preflight_problems(cfg)
    if problems:
        raise ConfigError(f"{cfg.stage}: {len(problems)} problem(s) before training:\n  - " + "\n  - ".join(problems))


def preflight_problems(cfg, produced: tuple[str, ...] = ()) -> list[str]:
    """Every problem :func:`preflight` would raise for, one line each (the dry run reports them).

    ``produced``: paths that earlier stages of the same plan will create (an SFT export the RL stage
    starts from); they are not reported missing.
    """
    problems = [*_dataset_problems(cfg), *_model_problems(cfg, produced)]
    if cfg.stage == "rl" and cfg.engine.backend == "vllm":
        problems += rollout_engine_problems(cfg)
    resume = cfg.trainer.resume
    if resume not in (None, "auto") and not Path(resume).exists():
        problems.append(
            f"trainer.resume={resume!r}: no such checkpoint; use 'auto' (resume from run_dir if possible) or null (start fresh)"
        )
    if cfg.au.detector in EXTERNAL_DETECTORS and cfg.au.external_dir and not Path(cfg.au.external_dir).exists():
        problems.append(f"au.external_dir={cfg.au.external_dir!r} does not exist; point it at the {cfg.au.detector} output folder or CSV")
    return problems


def _dataset_problems(cfg) -> list[str]:
    problems = []
    for group in ("train", "val", "test"):
        for index, spec in enumerate(cfg.data[group]):
            key = f"data.{group}[{index}]"
            if spec.name != "synthetic" and not Path(spec.root).is_dir():  # the synthetic reader generates its root
                problems.append(f"{key}.root={spec.root!r} does not exist; expected {reader(spec.name).LAYOUT}")
                continue
            try:
                check_existing_cache(spec, cfg.au)
            except CacheMismatchError as err:
                problems.append(f"{key}: {err}")
    return problems


def _model_problems(cfg, produced: tuple[str, ...] = ()) -> list[str]:
    model = cfg.model
    if model.init_from:
        if not Path(model.init_from).exists() and str(model.init_from) not in produced:
            return [
                f"model.init_from={model.init_from!r} does not exist; train the stage it comes from first (SFT: python src/train.py --config configs/sft.yaml) or point it at an export"
            ]
        return []
    if cfg.stage == "rl":
        return ["model.init_from is not set: the RL stage starts from an SFT export (e.g. outputs/runs/sft/export)"]
    if not Path(model.name_or_path).exists() and not model.build_tiny:
        return [
            f"model.name_or_path={model.name_or_path!r} does not exist; copy the checkpoint there, or set model.build_tiny=true "
            "to build the tiny offline model (nothing is downloaded)"
        ]
    return []


def rollout_engine_problems(cfg) -> list[str]:
    """Why ``engine.backend: vllm`` cannot roll out for this RL config (:mod:`tagfer.training.grpo_stage`)."""
    problems = []
    if cfg.model.finetune != "lora":
        problems.append(
            "engine.backend=vllm in the RL stage needs model.finetune=lora (its adapter is pushed to the server after every "
            "optimizer step); a full fine-tune rolls out with engine.backend=hf"
        )
    if cfg.model.finetune == "lora" and cfg.model.train_projector:
        problems.append(
            "engine.backend=vllm in the RL stage needs model.train_projector=false (vLLM's LoRA cannot carry the vision merger)"
        )
    if cfg.trainer.strategy == "fsdp":
        problems.append("engine.backend=vllm in the RL stage does not run under trainer.strategy=fsdp; use ddp or one process")
    processes = (cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else 1) * int(cfg.trainer.num_nodes)
    if cfg.engine.vllm.url:
        return problems
    if processes > 1:
        problems.append(
            "engine.backend=vllm with several processes needs engine.vllm.url: one server for all ranks, started on the RL base "
            "with --enable-lora --logprobs-mode processed_logprobs (a launched server is for one process)"
        )
    if not Path(cfg.engine.vllm.python).is_file():
        problems.append(
            f"engine.vllm.python={cfg.engine.vllm.python!r} does not exist; create the vLLM environment with scripts/setup_vllm.sh"
        )
    return problems


def stage_problems(cfg, produced: tuple[str, ...] = ()) -> list[str]:
    """The dry run's problems of one planned training stage: :func:`preflight_problems` for the stages
    that run it (sft, rl, demo), the datasets for the baseline."""
    return _dataset_problems(cfg) if cfg.stage == "baseline" else preflight_problems(cfg, produced)
