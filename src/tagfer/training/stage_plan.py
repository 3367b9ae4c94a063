"""What ``python src/train.py --config FILE [key=value ...]`` will run: the stage plan.

Usually one stage: the one the config names. One exception makes the headline command work from a fresh
clone: an RL config whose ``model.init_from`` is the export of the SFT config beside it (``rl.yaml`` →
``sft.yaml`` in the same folder, with the same overrides: :func:`sft_overrides`) and does not exist yet
plans that SFT stage first (its own run directory, TensorBoard logs and checkpoints; resumed if it was
interrupted). The next run finds the export and plans GRPO alone. A ``model.init_from`` given on the
command line is the user's choice: when it does not exist the RL preflight reports it, nothing is trained
in its place.

Light: reads configs only (the dry run prints the plan without importing torch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tagfer.core.config import load_config

#: Override keys that belong to the RL stage, not to the SFT stage planned before it: the stage, its run
#: directory and length, its init and resume point, and the rl/eval sections. Everything else (data,
#: model, AU, traces, hardware, seed, group choices such as data=rafdb) is shared by both stages.
RL_ONLY_KEYS = ("stage", "run_dir", "model.init_from", "trainer.max_steps", "trainer.max_epochs", "trainer.resume")
RL_ONLY_SECTIONS = ("rl", "eval")


@dataclass(frozen=True)
class PlannedStage:
    """One stage to run: its name, its resolved config, and why it is in the plan (empty: the config's own)."""

    stage: str
    cfg: object
    reason: str = ""


def sft_overrides(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The command-line overrides of an RL run that also apply to the SFT stage planned before it."""
    kept = []
    for item in overrides:
        key = item.split("=", 1)[0]
        if key in RL_ONLY_KEYS or key.split(".", 1)[0].split("[", 1)[0] in RL_ONLY_SECTIONS:
            continue
        kept.append(item)
    return kept


def init_from_is_explicit(overrides: list[str] | tuple[str, ...]) -> bool:
    return any(item.split("=", 1)[0] == "model.init_from" for item in overrides)


def needs_sft_first(rl_cfg, sft_export: Path | None, *, explicit_init: bool, exists: Callable[[Path], bool] = Path.exists) -> bool:
    """Whether the RL config ``rl_cfg`` should train its SFT stage first.

    True exactly when ``rl_cfg`` is an RL stage, ``model.init_from`` came from the config files (not the
    command line), does not exist, and is ``sft_export`` — the export of the SFT config of the same family
    (None when there is none).
    """
    if rl_cfg.stage != "rl" or explicit_init or sft_export is None or not rl_cfg.model.init_from:
        return False
    init = Path(rl_cfg.model.init_from)
    return not exists(init) and init.resolve() == sft_export.resolve()


def plan_stages(config_path: str, overrides: list[str] | tuple[str, ...], cfg=None) -> list[PlannedStage]:
    """The stages ``train`` runs for ``config_path`` + ``overrides`` (module docstring), in order.

    ``cfg``: the already loaded config of ``config_path`` + ``overrides`` (loaded here when None).
    """
    cfg = cfg if cfg is not None else load_config(config_path, overrides)
    sft_path = Path(config_path).parent / "sft.yaml"
    if cfg.stage != "rl" or init_from_is_explicit(overrides) or not sft_path.is_file():
        return [PlannedStage(cfg.stage, cfg)]
    sft_cfg = load_config(sft_path, sft_overrides(overrides))
    sft_export = Path(sft_cfg.run_dir) / "export"
    if not needs_sft_first(cfg, sft_export, explicit_init=False):
        return [PlannedStage(cfg.stage, cfg)]
    reason = (
        f"model.init_from={cfg.model.init_from} does not exist yet: it is the export of {sft_path}, "
        f"so the SFT stage runs first (run directory {sft_cfg.run_dir}; reused by the next run)"
    )
    return [PlannedStage("sft", sft_cfg, reason), PlannedStage("rl", cfg)]
