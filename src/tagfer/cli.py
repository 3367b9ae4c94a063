"""``tagfer``: one console script, one subcommand per stage.

Each stage package owns a light ``commands.py`` with ``register(subparsers)``; heavy imports (torch,
transformers) happen inside the handlers, so ``tagfer --help`` is instant. The scripts under ``src/``
call their command's ``*_main`` directly (``src/train.py`` → :func:`tagfer.training.commands.train_main`);
both ways run the handler through :func:`tagfer.cli_common.run_handler` (same logging, same exit codes).
"""

from __future__ import annotations

import argparse
import sys

from tagfer import __version__
from tagfer.cli_common import run_handler


def build_parser() -> argparse.ArgumentParser:
    from tagfer.au import commands as au_commands
    from tagfer.data import commands as data_commands
    from tagfer.evaluation import commands as evaluation_commands
    from tagfer.reasoning import commands as reasoning_commands
    from tagfer.training import commands as training_commands

    parser = argparse.ArgumentParser(
        prog="tagfer",
        description="TAG: facial expression recognition with AU-grounded reasoning (SFT + GRPO on Qwen-VL).",
    )
    parser.add_argument("--version", action="version", version=f"tagfer {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data_commands.register(subparsers)
    au_commands.register(subparsers)
    reasoning_commands.register(subparsers)
    training_commands.register(subparsers)
    evaluation_commands.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_handler(args.func, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
