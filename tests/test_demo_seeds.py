"""benchmarks/demo_seeds.py: the SFT-vs-RL table and its pass criteria from per-seed demo reports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_seeds.py"


def load():
    spec = importlib.util.spec_from_file_location("demo_seeds_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_report(path: Path, accuracy: float, hallucination: float) -> None:
    path.mkdir(parents=True)
    dataset = {"accuracy": accuracy, "parse_rate": 0.9, "faithfulness": {"mean_iou": 0.5, "hallucination_rate": hallucination}}
    (path / "report.json").write_text(json.dumps({"datasets": {"synthetic/test": dataset}}))


def test_rows_apply_the_tolerance_and_the_strict_hallucination_drop(tmp_path):
    module = load()
    cases = {0: ((0.30, 0.60), (0.285, 0.55)), 1: ((0.30, 0.60), (0.27, 0.50)), 2: ((0.30, 0.60), (0.35, 0.60))}
    for seed, (sft, rl) in cases.items():
        write_report(tmp_path / f"seed{seed}" / "eval" / "sft", *sft)
        write_report(tmp_path / f"seed{seed}" / "eval" / "rl", *rl)
    rows = module.seed_rows(tmp_path, [0, 1, 2], 0.02)
    assert [(r["accuracy_kept"], r["hallucination_lower"]) for r in rows] == [(True, True), (False, True), (True, False)]
    text = module.table(rows)
    assert "| 0 | 0.300 → 0.285 |" in text and text.endswith("in 1 of 3 seeds.")
    command = module.demo_command(tmp_path, 3, ["rl.beta=0.1"])
    assert command[-1] == "rl.beta=0.1" and f"run_dir={tmp_path / 'seed3'}" in command and "seed=3" in command
