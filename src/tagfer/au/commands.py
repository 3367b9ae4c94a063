"""``tagfer au-cache``: build and inspect the AU cache."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    cache = subparsers.add_parser("au-cache", help="AU cache: build (detect AUs for a dataset), show one entry")
    sub = cache.add_subparsers(dest="au_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="run an AU detector over a dataset and cache the results")
    build.add_argument("--dataset", required=True)
    build.add_argument("--root", required=True)
    build.add_argument("--detector", required=True, help="builtin | dataset_landmarks | openface | pyfeat | synthetic")
    build.add_argument("--out", required=True, help="cache directory")
    build.set_defaults(func=_build)
    show = sub.add_parser("show", help="print one cached entry as JSON")
    show.add_argument("--cache", required=True)
    show.add_argument("--id", required=True, help="image path relative to the dataset root")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)


def _build(args: argparse.Namespace) -> int:
    from tagfer.au.build import build_command

    return build_command(args)


def _show(args: argparse.Namespace) -> int:
    from tagfer.au.cache import show_command

    return show_command(args)
