"""SFT and GRPO on 2 CPU processes (gloo) under DDP and FSDP2 match one process on the same global batch.

Each run is ``tests/distributed_worker.py`` in a subprocess (Lightning's launcher starts the second rank
by re-running the script), so no pytest process is forked. What "same global batch" means — ordered
sampling, equal SFT token counts per rank, fixed GRPO rollouts — is in the worker's docstring.
Tolerances: losses to 1e-4 relative; weights after Adam steps at lr 1e-2 (steps of ~1e-2) to 3e-4.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
pytestmark = pytest.mark.distributed


def run_worker(out_dir: Path, model_dir: Path, *args: str) -> dict:
    out = out_dir / "result.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(WORKER), "--model-dir", str(model_dir), "--out", str(out), *args]
    done = subprocess.run(command, cwd=out_dir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def single_lora(tiny_qwen2_vl_dir, tmp_path_factory) -> dict:
    return run_worker(tmp_path_factory.mktemp("single-lora"), tiny_qwen2_vl_dir, "--resume")


def assert_same_training(result: dict, reference: dict, stages=("sft", "grpo")) -> None:
    for stage in stages:
        assert result[f"{stage}_losses"] == pytest.approx(reference[f"{stage}_losses"], rel=1e-4, abs=1e-5), stage
        weights, expected = result[f"{stage}_weights"], reference[f"{stage}_weights"]
        assert set(weights) == set(expected) and expected, stage
        for name, value in expected.items():
            torch.testing.assert_close(weights[name], value, atol=3e-4, rtol=1e-3, msg=lambda m: f"{stage} {name}: {m}")
    moved = max((reference["sft_weights"][n] - reference["sft_initial"][n]).abs().max().item() for n in reference["sft_initial"])
    assert moved > 1e-2  # the compared updates are real, far above the tolerance


def test_ddp_matches_single_process(single_lora, tiny_qwen2_vl_dir, tmp_path):
    """With GRPO log-prob chunks of 3 rows (chunks cut through groups; DDP syncs on the last one only)."""
    result = run_worker(tmp_path, tiny_qwen2_vl_dir, "--strategy", "ddp", "--devices", "2", "--micro-batch", "3")
    assert_same_training(result, single_lora)
    assert torch.equal(result["greedy_ids"], single_lora["greedy_ids"])


def test_fsdp2_matches_single_process_and_resumes_and_exports(single_lora, tiny_qwen2_vl_dir, tmp_path):
    result = run_worker(tmp_path, tiny_qwen2_vl_dir, "--strategy", "fsdp", "--devices", "2", "--resume")
    assert_same_training(result, single_lora)
    # per decoder layer (2), per vision block (2), the vision tower and the root
    assert result["fsdp_units"] == 6
    # the rollout gathers every unit once for the whole generate, not once per token
    assert torch.equal(result["greedy_ids"], single_lora["greedy_ids"])
    assert result["generate_all_gathers"] == result["fsdp_units"]
    # sharded checkpoint (a directory of shards), resumed for one more step = one process straight on
    assert result["checkpoint_is_dir"]
    assert result["resumed_losses"] == pytest.approx(single_lora["resumed_losses"], rel=1e-4, abs=1e-5)
    for name, value in single_lora["resumed_weights"].items():
        torch.testing.assert_close(result["resumed_weights"][name], value, atol=3e-4, rtol=1e-3)
    # the export is a consolidated adapter equal to the gathered weights
    from fixtures_models import tiny_model_cfg
    from tagfer.models.loader import load_vlm

    export = tmp_path / "run-fsdp-2" / "export"
    model, _, _ = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False, checkpoint=export)
    exported = dict(model.named_parameters())
    for name, value in result["grpo_weights"].items():
        torch.testing.assert_close(exported[name], value)


def test_a_nan_reward_on_one_rank_skips_the_step_on_every_rank(tiny_qwen2_vl_dir, tmp_path):
    """Rank 1's first GRPO reward is NaN, rank 0's is finite: both ranks skip that step together (a rank
    going on alone would wait forever in the next collective), then both train on to ``max_steps``."""
    result = run_worker(tmp_path, tiny_qwen2_vl_dir, "--strategy", "ddp", "--devices", "2", "--stages", "grpo", "--nan-reward-rank", "1")
    mu = 2  # num_iterations of the worker's GRPO: 2 optimizer steps per batch; max_steps = 2 batches x mu
    assert result["grpo_skipped_and_steps"] == [(1, 2 * mu), (1, 2 * mu)]


@pytest.mark.slow
def test_fsdp2_full_finetune_matches_single_process(tiny_qwen2_vl_dir, tmp_path):
    """Full fine-tune (frozen vision tower: the rollout's image features serve every pass; a sharded
    frozen reference copy)."""
    (tmp_path / "single").mkdir()
    single = run_worker(tmp_path / "single", tiny_qwen2_vl_dir, "--finetune", "full")
    sharded = run_worker(tmp_path, tiny_qwen2_vl_dir, "--finetune", "full", "--strategy", "fsdp", "--devices", "2")
    assert_same_training(sharded, single)
