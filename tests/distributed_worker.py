"""A few SFT and GRPO steps of the tiny Qwen2-VL under one strategy; rank 0 writes what the tests compare.

Run as a script (never imported by a pytest process that holds threads): ``tests/test_distributed.py``
starts ``python tests/distributed_worker.py --strategy fsdp --devices 2 ...`` and Lightning's launcher
starts the other rank(s) by re-running this script.

"Same global batch" (what makes runs on 1 and 2 processes comparable):

* The data are ``steps × global_batch`` in-memory synthetic faces read in order. With ``W`` processes each
  takes ``global_batch / W`` per step through Lightning's ``DistributedSampler`` (rank ``r`` gets samples
  ``r, r + W, …``), so every optimizer step sees the same samples as the 1-process run's step.
* SFT: every sample has the same target text (different images), so every rank has the same number of
  supervised tokens and the mean of the per-rank token-mean losses (what DDP/FSDP gradient averaging
  optimises) equals the token-mean over the global batch.
* GRPO: sampling depends on the batch layout, so the training rollouts are *fixed*: completion ``g`` of
  sample ``i`` is a fixed text (answers that earn different rewards), built into a
  :class:`tagfer.training.rollout.Rollout` with the image features encoded once per prompt, exactly as a
  sampled one. Rewards, group advantages, reference (adapter disabled / frozen copy) and old log-probs
  (μ = 2), the ``dapo`` loss normalised by the global token count, gradient sync and the optimizer run for
  real. Generation itself is compared separately: every rank generates greedily for the whole global
  batch (under FSDP2 with the model gathered once) and rank 0's ids must equal the 1-process ids.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures_models import tiny_model_cfg  # noqa: E402
from tagfer.core.config import OptimConfig, RLConfig, SFTConfig, TrainerConfig  # noqa: E402
from tagfer.data.face_samples import face_samples  # noqa: E402
from tagfer.models.collate import PromptCollator, SFTCollator  # noqa: E402
from tagfer.models.export import export_policy  # noqa: E402
from tagfer.models.generation import Completions, completion_mask, eos_token_ids  # noqa: E402
from tagfer.models.image_features import encode_images, vision_is_frozen  # noqa: E402
from tagfer.models.inputs import append_completions, repeat_inputs  # noqa: E402
from tagfer.models.loader import load_vlm  # noqa: E402
from tagfer.models.policy import frozen_reference_copy, prepare_policy  # noqa: E402
from tagfer.models.space import ModelSpace  # noqa: E402
from tagfer.training.grpo_module import GRPOModule  # noqa: E402
from tagfer.training.grpo_stage import module_settings  # noqa: E402
from tagfer.training.rewards import build_rewards  # noqa: E402
from tagfer.training.rewards.base import RewardCallback  # noqa: E402
from tagfer.training.rollout import Rollout, generate_rollout  # noqa: E402
from tagfer.training.sft_module import SFTModule  # noqa: E402
from tagfer.training.sharding import consolidated_state_dict  # noqa: E402
from tagfer.training.trainer import build_strategy  # noqa: E402

SFT_TARGET = "<answer>happiness</answer>"
#: Completions of each GRPO group (rotated per sample): different answers → different rewards.
FIXED_COMPLETIONS = (
    "<answer>{label}</answer>",
    "<answer>neutral</answer>",
    "The mouth corners rise. <answer>{label}</answer>",
    "no idea",
)
GROUP = len(FIXED_COMPLETIONS)


class FixedRolloutGRPO(GRPOModule):
    """GRPO whose training rollouts are :data:`FIXED_COMPLETIONS` (see the module docstring)."""

    def training_step(self, batch, batch_index):
        self._labels = batch["meta"]["label_name"]
        self._ids = batch["meta"]["id"]
        return super().training_step(batch, batch_index)

    def rollout(self, inputs) -> Rollout:
        tokenizer = self.processor.tokenizer
        texts = []
        for sample_id, label in zip(self._ids, self._labels):
            shift = int(sample_id.split("/")[-1].split(".")[0])
            for g in range(GROUP):
                texts.append(FIXED_COMPLETIONS[(g + shift) % GROUP].format(label=label) + tokenizer.eos_token)
        encoded = tokenizer(texts, add_special_tokens=False, padding="longest", padding_side="right", return_tensors="pt")
        ids = encoded["input_ids"].to(self.device)
        mask, truncated = completion_mask(ids, eos_token_ids(self.model, self.processor))
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, tokenizer.pad_token_id))
        completions = Completions(ids=ids, mask=mask, texts=[t.replace(tokenizer.eos_token, "") for t in texts], truncated=truncated)
        tokens = repeat_inputs({k: v for k, v in inputs.items() if k != "pixel_values"}, GROUP)
        with torch.no_grad():
            features = encode_images(self.model, inputs["pixel_values"], inputs["image_grid_thw"])
        kept = features if vision_is_frozen(self.model) else None
        return Rollout(inputs, append_completions(tokens, ids, mask), completions, GROUP, kept)


class NaNOnRank(RewardCallback):
    """1 for every completion, except NaN (an invalid reward) on the first call of the process of ``rank``."""

    name = "nan_on_rank"

    def __init__(self, rank: int):
        super().__init__(1.0)
        self.rank, self.calls = rank, 0

    def __call__(self, batch):
        self.calls += 1
        bad = self.calls == 1 and dist.get_rank() == self.rank
        return [math.nan if bad else 1.0 for _ in range(len(batch))]


class LossRecorder(L.Callback):
    """Per-step loss averaged over ranks (the global-batch loss, see the module docstring)."""

    def __init__(self, key: str):
        self.key = key
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.key not in trainer.callback_metrics:  # the first step was skipped (every rank alike)
            return
        value = trainer.callback_metrics[self.key].detach().clone().float()
        if trainer.world_size > 1:
            dist.all_reduce(value)
            value /= trainer.world_size
        self.values.append(float(value))


def trainable_weights(model, rank: int) -> dict[str, torch.Tensor]:
    """Full trainable tensors on rank 0 (gathered from shards under FSDP2)."""
    full = consolidated_state_dict(model, rank=rank)
    if full is None:
        full = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: value for name, value in full.items() if name in trainable}


def make_trainer(args, max_steps: int, callbacks=(), **kwargs) -> L.Trainer:
    tcfg = TrainerConfig(accelerator="cpu", devices=args.devices, strategy=args.strategy, precision=args.precision)
    return L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=build_strategy(tcfg),
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=list(callbacks),
        use_distributed_sampler=False,
        precision=args.precision,
        **kwargs,
    )


class OrderedData(L.LightningDataModule):
    """The samples in order, rank ``r`` of ``W`` taking ``r, r + W, …`` (Lightning's own distributed
    sampler would shuffle training data; the runs must see the same global batches)."""

    def __init__(self, samples, collate, global_batch: int):
        super().__init__()
        self.samples, self.collate, self.global_batch = samples, collate, global_batch

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DistributedSampler(self.samples, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(self.samples, batch_size=self.global_batch // world, sampler=sampler, collate_fn=self.collate)


def policy(args):
    """LoRA with a trainable projector (each pass encodes its images) or a full fine-tune with the whole
    vision tower frozen (the rollout's image features serve every pass)."""
    cfg = tiny_model_cfg(args.model_dir, finetune=args.finetune, train_projector=args.finetune == "lora")
    model, processor, family = load_vlm(cfg, for_training=True)
    return prepare_policy(model, cfg), processor, ModelSpace.of(processor, family)


def run_sft(args, out: dict) -> None:
    L.seed_everything(0)
    model, processor, space = policy(args)
    cfg = SFTConfig(optim=OptimConfig(lr=args.lr, scheduler="constant", warmup_ratio=0.0))
    module = SFTModule(model, processor, cfg, convention=space.convention)
    samples = face_samples(args.steps * args.global_batch, trace=SFT_TARGET)
    out["sft_initial"] = trainable_weights(module.model, 0)
    recorder = LossRecorder("train/loss")
    trainer = make_trainer(args, args.steps, [recorder], gradient_clip_val=1.0, enable_checkpointing=False)
    trainer.fit(module, OrderedData(samples, SFTCollator(processor, space, max_length=512), args.global_batch))
    out["sft_losses"] = recorder.values
    out["sft_weights"] = trainable_weights(module.model, trainer.global_rank)


def grpo_module(args):
    L.seed_everything(0)
    model, processor, space = policy(args)
    cfg = RLConfig(
        optim=OptimConfig(lr=args.lr, scheduler="constant", warmup_ratio=0.0),
        num_generations=GROUP,
        max_new_tokens=24,
        beta=0.04,
        num_iterations=2,
        loss_type="dapo",
        logprob_micro_batch=args.micro_batch,
    )
    rewards = build_rewards([{"name": "answer", "weight": 1.0}, {"name": "format", "weight": 1.0}])
    if args.nan_reward_rank is not None:
        rewards.append(NaNOnRank(args.nan_reward_rank))
    reference = frozen_reference_copy(model)
    module = FixedRolloutGRPO(
        model, processor, rewards, **module_settings(cfg), convention=space.convention, reference=reference, gradient_clip_val=1.0
    )
    return module, processor, space


def greedy_ids(module, processor, space, args) -> torch.Tensor:
    """Greedy rollout of the whole global batch (every rank the same prompts), counting FSDP all-gathers."""
    batch = PromptCollator(processor, space)(face_samples(args.global_batch))
    calls = {"all_gather": 0}
    original = getattr(dist, "all_gather_single", None)

    def counting(*a, **k):
        calls["all_gather"] += 1
        return original(*a, **k)

    if original is not None:
        dist.all_gather_single = counting
    try:
        module.model.eval()
        rollout = generate_rollout(module.model, processor, batch["inputs"], 2, max_new_tokens=6, do_sample=False)
    finally:
        module.model.train()
        if original is not None:
            dist.all_gather_single = original
    return rollout.completions.ids.cpu(), calls["all_gather"]


def run_grpo(args, out: dict, run_dir: Path) -> None:
    module, processor, space = grpo_module(args)
    samples = face_samples(args.steps * args.global_batch)
    collate = PromptCollator(processor, space)
    recorder = LossRecorder("loss")
    mu = module.objective.num_iterations  # manual optimisation: global_step counts optimizer steps, μ per batch
    trainer = make_trainer(args, args.steps * mu, [recorder], enable_checkpointing=False)
    trainer.fit(module, OrderedData(samples, collate, args.global_batch))
    out["grpo_losses"] = recorder.values
    out["grpo_weights"] = trainable_weights(module.model, trainer.global_rank)
    if args.nan_reward_rank is not None:  # every rank's counters (the test checks they agree)
        counters = [None] * trainer.world_size
        dist.all_gather_object(counters, (module.skipped_steps, module.global_step))
        out["grpo_skipped_and_steps"] = counters
        return
    out["greedy_ids"], out["generate_all_gathers"] = greedy_ids(module, processor, space, args)
    out["fsdp_units"] = sum(1 for m in module.model.modules() if type(m).__name__.startswith("FSDP"))
    if args.resume:
        checkpoint = run_dir / "grpo.ckpt"
        trainer.save_checkpoint(checkpoint)
        export = run_dir / "export"
        weights = consolidated_state_dict(module.model, rank=trainer.global_rank)
        if trainer.global_rank == 0:
            export_policy(module.model, processor, export, base_name_or_path=args.model_dir, family="qwen2_vl", state_dict=weights)
        resumed, _, _ = grpo_module(args)
        recorder = LossRecorder("loss")
        trainer = make_trainer(args, (args.steps + 1) * mu, [recorder], enable_checkpointing=False)
        trainer.fit(resumed, OrderedData(samples, collate, args.global_batch), ckpt_path=str(checkpoint))
        out["resumed_losses"] = recorder.values
        out["resumed_weights"] = trainable_weights(resumed.model, trainer.global_rank)
        out["checkpoint_is_dir"] = checkpoint.is_dir()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--finetune", default="lora")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--stages", default="sft,grpo")
    parser.add_argument("--micro-batch", type=int, default=0, help="rl.logprob_micro_batch (0: all rows at once)")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--resume", action="store_true", help="also save a checkpoint + export, resume for one more step")
    parser.add_argument("--nan-reward-rank", type=int, default=None, help="GRPO: this rank's first reward is NaN (needs --devices > 1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out: dict = {}
    run_dir = Path(args.out).parent / f"run-{args.strategy}-{args.devices}"
    if "sft" in args.stages:
        run_sft(args, out)
    if "grpo" in args.stages:
        run_grpo(args, out, run_dir)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        torch.save(out, args.out)


if __name__ == "__main__":
    main()
