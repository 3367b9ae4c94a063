"""What every command shares: argument helpers of the config-driven commands (train, demo, evaluate,
traces) and :func:`run_handler`, which gives every entry point (``tagfer``, ``src/train.py``, ...) the same
logging and exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import tagfer
from tagfer.core.config import ConfigError
from tagfer.core.logs import configure_logging
from tagfer.core.run_lock import PathHeldError

#: Exit code of a configuration error.
CONFIG_EXIT_CODE = 2
#: Exit code when a run directory, AU cache or trace file is held by another live process.
HELD_EXIT_CODE = 3

#: The repository's configs/ folder (for an editable install); used when ./configs does not exist.
REPO_CONFIGS = Path(tagfer.__file__).resolve().parents[2] / "configs"


def run_handler(handler: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, *, verbose: bool = False) -> int:
    """Configure logging and run a command's handler; returns the exit code: the handler's (None → 0),
    :data:`CONFIG_EXIT_CODE` on a configuration error, :data:`HELD_EXIT_CODE` when a path is held."""
    configure_logging(verbose)
    try:
        return int(handler(args) or 0)
    except ConfigError as err:
        print(f"tagfer: configuration error: {err}", file=sys.stderr)
        return CONFIG_EXIT_CODE
    except PathHeldError as err:
        print(f"tagfer: {err}", file=sys.stderr)
        return HELD_EXIT_CODE


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


def add_dry_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and validate the configuration and print what would run; inputs that must exist are "
        "reported, not required; loads no model and writes nothing",
    )


def report_dry_run(command: str, plan: list[str], problems: list[str]) -> int:
    """Print a dry run: the plan, then what a real run would still need; returns the exit code 0."""
    print(f"dry run: {command}")
    for line in plan:
        print(f"  {line}")
    if problems:
        print(f"{len(problems)} input(s) a real run needs first:")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("inputs: all present")
    return 0


def dataset_lines(specs, key: str) -> list[str]:
    """One line per dataset spec of a config list (``data.train`` …) for a dry run."""
    return [
        f"{key}[{i}]: {spec.name}/{spec.split} at {spec.root}" + (f", traces {spec.traces}" if spec.traces else "")
        for i, spec in enumerate(specs)
    ]


def missing_roots(specs, key: str) -> list[str]:
    """Dataset roots that do not exist (the synthetic reader generates its own)."""
    return [
        f"{key}[{i}].root={spec.root!r} does not exist"
        for i, spec in enumerate(specs)
        if spec.name != "synthetic" and not Path(spec.root).is_dir()
    ]
