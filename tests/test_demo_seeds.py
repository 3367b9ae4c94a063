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
    args = module.parse_args(["--seeds", "3", "4", "--out", str(tmp_path), "--set", "rl.beta=0.1", "--set", "demo.stages=[rl,eval]"])
    shared, per_seed = module.planned_commands(args)
    # the shared stages run once (first seed), with the data overrides but not the per-seed stages
    (shared_command,) = shared.values()
    assert f"run_dir={tmp_path / 'shared'}" in shared_command and shared_command[-1] == "demo.stages=[data,au_cache,traces]"
    assert "rl.beta=0.1" in shared_command and "demo.stages=[rl,eval]" not in shared_command
    # each seed: its own run directory and seed, the --set overrides last (a demo.stages given there wins)
    assert sorted(per_seed) == [3, 4]
    command = per_seed[3]
    assert f"run_dir={tmp_path / 'seed3'}" in command and "seed=3" in command
    assert command[-3:] == ["demo.stages=[sft,rl,eval]", "rl.beta=0.1", "demo.stages=[rl,eval]"]
