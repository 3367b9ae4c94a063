"""benchmarks/learning.py --quick: every stage of the study runs and the table has a row per variant."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


@pytest.mark.slow
def test_quick_study_prints_a_row_per_variant(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].lstrip("| ") for row in table[1:]] == [
        "SFT only",
        "SFT + GRPO (format + answer)",
        "SFT + GRPO (format + answer + AU grounding) = TAG",
        "vision-only baseline (timm)",
    ]
    for row in table[1:]:
        accuracy = float(row.split(" | ")[1].split()[0])
        assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "grpo_tag" / "export" / "tagfer_export.json").is_file()


def test_seed_tables_pool_faces_and_print_intervals_and_paired_differences(tmp_path, monkeypatch):
    """The --seeds summary from per-seed evaluation outputs (written here by hand: no training)."""
    import json

    from tagfer.metrics.bootstrap import bootstrap_scores, concat_tables, face_table
    from test_bootstrap import CLASSES, random_predictions

    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    written = {}
    for seed in (0, 1):
        for skill, variant in zip((0.3, 0.4, 0.5), module.REASONING):
            records = random_predictions(40, seed, skill)  # same faces and labels for every variant of a seed
            run_dir = tmp_path / f"seed{seed}" / "eval" / variant
            run_dir.mkdir(parents=True)
            (run_dir / "report.json").write_text(json.dumps({"datasets": {"synthetic/test": {"classes": list(CLASSES)}}}))
            (run_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
            written.setdefault(variant, {})[f"seed{seed}"] = face_table(records, CLASSES)
    tables, num_classes = module.seed_tables(tmp_path, [0, 1])
    assert num_classes == len(CLASSES) and len(tables["grpo_tag"]["face"]) == 80
    text = module.interval_tables(tables, num_classes, resamples=50)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [module.LABELS[v] for v in module.REASONING] + [
        "TAG − answer-only (paired)",
        "TAG − SFT (paired)",
    ]
    expected = bootstrap_scores(concat_tables(written["grpo_tag"]), num_classes, resamples=50)["accuracy"]
    assert f"{expected[0]:.3f} [{expected[1]:.3f}, {expected[2]:.3f}]" in rows[2]

    # a finished seed is reused: --seeds over these outputs starts no study
    def no_study(*args, **kwargs):
        raise AssertionError(f"a finished seed was studied again: {args}")

    monkeypatch.setattr("subprocess.Popen", no_study)
    args = module.parse_args(["--seeds", "0", "1", "--out", str(tmp_path), "--jobs", "2", "--resamples", "50"])
    assert module.run_seeds(args) == text


def test_seed_command_carries_the_study_settings_to_each_seed(tmp_path):
    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(["--seeds", "0", "3", "--out", str(tmp_path), "--test", "512", "--rl-steps", "90", "--set", "rl.beta=0.1"])
    command = module.seed_command(args, 3)
    flags = dict(zip(command[2::2], command[3::2]))
    assert flags["--seed"] == "3" and flags["--out"] == str(tmp_path / "seed3")
    assert flags["--test"] == "512" and flags["--rl-steps"] == "90" and flags["--set"] == "rl.beta=0.1"
    assert not module.seed_finished(tmp_path / "seed3")
