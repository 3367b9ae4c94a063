"""Argument helpers shared by the config-driven commands (train, demo, evaluate, traces)."""

from __future__ import annotations

import argparse
from pathlib import Path

import tagfer

#: The repository's configs/ folder (for an editable install); used when ./configs does not exist.
REPO_CONFIGS = Path(tagfer.__file__).resolve().parents[2] / "configs"


def default_config(name: str) -> str:
    """``configs/<name>`` under the working directory if present, else the repository's copy."""
    local = Path("configs") / name
    return str(local if local.is_file() or not (REPO_CONFIGS / name).is_file() else REPO_CONFIGS / name)


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--config",
        default=default_config(default) if default else None,
        required=default is None,
        help="YAML run config (composes its `defaults:`)" + (f"; default {default}" if default else ""),
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="OmegaConf dotlist overrides, e.g. rl.beta=0.0 data.batch_size=4, or a group choice: data=rafdb",
    )
