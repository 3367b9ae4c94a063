"""benchmarks/grpo_vs_trl.py: TRL scores with the project's reward callbacks; the script runs end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tagfer.core.config import RewardSpec
from tagfer.training.rewards import GRPOBatch, build_rewards, reward_matrix

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grpo_vs_trl.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("grpo_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trl_reward_functions_score_like_the_grpo_module():
    bench = load_benchmark()
    callbacks = build_rewards([RewardSpec(name=n, weight=1.0) for n in ("format", "answer", "au_grounding")])
    meta = {
        "a": {
            "label_name": "happiness",
            "au_prob": {"AU6": 0.9, "AU12": 0.8},
            "au_box": {"AU6": (10, 10, 40, 30), "AU12": (20, 60, 80, 90)},
            "image_extent": (1000, 1000),
        },
        "b": {"label_name": "sadness", "au_prob": {"AU15": 0.7}, "au_box": {"AU15": (20, 60, 80, 90)}, "image_extent": (1000, 1000)},
    }
    texts = ["<answer>happiness</answer>", "I think sad. <answer>sadness</answer>", "<answer>anger</answer>"]
    ids = ["a", "b", "b"]
    lengths = [5, 9, 4]
    expected = reward_matrix(
        callbacks,
        GRPOBatch.of(
            texts,
            label_name=[meta[i]["label_name"] for i in ids],
            au_prob=[meta[i]["au_prob"] for i in ids],
            au_box=[meta[i]["au_box"] for i in ids],
            image_extent=[meta[i]["image_extent"] for i in ids],
            id=ids,
            completion_length=lengths,
        ),
    )
    completions = [[{"role": "assistant", "content": text}] for text in texts]
    completion_ids = [[0] * n for n in lengths]
    for column, callback in enumerate(callbacks):
        got = bench.trl_reward(callback, meta)(prompts=[None] * 3, completions=completions, completion_ids=completion_ids, sample_id=ids)
        want = [None if value != value else float(value) for value in expected[:, column].tolist()]
        assert got == pytest.approx(want, nan_ok=True), callback.name


@pytest.mark.slow
def test_benchmark_prints_the_table_and_the_json_line(tmp_path):
    pytest.importorskip("trl")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "tiny", "--steps", "1", "--warmup", "1", "--group", "2", "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["trl_version"] and result["completions_per_s_ratio"] > 0 and result["peak_memory_ratio"] > 0
    assert any(line.startswith("| completions/s |") for line in lines)
