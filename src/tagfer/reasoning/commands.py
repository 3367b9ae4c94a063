"""``tagfer traces``: build AU-grounded reasoning traces (template or teacher VLM)."""

from __future__ import annotations

import argparse

from tagfer.cli_common import add_config_arguments


def register(subparsers) -> None:
    traces = subparsers.add_parser("traces", help="AU-grounded reasoning traces: build")
    sub = traces.add_subparsers(dest="traces_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write a trace JSONL from the AU cache (template) or a teacher VLM")
    build.add_argument("--source", choices=["template", "teacher"], default=None, help="overrides traces.source")
    add_config_arguments(build, default="sft.yaml")
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    from tagfer.reasoning.build import build_command

    return build_command(args)
