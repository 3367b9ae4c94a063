"""``tagfer evaluate`` / ``python src/evaluate.py`` and ``tagfer predict`` / ``python src/predict.py``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tagfer.cli_common import (
    add_config_arguments,
    add_dry_run_argument,
    dataset_lines,
    default_config,
    missing_roots,
    report_dry_run,
    run_handler,
)

EVALUATE_HELP = "accuracy and grounding faithfulness of an exported model on one or several test sets"
PREDICT_HELP = "grounded rationale + label for images; saves a PNG with predicted and detector boxes"


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("evaluate", help=EVALUATE_HELP, description=EVALUATE_HELP)
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)
    predict = subparsers.add_parser("predict", help=PREDICT_HELP, description=PREDICT_HELP)
    add_predict_arguments(predict)
    add_dry_run_argument(predict)
    predict.set_defaults(func=_predict)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, default="eval.yaml")
    add_dry_run_argument(parser)


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
    from tagfer.core.config import load_config

    cfg = load_config(args.config, args.overrides)  # fails fast, before the heavy imports
    if args.dry_run:
        plan = [f"evaluate {evaluated_model(cfg)[1]} → {cfg.eval.out_dir or cfg.run_dir}"]
        plan += dataset_lines(cfg.eval.datasets or cfg.data.test, "eval.datasets" if cfg.eval.datasets else "data.test")
        return report_dry_run(f"evaluate --config {args.config} {' '.join(args.overrides)}".rstrip(), plan, eval_problems(cfg))
    from tagfer.core.logs import route_lightning_to_root
    from tagfer.evaluation.runner import run_evaluation

    route_lightning_to_root()
    run_evaluation(cfg)
    return 0


def eval_problems(cfg, produced: tuple[str, ...] = ()) -> list[str]:
    """What an evaluation of ``cfg`` needs that is missing: the checkpoint and the test sets' roots
    (``produced``: paths earlier stages of a plan create)."""
    key, checkpoint = evaluated_model(cfg)
    problems = []
    if not Path(checkpoint).exists() and str(checkpoint) not in produced:
        problems.append(f"{key}={checkpoint!r} does not exist; point it at an export (<run_dir>/export)")
    key = "eval.datasets" if cfg.eval.datasets else "data.test"
    return problems + missing_roots(cfg.eval.datasets or cfg.data.test, key)


def evaluated_model(cfg) -> tuple[str, str]:
    """``(key, path)`` of the model an evaluation loads: ``eval.checkpoint``, else ``model.init_from``,
    else ``model.name_or_path``."""
    for key in ("eval.checkpoint", "model.init_from", "model.name_or_path"):
        section, name = key.split(".")
        if cfg[section][name]:
            return key, str(cfg[section][name])
    return "model.name_or_path", ""


def predict_config_path(args: argparse.Namespace) -> str:
    """``--config``, else ``<checkpoint>/../config.yaml`` when it exists, else ``configs/eval.yaml``."""
    if args.config:
        return args.config
    saved = Path(args.checkpoint).resolve().parent / "config.yaml"
    return str(saved) if saved.is_file() else default_config("eval.yaml")


def _predict(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _predict_dry_run(args)
    from tagfer.core.logs import route_lightning_to_root
    from tagfer.evaluation.predict import run_predict

    route_lightning_to_root()
    return run_predict(args, predict_config_path(args))


def _predict_dry_run(args: argparse.Namespace) -> int:
    from tagfer.core.config import load_config

    config = predict_config_path(args)
    load_config(config)  # validated like a real run
    plan = [
        f"{len(args.images)} image(s) → {args.out} (annotated PNGs){', JSON lines' if args.json else ''}",
        f"checkpoint {args.checkpoint}, config {config}, detector {args.detector}",
    ]
    problems = [f"image {image} does not exist" for image in args.images if not Path(image).is_file()]
    if not Path(args.checkpoint).is_dir():
        problems.append(f"--checkpoint {args.checkpoint} does not exist; point it at an export (<run_dir>/export)")
    if args.detector in ("openface", "pyfeat") and not (args.external and Path(args.external).exists()):
        problems.append(f"--external {args.external} does not exist; the {args.detector} output for these images")
    return report_dry_run(f"predict {' '.join(args.images)}", plan, problems)


def evaluate_main(argv: list[str]) -> int:
    """``python src/evaluate.py [--config FILE] [key=value ...] [--dry-run]``."""
    parser = argparse.ArgumentParser(prog="src/evaluate.py", description=EVALUATE_HELP)
    add_evaluate_arguments(parser)
    return run_handler(_evaluate, parser.parse_args(argv))


def predict_main(argv: list[str]) -> int:
    """``python src/predict.py IMAGE... --checkpoint DIR [--dry-run]``."""
    parser = argparse.ArgumentParser(prog="src/predict.py", description=PREDICT_HELP)
    add_predict_arguments(parser)
    add_dry_run_argument(parser)
    return run_handler(_predict, parser.parse_args(argv))
