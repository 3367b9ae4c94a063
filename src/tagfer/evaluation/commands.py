"""``tagfer evaluate`` / ``python src/evaluate.py`` and ``tagfer predict`` / ``python src/predict.py``."""

from __future__ import annotations

import argparse

from tagfer.cli_common import add_config_arguments

EVALUATE_HELP = "accuracy and grounding faithfulness of an exported model on one or several test sets"
PREDICT_HELP = "grounded rationale + label for images; saves a PNG with predicted and detector boxes"


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("evaluate", help=EVALUATE_HELP, description=EVALUATE_HELP)
    add_config_arguments(evaluate, default="eval.yaml")
    evaluate.set_defaults(func=_evaluate)
    predict = subparsers.add_parser("predict", help=PREDICT_HELP, description=PREDICT_HELP)
    add_predict_arguments(predict)
    predict.set_defaults(func=_predict)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (a face each)")
    parser.add_argument("--checkpoint", required=True, help="exported model/adapter directory (SFT or RL export)")
    parser.add_argument(
        "--config",
        help="run config for model/AU settings (default: <checkpoint>/../config.yaml when present, else configs/eval.yaml)",
    )
    parser.add_argument(
        "--detector",
        default="builtin",
        choices=("builtin", "openface", "pyfeat"),
        help="AU detector for the reference boxes (default: builtin = dlib landmarks + landmark-geometry estimate)",
    )
    parser.add_argument("--external", help="openface / pyfeat: their output folder or CSV file for these images")
    parser.add_argument("--crop-fallback", action="store_true", help="builtin: fit landmarks on the whole image when dlib finds no face")
    parser.add_argument("--out", default="outputs/predict", help="folder for the annotated PNGs")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8, help="images per generation batch")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")


def _evaluate(args: argparse.Namespace) -> int:
    from tagfer.config import load_config

    cfg = load_config(args.config, args.overrides)  # fails fast, before the heavy imports
    from tagfer.evaluation.runner import run_evaluation

    run_evaluation(cfg)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tagfer.evaluation.predict import run_predict

    return run_predict(args)


def evaluate_main(argv: list[str]) -> int:
    from tagfer.cli import main

    return main(["evaluate", *argv])


def predict_main(argv: list[str]) -> int:
    from tagfer.cli import main

    return main(["predict", *argv])
