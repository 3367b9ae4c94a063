"""Numerical faults: NaN/inf in rewards, logits, loss or gradients skip the step (no parameter or optimizer
update), count it, and after ``max_consecutive_skips`` in a row stop the run with a message naming the last
good checkpoint, which is kept and loads.

Real tiny Qwen2-VL LoRA policies, the real SFT/GRPO modules and the stages' Trainer
(:func:`tagfer.training.trainer.build_trainer`: checkpoint every step); faults are injected with a forward
hook on the LM head (NaN logits: the loss and, for GRPO, the sampling see them), a gradient hook (inf
gradients, finite loss) or a reward callback returning NaN.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from fixtures_models import tiny_model_cfg
from tagfer.core.config import OptimConfig, RLConfig, SFTConfig, TagferConfig
from tagfer.data.face_samples import face_samples
from tagfer.models.collate import PromptCollator, SFTCollator
from tagfer.models.loader import load_vlm
from tagfer.models.policy import prepare_policy
from tagfer.models.space import ModelSpace
from tagfer.training.grpo_module import GRPOModule
from tagfer.training.grpo_stage import module_settings
from tagfer.training.rewards import build_rewards
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.sft_module import SFTModule
from tagfer.training.skips import NonFiniteStepError
from tagfer.training.trainer import build_trainer

TARGET = "<answer>happiness</answer>"
OPTIM = OptimConfig(lr=1e-2, scheduler="constant", warmup_ratio=0.0)


class Samples(L.LightningDataModule):
    def __init__(self, samples, collate, batch_size: int):
        super().__init__()
        self.samples, self.collate, self.batch_size = samples, collate, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.samples, batch_size=self.batch_size, collate_fn=self.collate)


class Fault(L.Callback):
    """Arms ``inject(module)`` (returning an undo function) during the given batch indices."""

    def __init__(self, batches, inject):
        self.batches, self.inject, self._undo = set(batches), inject, None
        self.weights_before: dict[int, dict[str, torch.Tensor]] = {}
        self.weights_after: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.weights_before[batch_idx] = trainable(module)
        if batch_idx in self.batches:
            self._undo = self.inject(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._undo is not None:
            self._undo()
            self._undo = None
        self.weights_after[batch_idx] = trainable(module)


def trainable(module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def nan_logits(module):
    """Every LM-head output becomes NaN until undone."""
    handle = module.model.get_output_embeddings().register_forward_hook(lambda m, args, out: out * math.nan)
    return handle.remove


def inf_gradients(module):
    """Finite loss, but every trainable gradient becomes +inf until undone."""
    handles = [p.register_hook(lambda g: torch.full_like(g, math.inf)) for p in module.parameters() if p.requires_grad]
    return lambda: [h.remove() for h in handles]


def run_config(tmp_path, **sections) -> TagferConfig:
    cfg = OmegaConf.structured(TagferConfig)
    cfg.run_dir = str(tmp_path / "run")
    cfg.trainer.accelerator = "cpu"
    cfg.trainer.enable_progress_bar = False
    cfg.trainer.checkpoint.every_n_train_steps = 1
    cfg.trainer.max_epochs = -1
    for key, value in sections.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture
def policy(tiny_qwen2_vl_dir):
    L.seed_everything(0)
    model_cfg = tiny_model_cfg(tiny_qwen2_vl_dir)
    model, processor, family = load_vlm(model_cfg, for_training=True)
    return prepare_policy(model, model_cfg), processor, ModelSpace.of(processor, family)


def fit(cfg, module, datamodule, fault: Fault, *, manual: bool = False):
    extra = {"gradient_clip_val": None, "limit_val_batches": 0} if manual else {"limit_val_batches": 0}
    trainer = build_trainer(cfg, cfg.run_dir, callbacks=[fault], enable_model_summary=False, **extra)
    trainer.fit(module, datamodule=datamodule)
    return trainer


# ------------------------------------------------------------------------------------------- SFT
def sft_setup(policy, tmp_path, steps: int, max_skips: int = 10):
    model, processor, space = policy
    module = SFTModule(model, processor, SFTConfig(optim=OPTIM, max_consecutive_skips=max_skips), convention=space.convention)
    data = Samples(face_samples(2 * steps, trace=TARGET), SFTCollator(processor, space, max_length=512), batch_size=2)
    return run_config(tmp_path, **{"trainer.max_steps": steps}), module, data


@pytest.mark.parametrize("inject", [nan_logits, inf_gradients], ids=["nan-logits-loss", "inf-gradients"])
def test_sft_skips_a_non_finite_step_without_touching_weights_or_optimizer(policy, tmp_path, inject):
    cfg, module, data = sft_setup(policy, tmp_path, steps=3)
    fault = Fault({1}, inject)
    trainer = fit(cfg, module, data, fault)
    assert module.skipped_steps == 1 and module.consecutive_skips == 0
    for name, value in fault.weights_before[1].items():
        assert torch.equal(fault.weights_after[1][name], value), f"skipped step changed {name}"
    assert any(not torch.equal(fault.weights_after[2][n], v) for n, v in fault.weights_before[2].items()), "training went on"
    assert all(torch.isfinite(p).all() for p in module.parameters())
    optimizer_state = trainer.optimizers[0].state
    assert {int(s["step"]) for s in optimizer_state.values()} == {2}  # AdamW stepped for batches 0 and 2 only


def test_sft_stops_after_consecutive_skips_and_keeps_the_last_good_checkpoint(policy, tmp_path):
    cfg, module, data = sft_setup(policy, tmp_path, steps=6, max_skips=2)
    fault = Fault({2, 3, 4, 5}, nan_logits)
    with pytest.raises(NonFiniteStepError, match=r"2 consecutive SFT steps had a non-finite loss.*last\.ckpt"):
        fit(cfg, module, data, fault)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # automatic optimisation counts a skipped step (its update is dropped): the checkpoint of step 3 holds
    # the weights of the last good batch (1), untouched by the skipped batch 2
    assert last["global_step"] == 3
    good = fault.weights_after[1]
    assert set(last["state_dict"]) == set(good)
    assert all(torch.equal(last["state_dict"][name], good[name]) for name in good)


# ------------------------------------------------------------------------------------------ GRPO
class NaNReward(RewardCallback):
    """0/1 by answer, but NaN (an invalid reward value) on the calls listed in ``bad_calls``."""

    name = "nan_on_call"
    value_range = (0.0, 1.0)

    def __init__(self, bad_calls):
        super().__init__(1.0)
        self.bad_calls, self.calls = set(bad_calls), 0

    def __call__(self, batch):
        self.calls += 1
        value = math.nan if self.calls in self.bad_calls else 1.0
        return [value if i % 2 else 0.0 for i in range(len(batch))]


def grpo_setup(policy, tmp_path, rewards, steps: int, max_skips: int = 10):
    model, processor, space = policy
    rl = RLConfig(optim=OPTIM, num_generations=2, max_new_tokens=6, beta=0.04, max_consecutive_skips=max_skips, logprob_micro_batch=0)
    module = GRPOModule(model, processor, rewards, **module_settings(rl), convention=space.convention, gradient_clip_val=1.0)
    data = Samples(face_samples(2 * (steps + 4)), PromptCollator(processor, space), batch_size=2)
    return run_config(tmp_path, **{"trainer.max_steps": steps}), module, data


def test_grpo_skips_a_nan_reward_and_nan_logits(policy, tmp_path):
    rewards = [NaNReward(bad_calls={2}), *build_rewards([{"name": "format"}])]
    cfg, module, data = grpo_setup(policy, tmp_path, rewards, steps=3)
    fault = Fault({2}, nan_logits)  # batch 1: NaN reward; batch 2: NaN logits in sampling and in the loss
    fit(cfg, module, data, fault, manual=True)
    assert module.skipped_steps == 2 and module.global_step == 3
    assert any(not torch.equal(fault.weights_after[0][n], v) for n, v in fault.weights_before[0].items()), "good steps train"
    for batch in (1, 2):
        assert all(torch.equal(fault.weights_after[batch][n], v) for n, v in fault.weights_before[batch].items()), batch
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_grpo_stops_after_consecutive_skips_and_keeps_the_last_good_checkpoint(policy, tmp_path):
    rewards = [NaNReward(bad_calls=set(range(3, 20)))]
    cfg, module, data = grpo_setup(policy, tmp_path, rewards, steps=6, max_skips=3)
    fault = Fault(set(), nan_logits)
    with pytest.raises(NonFiniteStepError, match=r"3 consecutive GRPO steps.*last\.ckpt"):
        fit(cfg, module, data, fault, manual=True)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2 and module.skipped_steps == 3
    good = fault.weights_after[1]
    assert all(torch.equal(last["state_dict"][name], good[name]) for name in good)
