"""GRPO rollouts: images encoded once per group give exactly the plain path's logits and completions."""

from __future__ import annotations

import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.core.config import RLConfig
from tagfer.data.face_samples import face_samples
from tagfer.models.collate import PromptCollator
from tagfer.models.image_features import causal_lm, encode_images, vision_is_frozen, with_image_features
from tagfer.models.inputs import append_completions, repeat_inputs, select_rows
from tagfer.models.loader import load_vlm
from tagfer.models.policy import prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.grpo_stage import module_settings
from tagfer.training.rewards import build_rewards
from tagfer.training.rollout import generate_rollout

G = 3


def policy_and_batch(model_dir, family: str, *, train_projector: bool = True, samples: int = 2):
    cfg = tiny_model_cfg(model_dir, family, train_projector=train_projector)
    model, processor, family_name = load_vlm(cfg, for_training=True)
    torch.manual_seed(0)
    policy = prepare_policy(model, cfg)
    for name, param in policy.named_parameters():  # LoRA B starts at 0: make the adapter matter
        if "lora_B" in name:
            param.data.normal_(0, 0.05)
    batch = PromptCollator(processor, ModelSpace.of(processor, family_name))(face_samples(samples))
    return policy, processor, batch


def count_vision_images(model):
    """A hook list that records how many images each vision-tower forward encodes."""
    calls: list[int] = []
    visual = causal_lm(model).model.visual
    handle = visual.register_forward_hook(lambda module, args, kwargs, out: calls.append(len(kwargs["grid_thw"])), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_shared_image_features_give_the_plain_logits(family, request):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    policy, _, batch = policy_and_batch(model_dir, family)
    prompts = batch["inputs"]
    plain = repeat_inputs(prompts, G)
    with torch.no_grad():
        expected = policy(**plain).logits
        features = encode_images(policy, prompts["pixel_values"], prompts["image_grid_thw"])
        tokens = repeat_inputs({k: v for k, v in prompts.items() if k != "pixel_values"}, G)
        shared = policy(**with_image_features(tokens, features, [row // G for row in range(len(tokens["input_ids"]))])).logits
    torch.testing.assert_close(shared, expected, rtol=0, atol=1e-6)


def test_rollout_encodes_each_image_once_and_generates_what_the_plain_path_generates(tiny_qwen2_vl_dir):
    policy, processor, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl")
    policy.eval()
    calls, handle = count_vision_images(policy)
    try:
        shared = generate_rollout(policy, processor, batch["inputs"], G, max_new_tokens=8, do_sample=False)
        encoded_shared = sum(calls)
        calls.clear()
        plain = generate_rollout(policy, processor, batch["inputs"], G, max_new_tokens=8, do_sample=False, share_images=False)
        encoded_plain = sum(calls)
    finally:
        handle.remove()
    assert (encoded_shared, encoded_plain) == (2, 2 * G)
    assert torch.equal(shared.completions.ids, plain.completions.ids)
    assert shared.completions.texts == plain.completions.texts
    assert "pixel_values" not in shared.sequences and shared.sequences["input_ids"].shape[0] == 2 * G


@pytest.mark.parametrize("train_projector", [True, False])
def test_rollout_passes_match_the_plain_path_in_any_row_chunk(tiny_qwen2_vl_dir, train_projector):
    """Chunks that cut through groups; features reused (frozen vision) or encoded per chunk (trainable
    projector, with the gradient reaching the projector)."""
    policy, processor, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl", train_projector=train_projector, samples=3)
    policy.eval()
    rollout = generate_rollout(policy, processor, batch["inputs"], G, max_new_tokens=5, do_sample=False)
    assert (rollout.features is not None) == (not train_projector) == vision_is_frozen(policy)
    plain = append_completions(repeat_inputs(batch["inputs"], G), rollout.completions.ids, rollout.completions.mask)
    for rows in (slice(0, 4), slice(4, 9)):
        expected = policy(**select_rows(plain, rows)).logits
        got = policy(**rollout.model_inputs(policy, rows)).logits
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    if train_projector:
        got.sum().backward()
        merger = [p for n, p in policy.named_parameters() if "merger" in n and p.requires_grad]
        assert merger and all(p.grad is not None and p.grad.abs().sum() > 0 for p in merger)


def test_select_rows_follows_the_image_blocks(tiny_qwen2_vl_dir):
    _, _, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl", samples=3)
    inputs = batch["inputs"]
    patches = int(inputs["image_grid_thw"][0].prod())
    middle = select_rows(inputs, slice(1, 3))
    assert torch.equal(middle["input_ids"], inputs["input_ids"][1:3])
    assert torch.equal(middle["pixel_values"], inputs["pixel_values"][patches : 3 * patches])


def test_old_logprobs_of_the_first_inner_iteration_equal_a_separate_pass(tiny_qwen2_vl_dir):
    """μ > 1: the first iteration's detached log-probs replace the old-policy pass (same weights)."""
    policy, processor, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl")
    cfg = RLConfig(num_generations=G, max_new_tokens=6, num_iterations=2)
    module = GRPOModule(policy, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000")
    rollout = module.rollout(batch["inputs"])
    separate = module._fixed_logprobs(module.model, rollout)
    first_iteration, _ = module.completion_logprobs(module.model, rollout, slice(0, len(rollout)), with_entropy=True)
    torch.testing.assert_close(first_iteration.detach(), separate, rtol=0, atol=1e-6)


def test_vision_frozen_flag_follows_the_projector(tiny_qwen2_vl_dir):
    frozen, _, _ = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl", train_projector=False)
    trainable, _, _ = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl", train_projector=True)
    assert vision_is_frozen(frozen) and not vision_is_frozen(trainable)


def test_with_image_features_checks_one_image_per_row(tiny_qwen2_vl_dir):
    policy, _, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl")
    prompts = batch["inputs"]
    with torch.no_grad():
        features = encode_images(policy, prompts["pixel_values"], prompts["image_grid_thw"])
    with pytest.raises(ValueError, match="one image per row"):
        with_image_features(repeat_inputs(prompts, 2), features, [0, 1])


def test_chunked_logprob_passes_give_the_same_update_in_one_process(tiny_qwen2_vl_dir):
    """``rl.logprob_micro_batch`` chunks (cutting through groups) with gradient accumulation over two
    rollout batches: the same weights as all rows at once (one process: no backward sync to block)."""
    import lightning as L

    def train(micro_batch: int) -> dict:
        policy, processor, _ = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl")
        cfg = RLConfig(
            num_generations=G, max_new_tokens=6, logprob_micro_batch=micro_batch, gradient_accumulation_steps=2, loss_type="bnpo"
        )
        cfg.optim.lr = 1e-2
        module = GRPOModule(policy, processor, build_rewards(cfg.rewards), **module_settings(cfg), convention="norm1000")
        module.score = lambda batch: torch.arange(len(batch), dtype=torch.float32).reshape(-1, 1).repeat(1, 3) % 2
        loader = torch.utils.data.DataLoader(
            face_samples(4), batch_size=2, collate_fn=PromptCollator(processor, ModelSpace.of(processor, "qwen2_vl"))
        )
        torch.manual_seed(1)
        L.Trainer(
            accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        ).fit(module, loader)
        return {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}

    whole, chunked = train(0), train(4)
    assert whole.keys() == chunked.keys()
    for name, value in whole.items():  # Adam's first step moves every weight by ~lr = 1e-2
        torch.testing.assert_close(chunked[name], value, atol=1e-4, rtol=0, msg=name)


def test_rollout_falls_back_to_the_plain_path_without_mm_encoder_outputs(tiny_qwen2_vl_dir, monkeypatch):
    """A transformers release whose models do not take precomputed vision features: pixels per row."""
    import tagfer.training.rollout as rollout_module

    policy, processor, batch = policy_and_batch(tiny_qwen2_vl_dir, "qwen2_vl")
    policy.eval()
    monkeypatch.setattr(rollout_module, "can_share_images", lambda model: False)
    rollout = generate_rollout(policy, processor, batch["inputs"], G, max_new_tokens=4, do_sample=False)
    assert not rollout.share_images and rollout.features is None
    assert rollout.sequences["pixel_values"].shape[0] == G * batch["inputs"]["pixel_values"].shape[0]
