"""``tagfer data``: inspect datasets and generate the synthetic face set."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset tools: summarize, synthesize")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    summarize = sub.add_parser("summarize", help="split sizes and class counts of a dataset on disk")
    summarize.add_argument("--dataset", required=True, help="rafdb | ferplus | affectnet | imagefolder | synthetic")
    summarize.add_argument("--root", required=True, help="dataset root folder")
    summarize.add_argument("--json", action="store_true", help="print one JSON object")
    summarize.set_defaults(func=_summarize)
    synthesize = sub.add_parser("synthesize", help="generate the synthetic face set (exact landmarks and AUs)")
    synthesize.add_argument("--out", required=True)
    synthesize.add_argument("--seed", type=int, default=0)
    synthesize.set_defaults(func=_synthesize)


def _summarize(args: argparse.Namespace) -> int:
    from tagfer.data.summary import summarize_command

    return summarize_command(args)


def _synthesize(args: argparse.Namespace) -> int:
    from tagfer.data.synthetic import synthesize_command

    return synthesize_command(args)
