"""``stage: demo`` — the whole TAG pipeline on the embedded default, one command.

``python src/train.py --config configs/demo.yaml`` (or ``tagfer demo``) runs, with progress bars:

1. **data**: the synthetic face set (generated on first use, exact landmarks and AU ground truth);
2. **au_cache**: the AU cache of every split (``au.detector``, default the synthetic ground truth);
3. **traces**: template AU-grounded traces for the training split;
4. **sft**: supervised fine-tuning of the tiny offline Qwen2-VL (``demo.sft_epochs`` epochs);
5. **rl**: GRPO from the SFT export (``demo.rl_steps`` optimizer steps, format + answer + AU rewards);
6. **eval**: accuracy and grounding faithfulness of the SFT and the RL exports on the test split.

Every stage writes under ``run_dir`` (``outputs/demo``): ``sft/``, ``rl/`` and ``eval/`` run directories
with TensorBoard logs, checkpoints and exports. A rerun resumes: finished stages are reused (their
checkpoints and exports), unfinished ones continue from their last checkpoint. The last printed line is
``report: <path to report.json>``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from tagfer.core.config import save_config
from tagfer.core.run_lock import hold_run_dir

log = logging.getLogger(__name__)

STAGES = ("data", "au_cache", "traces", "sft", "rl", "eval")


def stage_config(cfg, stage: str, run_dir: Path, **overrides):
    """A copy of the demo config for one stage, validated against the schema."""
    merged = OmegaConf.merge(cfg, {"stage": stage, "run_dir": str(run_dir)}, overrides)
    OmegaConf.resolve(merged)
    return merged


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run_demo(cfg) -> Path | None:
    """Run the stages of ``demo.stages``; returns the path of the final report.json (None without ``eval``)."""
    unknown = [s for s in cfg.demo.stages if s not in STAGES]
    if unknown:
        raise ValueError(f"demo.stages has unknown stage(s) {unknown}; expected a subset of {list(STAGES)}")
    root = Path(cfg.run_dir)
    with hold_run_dir(root):  # a second demo into the same directory stops at once, naming this one
        return _run_stages(cfg, root)


def _run_stages(cfg, root: Path) -> Path | None:
    from tagfer.evaluation.runner import run_evaluation
    from tagfer.pipeline.splits import SplitReader
    from tagfer.reasoning.build import build_traces
    from tagfer.training.grpo_stage import run_grpo
    from tagfer.training.sft_stage import run_sft

    save_config(cfg, root)
    timings: dict[str, float] = {}
    specs = [spec for split in ("train", "val", "test") for spec in cfg.data[split]]
    sft_export, rl_export = root / "sft" / "export", root / "rl" / "export"
    reports: dict[str, Path] = {}
    splits = SplitReader(cfg.au)  # the data, au_cache and traces stages read each split once

    def timed(name, fn):
        _banner(f"{name} ({STAGES.index(name) + 1}/{len(STAGES)})")
        start = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - start
        return result

    if "data" in cfg.demo.stages:
        timed("data", lambda: [print(f"{s.name}/{s.split}: {len(splits.read(s).records)} faces under {s.root}") for s in specs])
    if "au_cache" in cfg.demo.stages:
        timed("au_cache", lambda: [splits.au_cache(s) for s in specs])
    if "traces" in cfg.demo.stages:
        timed("traces", lambda: build_traces(cfg, source="template", splits=splits))
    if "sft" in cfg.demo.stages:
        sft_cfg = stage_config(cfg, "sft", root / "sft", trainer={"max_epochs": cfg.demo.sft_epochs, "max_steps": -1})
        timed("sft", lambda: _unless_exported(sft_export, lambda: run_sft(sft_cfg, build_traces=build_traces)))
    if "rl" in cfg.demo.stages:
        rl_cfg = stage_config(
            cfg, "rl", root / "rl", model={"init_from": str(sft_export)}, trainer={"max_steps": cfg.demo.rl_steps, "max_epochs": -1}
        )
        timed("rl", lambda: _unless_exported(rl_export, lambda: run_grpo(rl_cfg)))
    if "eval" in cfg.demo.stages:

        def evaluate_both():
            for name, export in (("sft", sft_export), ("rl", rl_export)):
                if export.exists():
                    eval_cfg = stage_config(cfg, "eval", root / "eval" / name, eval={"checkpoint": str(export)})
                    reports[name] = Path(run_evaluation(eval_cfg)["report_path"])

        timed("eval", evaluate_both)

    _summary(root, reports, timings)
    if "eval" not in cfg.demo.stages:
        return None  # e.g. demo.stages=[data,au_cache,traces]: the shared inputs of several seeds, prepared once
    final = reports.get("rl") or reports.get("sft")
    if final is None:
        raise RuntimeError(
            "the demo's eval stage found no export to evaluate (demo.stages must include sft or rl, or their exports must exist)"
        )
    print(f"report: {final}", flush=True)
    return final


def _unless_exported(export: Path, train):
    """Skip a training stage whose export already exists (a finished earlier run of the demo)."""
    if export.exists():
        print(f"reusing {export} (delete it to train this stage again)")
        return export
    return train()


def _summary(root: Path, reports: dict[str, Path], timings: dict[str, float]) -> None:
    _banner("summary")
    for name, seconds in timings.items():
        print(f"  {name:<9} {seconds:7.1f} s")
    if (root / "sft").exists() or (root / "rl").exists():  # not after the shared stages alone
        print(f"TensorBoard:  tensorboard --logdir {root}  (sft/tb, rl/tb)")
        print(f"checkpoints:  {root / 'sft' / 'checkpoints'}, {root / 'rl' / 'checkpoints'}")
        print(f"exports:      {root / 'sft' / 'export'}, {root / 'rl' / 'export'}")
    for name, path in reports.items():
        for dataset, scores in json.loads(path.read_text())["datasets"].items():
            faith = scores.get("faithfulness") or {}
            chance = 1.0 / len(scores["classes"])
            print(
                f"{name.upper():>3} {dataset}: accuracy {scores['accuracy']:.3f} (chance {chance:.3f}), "
                f"mean class accuracy {scores['mean_class_accuracy']:.3f}, parse rate {scores['parse_rate']:.3f}, "
                f"mean IoU {_fmt(faith.get('mean_iou'))}, hallucination rate {_fmt(faith.get('hallucination_rate'))}"
            )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
