"""GRPOModule against TRL's semantics: the LR schedule's length, dapo under accumulation, dropout off; one parse per completion."""

from __future__ import annotations

import copy
import math
import sys

import lightning as L
import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.core import trace as trace_module
from tagfer.core.config import LoRAConfig, RLConfig
from tagfer.data.face_samples import face_samples
from tagfer.models.collate import PromptCollator
from tagfer.models.loader import load_vlm
from tagfer.models.policy import prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.training.grpo import combine_rewards, group_advantages
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.grpo_stage import module_settings
from tagfer.training.optim import optimizer_steps
from tagfer.training.rewards import build_rewards

G = 2


def policy_and_processor(model_dir, **model_overrides):
    cfg = tiny_model_cfg(model_dir, "qwen2_vl", **model_overrides)
    model, processor, _ = load_vlm(cfg, for_training=True)
    torch.manual_seed(0)
    policy = prepare_policy(model, cfg)
    for name, param in policy.named_parameters():  # LoRA B starts at 0: make the adapter matter
        if "lora_B" in name:
            param.data.normal_(0, 0.05)
    return policy, processor


def fixed_scores(n: int) -> torch.Tensor:
    """``[n, 3]`` rewards that differ within every group (so advantages are non-zero), the same in every run."""
    rows = torch.arange(n, dtype=torch.float32).reshape(-1, 1)
    return (rows.repeat(1, 3) % 2) + 0.25 * (rows % 3)


def fit(module, processor, *, samples: int, max_steps: int = -1, max_epochs: int = 1) -> None:
    loader = torch.utils.data.DataLoader(
        face_samples(samples), batch_size=1, collate_fn=PromptCollator(processor, ModelSpace.of(processor, "qwen2_vl"))
    )
    torch.manual_seed(1)
    L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(module, loader)


# ------------------------------------------------------------------------------- 1: LR schedule length
def test_optimizer_steps_count_iterations_and_accumulation():
    assert optimizer_steps(-1, 6, 1) == 6
    assert optimizer_steps(-1, 6, 2, num_iterations=2) == 24
    assert optimizer_steps(-1, 7, 1, accumulation=2) == 3
    assert optimizer_steps(10, 6, 5, num_iterations=2) == 10  # max_steps counts optimizer steps
    assert optimizer_steps(-1, 6, -1) == math.inf and optimizer_steps(-1, math.inf, 3) == math.inf
    with pytest.raises(ValueError):
        optimizer_steps(-1, 6, 1, accumulation=0)


