"""``tagfer traces``: build AU-grounded reasoning traces (template or teacher VLM)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagfer.cli_common import add_config_arguments, add_dry_run_argument, dataset_lines, missing_roots, report_dry_run


def register(subparsers) -> None:
    traces = subparsers.add_parser("traces", help="AU-grounded reasoning traces: build")
    sub = traces.add_subparsers(dest="traces_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write a trace JSONL from the AU cache (template) or a teacher VLM")
    build.add_argument("--source", choices=["template", "teacher"], default=None, help="overrides traces.source")
    add_config_arguments(build, default="sft.yaml")
    add_dry_run_argument(build)
    build.set_defaults(func=_build)


def _build(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run(args)
    from tagfer.reasoning.build import build_command

    return build_command(args)


def _dry_run(args: argparse.Namespace) -> int:
    from tagfer.core.config import load_config

    cfg = load_config(args.config, args.overrides)
    source = args.source or cfg.traces.source
    plan = [f"{source} traces for every data.train set (a set without `traces:` writes {cfg.traces.out})"]
    plan += dataset_lines(cfg.data.train, "data.train")
    problems = missing_roots(cfg.data.train, "data.train")
    teacher = cfg.traces.teacher.name_or_path
    if source == "teacher":
        plan.append(f"teacher: {teacher or '(not set)'}")
        if not (teacher and Path(teacher).exists()):
            problems.append(f"traces.teacher.name_or_path={teacher!r} does not exist; a local VLM directory")
    return report_dry_run(f"traces build --config {args.config} {' '.join(args.overrides)}".rstrip(), plan, problems)
