"""``tagfer data``: inspect datasets and generate the synthetic face set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tagfer.cli_common import add_dry_run_argument, report_dry_run
from tagfer.core.config import DATASET_NAMES, DatasetSpec

_DEFAULTS = DatasetSpec()


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset tools: summarize, synthesize")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    summarize = sub.add_parser("summarize", help="split sizes and class counts of a dataset on disk")
    summarize.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    summarize.add_argument("--root", required=True, help="dataset root folder")
    summarize.add_argument("--layout", default=_DEFAULTS.layout, help="ferplus: auto | csv | folders; affectnet: auto | csv | npy")
    summarize.add_argument(
        "--label-mode",
        default=_DEFAULTS.label_mode,
        help="ferplus train split: majority | probability | crossentropy | multi_target",
    )
    summarize.add_argument("--num-classes", type=int, default=_DEFAULTS.num_classes, help="affectnet: 7 or 8")
    summarize.add_argument("--image-variant", default=_DEFAULTS.image_variant, help="rafdb: aligned | original")
    summarize.add_argument("--json", action="store_true", help="print one JSON object")
    add_dry_run_argument(summarize)
    summarize.set_defaults(func=_summarize)
    synthesize = sub.add_parser("synthesize", help="generate the synthetic face set (exact landmarks and AUs)")
    synthesize.add_argument("--out", required=True, help="dataset root to create (or reuse when compatible)")
    synthesize.add_argument("--seed", type=int, default=0)
    synthesize.add_argument("--train", type=int, default=512, help="training images (0: none)")
    synthesize.add_argument("--val", type=int, default=64, help="validation images (0: none)")
    synthesize.add_argument("--test", type=int, default=128, help="test images (0: none)")
    synthesize.add_argument("--image-size", type=int, default=_DEFAULTS.image_size, help="side of the square images in pixels")
    synthesize.add_argument(
        "--pose", default=_DEFAULTS.pose, choices=["random", "aligned"], help="random pose/scale/position, or aligned crops"
    )
    synthesize.add_argument(
        "--canvas", type=float, default=_DEFAULTS.canvas, help="random pose: draw the face this many times smaller (a scene)"
    )
    add_dry_run_argument(synthesize)
    synthesize.set_defaults(func=_synthesize)


def _reporting_layout_errors(command, args: argparse.Namespace) -> int:
    from tagfer.data.reader_base import DatasetLayoutError

    try:
        return command(args)
    except DatasetLayoutError as err:
        print(f"tagfer: dataset error: {err}", file=sys.stderr)
        return 2


def _summarize(args: argparse.Namespace) -> int:
    if args.dry_run:
        problems = [] if Path(args.root).is_dir() else [f"--root {args.root} does not exist"]
        return report_dry_run("data summarize", [f"{args.dataset} at {args.root}"], problems)
    from tagfer.data.summary import summarize_command

    return _reporting_layout_errors(summarize_command, args)


def _synthesize(args: argparse.Namespace) -> int:
    if args.dry_run:
        plan = [
            f"{args.train}/{args.val}/{args.test} train/val/test faces of {args.image_size} px ({args.pose} pose, seed {args.seed}) → {args.out}"
        ]
        return report_dry_run("data synthesize", plan, [])
    from tagfer.data.synthetic import synthesize_command

    return _reporting_layout_errors(synthesize_command, args)