@pytest.mark.parametrize(("iterations", "accumulation"), [(2, 1), (1, 2)])
def test_cosine_lr_decays_monotonically_to_its_floor_over_the_run(tiny_qwen2_vl_dir, iterations, accumulation):
    """An epoch-bounded run with μ = 2 (two optimizer steps per batch) or accumulation 2 (one per two
    batches): after warm-up the LR never rises and the schedule ends at its floor (0 for cosine)."""
    policy, processor = policy_and_processor(tiny_qwen2_vl_dir)
    cfg = RLConfig(num_generations=G, max_new_tokens=4, beta=0.0, num_iterations=iterations, gradient_accumulation_steps=accumulation)
    cfg.optim.lr, cfg.optim.scheduler, cfg.optim.warmup_ratio = 1e-3, "cosine", 0.2
    module = GRPOModule(policy, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000")
    module.score = lambda batch: fixed_scores(len(batch))
    used: list[float] = []
    original = module.configure_optimizers

    def recording():
        config = original()
        config["optimizer"].register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
        return config

    module.configure_optimizers = recording
    fit(module, processor, samples=6)
    steps = 6 * iterations // accumulation
    assert len(used) == steps
    warmup = int(0.2 * steps)
    after = used[warmup:]
    assert all(b <= a + 1e-15 for a, b in zip(after, after[1:])), used
    final = module.optimizers().optimizer.param_groups[0]["lr"]
    assert final == pytest.approx(0.0, abs=1e-12), used


# -------------------------------------------------------------------- 3: dapo under accumulation
def test_dapo_under_accumulation_normalises_by_the_tokens_of_all_micro_batches(tiny_qwen2_vl_dir):
    """Two rollout batches of different token counts accumulated into one step: the gradient is that of
    ``Σ_all −A·log π / (N_1 + N_2)`` (TRL: ``num_items_in_batch`` of the generation batch), not the mean
    of the two per-batch token means."""
    policy, processor = policy_and_processor(tiny_qwen2_vl_dir)
    initial = copy.deepcopy(policy)
    cfg = RLConfig(num_generations=G, max_new_tokens=6, beta=0.0, loss_type="dapo", gradient_accumulation_steps=2)
    module = GRPOModule(
        policy, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000", gradient_clip_val=None
    )
    module.score = lambda batch: fixed_scores(len(batch))
    module.configure_optimizers = lambda: {
        "optimizer": (sgd := torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=1.0)),
        "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0), "interval": "step"},
    }
    rollouts = []
    sample = module.rollout

    def recorded(inputs):
        rollout = sample(inputs)
        if rollouts:  # the second batch: two tokens per row, so N_1 ≠ N_2
            rollout.completions.mask[:, 2:] = 0
        rollouts.append(rollout)
        return rollout

    module.rollout = recorded
    fit(module, processor, samples=2, max_steps=1)
    counts = [float(r.completions.mask.sum()) for r in rollouts]
    assert len(rollouts) == 2 and counts[0] != counts[1]

    reference = GRPOModule(initial, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000")
    reference.train()
    total = 0.0
    for rollout in rollouts:
        rewards = combine_rewards(fixed_scores(len(rollout)), [1.0, 1.0, 1.0])
        advantages = group_advantages(rewards, G)
        logps, _ = reference.completion_logprobs(initial, rollout, slice(0, len(rollout)))
        total = total + (-(advantages.unsqueeze(1) * logps) * rollout.completions.mask).sum()
    (total / sum(counts)).backward()
    trained = dict(policy.named_parameters())
    moved = 0
    for name, param in initial.named_parameters():
        if param.requires_grad and param.grad is not None:
            expected = param.detach() - param.grad  # SGD, lr 1
            torch.testing.assert_close(trained[name].detach(), expected, atol=1e-6, rtol=1e-4, msg=name)
            moved += int(param.grad.abs().sum() > 0)
    assert moved > 0


# ------------------------------------------------------------------------------------ 5: dropout
def test_log_prob_passes_see_no_dropout(tiny_qwen2_vl_dir):
    """LoRA dropout 0.5 in the checkpoint's settings: in training mode two log-prob passes agree, and
    agree with the eval-mode network the rollout sampled from."""
    policy, processor = policy_and_processor(tiny_qwen2_vl_dir, lora=LoRAConfig(r=8, alpha=16, dropout=0.5))
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in policy.modules())
    cfg = RLConfig(num_generations=G, max_new_tokens=5, beta=0.0)
    module = GRPOModule(policy, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000")
    batch = PromptCollator(processor, ModelSpace.of(processor, "qwen2_vl"))(face_samples(2))
    rollout = module.rollout(batch["inputs"])
    rows = slice(0, len(rollout))
    module.eval()
    with torch.no_grad():
        sampled, _ = module.completion_logprobs(policy, rollout, rows)
    module.train()
    with torch.no_grad():
        first, _ = module.completion_logprobs(policy, rollout, rows)
        second, _ = module.completion_logprobs(policy, rollout, rows)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, sampled, rtol=0, atol=1e-6)


# --------------------------------------------------------------------- 6: one parse per completion
def test_a_step_parses_each_completion_once_and_every_reward_reads_that_parse(tiny_qwen2_vl_dir, monkeypatch):
    """Two GRPO steps of B = 1 prompt × G completions with the format, answer and au_grounding rewards:
    ``parse_trace`` runs exactly G times per step (wherever it is called from), and each reward is handed
    the very ParsedTrace objects those calls returned."""
    policy, processor = policy_and_processor(tiny_qwen2_vl_dir)
    cfg = RLConfig(num_generations=G, max_new_tokens=5, beta=0.0)
    parses: list = []
    original = trace_module.parse_trace

    def counting(text, **kwargs):
        parses.append(original(text, **kwargs))
        return parses[-1]

    for module_name, loaded in list(sys.modules.items()):  # every module that imported the parser by name
        if module_name.startswith("tagfer") and getattr(loaded, "parse_trace", None) is original:
            monkeypatch.setattr(loaded, "parse_trace", counting)

    class Observed:
        """Wraps a built reward: records the traces it is handed, then scores them."""

        def __init__(self, callback):
            self.callback, self.name, self.weight, self.traces = callback, callback.name, callback.weight, []

        def __call__(self, batch):
            self.traces.extend(batch.trace)
            return self.callback(batch)

    rewards = [Observed(callback) for callback in build_rewards(cfg.rewards)]
    assert [r.name for r in rewards] == ["format", "answer", "au_grounding"]
    module = GRPOModule(policy, processor, rewards, **module_settings(cfg), convention="norm1000")
    fit(module, processor, samples=2, max_steps=2)
    assert module.global_step == 2
    assert len(parses) == 2 * G  # 2 steps × B·G completions, one parse each
    for reward in rewards:
        assert len(reward.traces) == len(parses) and all(a is b for a, b in zip(reward.traces, parses)), reward.name
