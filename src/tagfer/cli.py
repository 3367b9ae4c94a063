"""``tagfer``: one console script, one subcommand per stage.

Each stage package owns a light ``commands.py`` with ``register(subparsers)``; heavy imports (torch,
transformers) happen inside the handlers, so ``tagfer --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from tagfer import __version__
from tagfer.config import ConfigError
from tagfer.logs import configure_logging
from tagfer.run_lock import PathHeldError

#: Exit code when a run directory, AU cache or trace file is held by another live process.
HELD_EXIT_CODE = 3


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
    configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"tagfer: configuration error: {err}", file=sys.stderr)
        return 2
    except PathHeldError as err:
        print(f"tagfer: {err}", file=sys.stderr)
        return HELD_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
