"""``tagfer train`` / ``python src/train.py`` and ``tagfer demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tagfer.cli_common import add_config_arguments, add_dry_run_argument, dataset_lines, report_dry_run
from tagfer.evaluation.commands import eval_problems, evaluated_model

TRAIN_HELP = "train the stage named by the config (sft, rl, baseline, demo)"
DEMO_HELP = "the whole pipeline on synthetic faces + a tiny offline Qwen2-VL (data → AU cache → traces → SFT → GRPO → eval)"


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    add_config_arguments(train)
    add_dry_run_argument(train)
    train.set_defaults(func=_run)
    demo = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    add_config_arguments(demo, default="demo.yaml")
    add_dry_run_argument(demo)
    demo.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tagfer.config import load_config
    from tagfer.training.stage_plan import plan_stages

    cfg = load_config(args.config, args.overrides)  # fails fast, before the heavy imports
    plan = plan_stages(args.config, args.overrides, cfg)
    if args.dry_run:
        return _dry_run(args, plan)
    from tagfer.logs import route_lightning_to_root
    from tagfer.training.run import run_stage

    route_lightning_to_root()
    for planned in plan:
        if planned.reason:
            print(f"\n=== {planned.stage} first: {planned.reason} ===", flush=True)
        code = run_stage(planned.cfg)
        if code:
            return code
    return 0


def _dry_run(args: argparse.Namespace, plan) -> int:
    """Print the resolved stage plan and what each stage still needs (nothing heavy is imported)."""
    from tagfer.training.preflight import stage_problems

    lines, problems, produced = [], [], ()
    for number, planned in enumerate(plan, 1):
        cfg = planned.cfg
        lines.append(f"{number}. stage {planned.stage} → {cfg.run_dir}" + (f"  ({planned.reason})" if planned.reason else ""))
        lines += [f"   {line}" for line in stage_lines(cfg)]
        found = eval_problems(cfg, produced) if cfg.stage == "eval" else stage_problems(cfg, produced)
        problems += [f"{planned.stage}: {problem}" for problem in found]
        produced += (str(Path(cfg.run_dir) / "export"),)
    return report_dry_run(f"train --config {args.config} {' '.join(args.overrides)}".rstrip(), lines, problems)


def stage_lines(cfg) -> list[str]:
    """What a stage of the plan will use: model, data, stage settings, hardware."""
    trainer = cfg.trainer
    length = f"max_steps {trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else f"max_epochs {trainer.max_epochs}"
    model = cfg.model
    lines = [f"model: {model.init_from or model.name_or_path} ({model.finetune}{', built if missing' if model.build_tiny and not model.init_from else ''})"]
    if cfg.stage == "eval":
        lines.append(f"evaluated: {evaluated_model(cfg)[1]}")
        lines += dataset_lines(cfg.eval.datasets or cfg.data.test, "eval.datasets" if cfg.eval.datasets else "data.test")
        return lines
    lines += dataset_lines(cfg.data.train, "data.train")
    if cfg.stage == "rl":
        rewards = ", ".join(f"{r.name}×{r.weight}" for r in cfg.rl.rewards)
        lines.append(f"GRPO: G={cfg.rl.num_generations}, batch {cfg.rl.batch_size}, beta {cfg.rl.beta}, loss {cfg.rl.loss_type}, rewards {rewards}")
    elif cfg.stage == "demo":
        lines.append(f"demo stages: {', '.join(cfg.demo.stages)} (SFT {cfg.demo.sft_epochs} epochs, GRPO {cfg.demo.rl_steps} steps)")
    elif cfg.stage == "baseline":
        lines.append(f"baseline: {cfg.baseline.model_name}")
    lines.append(
        f"trainer: {trainer.accelerator} × {trainer.devices} device(s) × {trainer.num_nodes} node(s), strategy {trainer.strategy}, "
        f"precision {trainer.precision}, {length}, resume {trainer.resume}"
    )
    return lines


def train_main(argv: list[str]) -> int:
    """``python src/train.py --config FILE [key=value ...]``."""
    from tagfer.cli import main

    return main(["train", *argv])


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
