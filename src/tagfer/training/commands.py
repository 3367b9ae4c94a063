"""``tagfer train`` / ``python src/train.py`` and ``tagfer demo``."""

from __future__ import annotations

import argparse
import sys

from tagfer.cli_common import add_config_arguments

TRAIN_HELP = "train the stage named by the config (sft, rl, baseline, demo)"
DEMO_HELP = "the whole pipeline on synthetic faces + a tiny offline Qwen2-VL (data → AU cache → traces → SFT → GRPO → eval)"


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    add_config_arguments(train)
    train.set_defaults(func=_run)
    demo = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    add_config_arguments(demo, default="demo.yaml")
    demo.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tagfer.config import load_config

    cfg = load_config(args.config, args.overrides)  # fails fast, before the heavy imports
    from tagfer.training.run import run_stage

    return run_stage(cfg)


def train_main(argv: list[str]) -> int:
    """``python src/train.py --config FILE [key=value ...]``."""
    from tagfer.cli import main

    return main(["train", *argv])


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
