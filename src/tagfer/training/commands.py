"""``python src/train.py`` / ``tagfer train`` and ``tagfer demo``: the one path from the command line to
``Trainer.fit``, read top to bottom:

1. :func:`train_main` (``src/train.py``) or ``tagfer train`` parses ``--config FILE [key=value ...]``;
2. :func:`train` loads the config and plans the stages (:func:`tagfer.training.stage_plan.plan_stages`:
   ``rl`` without an SFT export trains SFT first); ``--dry-run`` prints the plan and stops;
3. :func:`run_recipe` calls the stage's recipe — :func:`~tagfer.training.sft_stage.run_sft`,
   :func:`~tagfer.training.grpo_stage.run_grpo`, :func:`~tagfer.training.baseline.run_baseline`,
   :func:`~tagfer.evaluation.runner.run_evaluation` or :func:`~tagfer.demo.run_demo` — which builds the data,
   model, module and trainer, fits and exports (:mod:`tagfer.training.stage_run`).

Exit codes (:func:`tagfer.cli_common.run_handler`): 0, 2 configuration error, 3 a path held by another run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tagfer.cli_common import add_config_arguments, add_dry_run_argument, dataset_lines, report_dry_run, run_handler
from tagfer.evaluation.commands import eval_problems, evaluated_model

log = logging.getLogger(__name__)

TRAIN_HELP = "train the stage named by the config (sft, rl, baseline, demo)"
DEMO_HELP = "the whole pipeline on synthetic faces + a tiny offline Qwen2-VL (data → AU cache → traces → SFT → GRPO → eval)"


def register(subparsers) -> None:
    train_parser = subparsers.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    add_train_arguments(train_parser)
    train_parser.set_defaults(func=train)
    demo = subparsers.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP)
    add_config_arguments(demo, default="demo.yaml")
    add_dry_run_argument(demo)
    demo.set_defaults(func=train)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    add_dry_run_argument(parser)


def train_main(argv: list[str]) -> int:
    """``python src/train.py --config FILE [key=value ...] [--dry-run]``."""
    parser = argparse.ArgumentParser(prog="src/train.py", description=TRAIN_HELP)
    add_train_arguments(parser)
    return run_handler(train, parser.parse_args(argv))


def train(args: argparse.Namespace) -> int:
    """Load the config, plan the stages, run each stage's recipe in order (or print the plan)."""
    from tagfer.core.config import load_config
    from tagfer.training.stage_plan import plan_stages

    cfg = load_config(args.config, args.overrides)  # fails fast, before the heavy imports
    plan = plan_stages(args.config, args.overrides, cfg)
    if args.dry_run:
        return _dry_run(args, plan)
    from tagfer.core.logs import route_lightning_to_root

    route_lightning_to_root()
    for planned in plan:
        if planned.reason:
            print(f"\n=== {planned.stage} first: {planned.reason} ===", flush=True)
        run_recipe(planned.cfg)
    return 0


def run_recipe(cfg) -> None:
    """Run the recipe of ``cfg.stage`` (``sft``, ``rl``, ``baseline``, ``eval`` or ``demo``).

    ``trainer.num_threads`` (when set) fixes torch's intra-op thread count for the whole run first.
    """
    import torch

    if cfg.trainer.num_threads is not None:
        torch.set_num_threads(cfg.trainer.num_threads)
        log.info("torch threads: %d", cfg.trainer.num_threads)
    if cfg.stage == "sft":
        from tagfer.reasoning.build import build_traces
        from tagfer.training.sft_stage import run_sft

        run_sft(cfg, build_traces=build_traces)
    elif cfg.stage == "rl":
        from tagfer.training.grpo_stage import run_grpo

        run_grpo(cfg)
    elif cfg.stage == "baseline":
        from tagfer.training.baseline import run_baseline

        run_baseline(cfg)
    elif cfg.stage == "eval":
        from tagfer.evaluation.runner import run_evaluation

        run_evaluation(cfg)
    elif cfg.stage == "demo":
        from tagfer.demo import run_demo

        run_demo(cfg)
    else:  # load_config already rejects unknown stages
        raise ValueError(f"unknown stage {cfg.stage!r}")


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
    lines = [
        f"model: {model.init_from or model.name_or_path} ({model.finetune}{', built if missing' if model.build_tiny and not model.init_from else ''})"
    ]
    if cfg.stage == "eval":
        lines.append(f"evaluated: {evaluated_model(cfg)[1]}")
        lines += dataset_lines(cfg.eval.datasets or cfg.data.test, "eval.datasets" if cfg.eval.datasets else "data.test")
        return lines
    lines += dataset_lines(cfg.data.train, "data.train")
    if cfg.stage == "rl":
        rewards = ", ".join(f"{r.name}×{r.weight}" for r in cfg.rl.rewards)
        lines.append(
            f"GRPO: G={cfg.rl.num_generations}, batch {cfg.rl.batch_size}, beta {cfg.rl.beta}, loss {cfg.rl.loss_type}, rewards {rewards}"
        )
    elif cfg.stage == "demo":
        lines.append(f"demo stages: {', '.join(cfg.demo.stages)} (SFT {cfg.demo.sft_epochs} epochs, GRPO {cfg.demo.rl_steps} steps)")
    elif cfg.stage == "baseline":
        lines.append(f"baseline: {cfg.baseline.model_name}")
    lines.append(
        f"trainer: {trainer.accelerator} × {trainer.devices} device(s) × {trainer.num_nodes} node(s), strategy {trainer.strategy}, "
        f"precision {trainer.precision}, {length}, resume {trainer.resume}"
    )
    return lines


if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
