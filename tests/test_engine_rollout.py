"""GRPO rollouts through an OpenAI-compatible engine (tagfer.training.engine_rollout) against the fake loopback
server (tests/fake_openai_server.py), and the truncated importance sampling weights: no vLLM needed."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.core.config import OptimConfig, RLConfig
from tagfer.data.face_samples import face_samples
from tagfer.models.collate import PromptCollator
from tagfer.models.generation import eos_token_ids, suppressed_token_ids
from tagfer.models.inputs import append_completions, repeat_inputs
from tagfer.models.loader import load_vlm
from tagfer.models.openai_endpoint import Answer, ChatClient, Completion, EndpointSettings
from tagfer.models.policy import prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.models.vllm_server import ServerSpec, launched_server
from tagfer.training.engine_rollout import VLLMRollouts, check_prompts, engine_completions
from tagfer.training.grpo import grpo_loss, token_logprobs, truncated_importance_weights
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.grpo_stage import grpo_objective, module_settings
from tagfer.training.rewards import build_rewards
from tagfer.training.rollout import RolloutSampling

FAKE = str(Path(__file__).with_name("fake_openai_server.py"))
G, TOKENS = 2, 6
SAMPLING = RolloutSampling(group_size=G, max_new_tokens=TOKENS, temperature=0.9, top_p=0.95, top_k=7)


@pytest.fixture
def setup(tiny_qwen2_vl_dir):
    cfg = tiny_model_cfg(tiny_qwen2_vl_dir, train_projector=False)
    model, processor, family = load_vlm(cfg, for_training=True)
    torch.manual_seed(0)
    policy = prepare_policy(model, cfg)
    space = ModelSpace.of(processor, family)
    collate = PromptCollator(processor, space)
    return policy, processor, collate


def answers_for(processor, policy, prompts, requests: int) -> list[dict]:
    """Per request: the collated prompt ids and G completions — one stops at EOS, one runs to max_new_tokens."""
    tokenizer = processor.tokenizer
    eos = eos_token_ids(policy, processor)[0]
    entries = []
    for k in range(requests):
        row = k % prompts["input_ids"].shape[0]
        prompt = prompts["input_ids"][row][prompts["attention_mask"][row].bool()].tolist()
        stop = tokenizer("<answer>happy</answer>", add_special_tokens=False)["input_ids"][: TOKENS - 1] + [eos]
        length = tokenizer("a b c d e f g h", add_special_tokens=False)["input_ids"][:TOKENS]
        choices = [
            {"token_ids": stop, "logprobs": [-0.5 - 0.1 * (i + k) for i in range(len(stop))], "finish_reason": "stop"},
            {"token_ids": length, "logprobs": [-1.0 - 0.1 * i for i in range(len(length))], "finish_reason": "length"},
        ]
        entries.append({"prompt_token_ids": prompt, "choices": choices})
    return entries


def fake_engine(server, policy, processor, collate, tmp_path) -> VLLMRollouts:
    settings = EndpointSettings(server.base_url, "policy", api_key=server.api_key, timeout_s=10, max_retries=0, concurrency=1)
    return VLLMRollouts(
        ChatClient(settings),
        tmp_path / "adapter",
        prompt=collate.prompt,
        sampling=SAMPLING,
        eos_ids=eos_token_ids(policy, processor),
        banned_token_ids=suppressed_token_ids(processor),
    )


def fake_server(tmp_path, entries):
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(entries))
    return launched_server(
        ServerSpec(python=sys.executable, model="base", entry=(FAKE,), args=("--answers", str(path)), startup_timeout_s=30, stop_grace_s=5)
    )


def sent(server) -> tuple[list[dict], list[dict]]:
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if "load_lora_adapter" not in line], [
        line["load_lora_adapter"] for line in lines if "load_lora_adapter" in line
    ]


def test_engine_rollout_sends_explicit_sampling_and_builds_the_hf_rollout(setup, tmp_path):
    policy, processor, collate = setup
    batch = collate(face_samples(2))
    prompts = batch["inputs"]
    entries = answers_for(processor, policy, prompts, 2)
    with fake_server(tmp_path, entries) as server:
        rollout = fake_engine(server, policy, processor, collate, tmp_path).rollout(policy, processor, prompts, batch["meta"]["image"])
        requests, pushes = sent(server)
    banned = suppressed_token_ids(processor)
    expected_request = {
        "model": "policy", "max_tokens": TOKENS, "temperature": 0.9, "top_p": 0.95, "top_k": 7, "repetition_penalty": 1.0, "min_p": 0.0, "n": G,
        "logprobs": True, "top_logprobs": 0, "return_token_ids": True, "return_tokens_as_token_ids": True,
        "logit_bias": {str(i): -100 for i in banned},
    }  # fmt: skip
    assert requests == [expected_request] * 2 and pushes == [] and banned
    rows = [choice for entry in entries for choice in entry["choices"]]
    pad = processor.tokenizer.pad_token_id
    width = max(len(c["token_ids"]) for c in rows)
    ids = torch.tensor([c["token_ids"] + [pad] * (width - len(c["token_ids"])) for c in rows])
    mask = torch.tensor([[1] * len(c["token_ids"]) + [0] * (width - len(c["token_ids"])) for c in rows])
    logps = torch.tensor([c["logprobs"] + [0.0] * (width - len(c["logprobs"])) for c in rows])
    assert torch.equal(rollout.completions.ids, ids) and torch.equal(rollout.completions.mask, mask)
    assert rollout.completions.truncated.tolist() == [False, True, False, True]
    assert rollout.completions.texts == processor.batch_decode(ids, skip_special_tokens=True)
    torch.testing.assert_close(rollout.engine_logps, logps)
    # the policy scores exactly these tokens, as on the plain HF path (prompt rows repeated, completions appended)
    plain = append_completions(repeat_inputs(prompts, G), ids, mask)
    module = GRPOModule(policy, processor, [], **{**module_settings(RLConfig()), "sampling": SAMPLING}, convention="norm1000")
    policy.eval()
    with torch.no_grad():
        expected = token_logprobs(policy(**plain).logits[:, -width - 1 : -1], ids, SAMPLING.temperature)
        got, _ = module.completion_logprobs(policy, rollout, slice(0, len(rollout)))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_engine_answers_are_checked():
    processor = type(
        "P", (), {"tokenizer": type("T", (), {"pad_token_id": 0})(), "batch_decode": staticmethod(lambda ids, **_: ["" for _ in ids])}
    )()
    stopped_without_eos = Answer((Completion("", False, (5, 6), (-1.0, -1.0)),), (1, 2))
    with pytest.raises(ValueError, match="stopped without an EOS"):
        engine_completions([stopped_without_eos], processor, [9])
    with pytest.raises(ValueError, match="without token ids or log-probs"):
        engine_completions([Answer((Completion("", True, (5, 6), None),), (1, 2))], processor, [9])
    prompts = {"input_ids": torch.tensor([[0, 1, 2]]), "attention_mask": torch.tensor([[0, 1, 1]])}
    check_prompts([Answer((), (1, 2))], prompts)
    with pytest.raises(ValueError, match="not the collated prompt"):
        check_prompts([Answer((), (1, 2, 3))], prompts)


def test_grpo_pushes_the_adapter_before_the_first_rollout_and_after_each_optimizer_step(setup, tmp_path):
    """Two GRPO steps with engine rollouts: two pushes (start, after step 1), the engine/policy gap logged."""
    policy, processor, collate = setup
    samples = face_samples(2)
    loader = torch.utils.data.DataLoader(samples, batch_size=1, collate_fn=collate)
    prompts = [collate([sample])["inputs"] for sample in samples]
    entries = [answers_for(processor, policy, p, 1)[0] for p in prompts]
    rl = RLConfig(optim=OptimConfig(lr=1e-3, scheduler="constant", warmup_ratio=0.0), num_generations=G, max_new_tokens=TOKENS, beta=0.0)
    with fake_server(tmp_path, entries) as server:
        module = GRPOModule(
            policy, processor, build_rewards([{"name": "format"}, {"name": "answer"}]), **{**module_settings(rl), "sampling": SAMPLING},
            convention="norm1000", engine=fake_engine(server, policy, processor, collate, tmp_path), importance_sampling_cap=2.0,
        )  # fmt: skip
        trainer = L.Trainer(
            accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )
        trainer.fit(module, loader)
        requests, pushes = sent(server)
    assert len(requests) == 2 and module.global_step == 2
    assert [push["lora_name"] for push in pushes] == ["policy", "policy"] and all(push["load_inplace"] for push in pushes)
    assert pushes[0]["lora_path"] != pushes[1]["lora_path"]  # a fresh path per push: vLLM keys its prefix cache by it
    assert [str(path.parent.resolve()) for path in (tmp_path / "adapter").glob("*/adapter_config.json")] == [pushes[1]["lora_path"]]
    metrics = trainer.logged_metrics
    assert metrics["train/engine_logprob_diff_max"] >= metrics["train/engine_logprob_diff_mean"] > 0


def test_truncated_importance_weights_match_the_formula():
    torch.manual_seed(0)
    old, engine = torch.randn(3, 5) - 2, torch.randn(3, 5) - 2
    cap = 2.0
    expected = torch.tensor([[min(math.exp(o - e), cap) for o, e in zip(ro.tolist(), re.tolist())] for ro, re in zip(old, engine)])
    torch.testing.assert_close(truncated_importance_weights(old, engine, cap), expected)
    assert (truncated_importance_weights(old, engine, cap) <= cap).all()
    with pytest.raises(ValueError):
        truncated_importance_weights(old, engine, 0.0)


def test_importance_weights_scale_the_policy_term_not_the_kl():
    torch.manual_seed(1)
    logps = (torch.randn(2, 4) - 1).requires_grad_()
    old, ref, advantages = logps.detach() + 0.05 * torch.randn(2, 4), logps.detach() + 0.1, torch.tensor([1.0, -0.5])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    weights = torch.rand(2, 4) * 2
    beta = 0.1
    loss, _ = grpo_loss(
        logps, old, ref, advantages, mask, grpo_objective(RLConfig(loss_type="bnpo", beta=beta)), importance_weights=weights
    )
    total = 0.0
    for i in range(2):
        for t in range(4):
            if mask[i, t]:
                ratio = math.exp(logps[i, t].item() - old[i, t].item())
                a = advantages[i].item()
                policy_term = -min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
                delta = ref[i, t].item() - logps[i, t].item()
                total += weights[i, t].item() * policy_term + beta * (math.exp(delta) - delta - 1)
    assert loss.item() == pytest.approx(total / mask.sum().item(), rel=1e-5)


def test_preflight_refuses_what_vllm_rollouts_cannot_serve(configs_dir, tmp_path):
    from tagfer.core.config import load_config
    from tagfer.training.preflight import rollout_engine_problems

    def problems(*overrides):
        return rollout_engine_problems(load_config(configs_dir / "rl.yaml", ["engine.backend=vllm", *overrides]))

    full, lora = problems("model.finetune=full"), problems("model.finetune=lora", "model.train_projector=true")
    assert any("needs model.finetune=lora" in p for p in full) and any("model.train_projector=false" in p for p in lora)
    assert any("engine.vllm.url" in p for p in problems("model.finetune=lora", "trainer.devices=2"))
    assert any("trainer.strategy=fsdp" in p for p in problems("model.finetune=lora", "trainer.strategy=fsdp"))
    python = tmp_path / "python"
    python.write_text("")
    ok = ("model.finetune=lora", "model.train_projector=false", f"engine.vllm.python={python}")
    assert problems(*ok) == [] and problems(*ok, "trainer.devices=2", "engine.vllm.url=http://127.0.0.1:8000/v1") == []
