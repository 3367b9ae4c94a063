"""``GRPOModule``: stage 2 of TAG — group-relative policy optimisation with AU-aware reward callbacks.

One training step (Lightning manual optimisation) for a batch of ``B`` prompts:

1. **Rollout** (no grad, eval mode, :func:`tagfer.training.rollout.generate_rollout`): each image encoded
   once, every prompt repeated ``G`` times (group-major rows) sharing its image's features, one batched
   ``generate`` with the KV cache → ``N = B·G`` completions and their masks (up to and including EOS).
   Under FSDP2 the model is all-gathered once for the whole rollout. With a vLLM engine
   (:class:`tagfer.training.engine_rollout.VLLMRollouts`) the server samples them instead; the policy's
   LoRA adapter is pushed to it before the first rollout and before every rollout that follows an
   optimizer step (rank 0 pushes, every rank waits at a barrier, then every rank queries the server), so
   rollouts are on-policy. The settings are one :class:`tagfer.training.rollout.RolloutSampling`.
2. **Rewards**: each completion is parsed once into the step's typed record
   (:class:`tagfer.training.rewards.batch.GRPOBatch`: texts, parsed traces, label ids and names, AU
   evidence and boxes, token counts); each reward callback scores every parsed completion against its
   sample's label and AU evidence (``[N, F]``, NaN = not applicable) → weighted sum ``r [N]`` →
   advantages ``A = (r − mean_g) / (std + 1e-4)`` (:func:`tagfer.training.grpo.group_advantages`).
3. **Reference log-probs** (no grad, one pass, only when ``beta ≠ 0``; LoRA: the same network with the
   adapter disabled; full fine-tune: a frozen copy). No separate old-policy pass: the first of the μ
   inner iterations runs with the rollout's weights, so its log-probs (detached) *are* the old policy's
   (ρ = 1 there) and serve the later iterations. The frozen vision tower's features from the rollout are
   reused by every pass.
4. **μ = num_iterations optimizer steps** on the same rollouts: per-token log-probs at the sampling
   temperature → :func:`tagfer.training.grpo.grpo_loss` with the module's
   :class:`~tagfer.training.grpo.GRPOObjective` (clipped ratio + β·k3 KL, ``loss_type`` aggregation) →
   backward (in row chunks of ``rl.logprob_micro_batch`` to bound memory), gradient clipping, optimizer
   and scheduler step. With μ = 1, gradients of ``rl.gradient_accumulation_steps``
   rollout batches are summed before each optimizer step; ``dapo`` then normalises by the active tokens
   of all of them (TRL's ``num_items_in_batch`` over the generation batch): each micro step backpropagates
   its token sum and the gradient is divided by the accumulated token count before the step.

Dropout is switched off in the policy and the reference (:func:`tagfer.models.policy.disable_dropout`,
LoRA dropout included): rollouts run in eval mode, and the log-prob passes must score the same network,
or the ratio of the μ inner iterations carries dropout noise. The LR schedule spans the run's optimizer
steps, μ and accumulation counted (:func:`tagfer.training.optim.optimizer_steps`).

A non-finite reward, loss or gradient on any rank skips the step on every rank (no parameter update),
increments ``skipped_steps`` and is logged; after ``rl.max_consecutive_skips`` skips in a row the run stops
with an error (the last good checkpoint is kept; :mod:`tagfer.training.skips`). Logged scalars follow TRL's names: ``reward``, ``reward_std``,
``rewards/<name>/mean|std``, ``frac_reward_zero_std``, ``kl``, ``entropy``, ``clip_ratio/*``,
``completions/{mean,min,max}_length``, ``completions/clipped_ratio``, ``num_tokens``, ``step_time``,
``generation_time_fraction``, ``loss``, ``skipped_steps``; with a vLLM engine also
``train/engine_logprob_diff_mean|max`` (``|logp_vllm − logp_policy|`` over the active tokens, the policy's
log-probs of the first inner iteration) and, with ``importance_sampling_cap``, the policy loss weighted per
token by :func:`tagfer.training.grpo.truncated_importance_weights` (TRL's TIS).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import lightning as L
import torch

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.config import OptimConfig
from tagfer.models.generation import Completions
from tagfer.models.policy import disable_dropout, reference_model
from tagfer.training.engine_rollout import VLLMRollouts
from tagfer.training.grpo import (
    GRPOObjective,
    combine_rewards,
    group_advantages,
    group_reward_stats,
    grpo_loss,
    logprob_gap,
    token_entropies,
    token_logprobs,
    truncated_importance_weights,
)
from tagfer.training.logging import log_grounding_samples
from tagfer.training.optim import build_optimizer_and_scheduler, optimizer_steps
from tagfer.training.rewards.base import NonFiniteRewardError, RewardCallback, reward_matrix, reward_stats
from tagfer.training.rewards.batch import GRPOBatch
from tagfer.training.rollout import Rollout, RolloutSampling, generate_rollout
from tagfer.training.sharding import checkpoint_state_dict, local_gradients_finite, shard_for_strategy
from tagfer.training.skips import SkipsNonFiniteSteps


def scale_gradients(parameters, factor: float) -> None:
    """Multiply every existing ``.grad`` by ``factor`` in place."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.mul_(factor)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the ``with`` block, then back in the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class GRPOModule(SkipsNonFiniteSteps, L.LightningModule):
    """GRPO on a prepared policy.

    Args:
        model: the policy (LoRA ``PeftModel`` or a full model), initialised from the SFT export.
        processor: its processor (decoding completions, pad/EOS ids).
        rewards: reward callbacks (:func:`tagfer.training.rewards.build_rewards`).
        objective: the loss settings (:func:`tagfer.training.grpo_stage.grpo_objective`).
        optim: the optimizer and schedule (:class:`tagfer.core.config.OptimConfig`).
        max_consecutive_skips: non-finite steps in a row before the run stops.
        log_completions: completions (one per group) written to TensorBoard with their boxes.
        convention: the family's box convention (for drawing boxes in TensorBoard).
        reference: a frozen copy of the initial policy for a full fine-tune with ``beta ≠ 0``; None for
            LoRA (adapter disabled) or ``beta = 0``.
        gradient_clip_val: max gradient norm (None: no clipping).
        sampling: the rollout's sampling settings (``G``, ``max_new_tokens``, ``temperature`` — the
            log-probs' too —, ``top_p``, ``top_k``, shared image features; :meth:`RolloutSampling.of`).
        engine: a :class:`~tagfer.training.engine_rollout.VLLMRollouts` sampling the rollouts (LoRA
            policies only), or None for in-process ``generate``.
        importance_sampling_cap: with ``engine``, TIS weights capped at this value (None: off).
    """

    STAGE, SKIP_METRIC = "GRPO", "skipped_steps"  # same key and arguments as _log_step: Lightning refuses a mix
    SKIP_HINT = "lower rl.optim.lr or check the rewards."

    def __init__(
        self,
        model,
        processor,
        rewards: Sequence[RewardCallback],
        *,
        objective: GRPOObjective,
        sampling: RolloutSampling,
        optim: OptimConfig,
        max_consecutive_skips: int,
        log_completions: int,
        convention: str,
        classes: Sequence[str] = CLASS_NAMES,
        reference: torch.nn.Module | None = None,
        gradient_clip_val: float | None = 1.0,
        engine: VLLMRollouts | None = None,
        importance_sampling_cap: float | None = None,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.processor = processor
        self.rewards = list(rewards)
        self.objective = objective
        self.optim = optim
        self.max_consecutive_skips = max_consecutive_skips
        self.log_completions = log_completions
        self.convention = convention
        self.classes = tuple(classes)
        self.reference = reference
        self.gradient_clip_val = gradient_clip_val
        self.sampling = sampling
        self.engine = engine
        self.importance_sampling_cap = importance_sampling_cap
        self._pushed_step: int | None = None  # global_step of the adapter on the engine (None: not pushed)
        self.strict_loading = False
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self._accumulated = 0
        self._accumulated_tokens = 0.0  # dapo under accumulation: active tokens of the micro steps so far
        disable_dropout(model)
        if reference is not None:
            disable_dropout(reference)

    def configure_model(self) -> None:
        """FSDP2 (``trainer.strategy: fsdp``): shard the policy and a frozen reference copy per block."""
        shard_for_strategy(self, self.model, self.reference)

    # ------------------------------------------------------------------------------------ rollout
    def rollout(self, inputs) -> Rollout:
        """``G`` completions per prompt (each image encoded once), sampled in eval mode."""
        s = self.sampling
        with eval_mode(self.model):
            return generate_rollout(
                self.model,
                self.processor,
                inputs,
                s.group_size,
                max_new_tokens=s.max_new_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                top_k=s.top_k,
                share_images=s.share_images,
            )

    def engine_rollout(self, inputs, images) -> Rollout:
        """``G`` completions per prompt sampled by the engine (``images``: the batch's, sent to the server)
        once its adapter is the policy's (:meth:`sync_engine`)."""
        self.sync_engine()
        with eval_mode(self.model):
            return self.engine.rollout(self.model, self.processor, inputs, images)

    def sync_engine(self) -> None:
        """Push the policy's adapter to the engine unless it already holds this ``global_step``'s weights
        (first call of a run or a resume: always). Rank 0 pushes; all ranks wait for it."""
        if self._pushed_step == self.global_step:
            return
        if self.global_rank == 0:
            self.engine.push(self.model)
        if self.trainer.world_size > 1:
            self.trainer.strategy.barrier("vllm-adapter-push")
        self._pushed_step = self.global_step

    def completion_logprobs(self, model, rollout: Rollout, rows: slice, *, with_entropy: bool = False):
        """Per-token log-probs ``[n, C]`` of the completion tokens of ``rows`` under ``model`` (and entropies).

        Only the last ``C + 1`` positions' logits are computed (``logits_to_keep``); position
        ``L − 1 + t`` predicts completion token ``t``.
        """
        completion_ids = rollout.completions.ids[rows].to(self.device)
        length = completion_ids.shape[1]
        logits = model(**rollout.model_inputs(model, rows), logits_to_keep=length + 1, use_cache=False).logits[:, :-1]
        logps = token_logprobs(logits, completion_ids, self.sampling.temperature)
        entropies = token_entropies(logits.detach(), self.sampling.temperature) if with_entropy else None
        return logps, entropies

    def _chunks(self, n: int) -> list[slice]:
        size = self.objective.logprob_micro_batch or n
        return [slice(start, min(start + size, n)) for start in range(0, n, size)]

    @torch.no_grad()
    def _fixed_logprobs(self, model, rollout: Rollout) -> torch.Tensor:
        return torch.cat([self.completion_logprobs(model, rollout, rows)[0] for rows in self._chunks(len(rollout))])

    # ------------------------------------------------------------------------------------ rewards
    def score(self, batch: GRPOBatch) -> torch.Tensor:
        """``[N, F]`` rewards of every callback (NaN where a callback returned None: not applicable)."""
        return reward_matrix(self.rewards, batch)

    # ------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_index: int) -> None:
        start = time.perf_counter()
        inputs, meta = batch["inputs"], batch["meta"]
        rollout = self.rollout(inputs) if self.engine is None else self.engine_rollout(inputs, meta["image"])
        completions = rollout.completions
        generation_time = time.perf_counter() - start
        group = rollout.group_size
        scored = GRPOBatch.from_samples(meta, completions.texts, completions.lengths.tolist(), group)
        try:
            per_function, reward_error = self.score(scored), None
        except NonFiniteRewardError as err:
            per_function, reward_error = None, err
        if not self._all_ranks(reward_error is None):
            self._skip(str(reward_error) if reward_error else "non-finite reward on another rank")
            return
        rewards = combine_rewards(per_function, [callback.weight for callback in self.rewards])
        scale = self.objective.scale_rewards
        scale_input = self.all_gather(rewards).reshape(-1) if scale == "batch" else rewards
        advantages = group_advantages(scale_input, group, scale)
        if scale == "batch":
            advantages = advantages.reshape(-1, rewards.numel())[self.global_rank]
        advantages = advantages.to(self.device)

        mask = completions.mask.to(self.device)
        ref_logps = None
        if self.objective.beta != 0.0:
            with reference_model(self.model, self.reference) as reference:
                ref_logps = self._fixed_logprobs(reference, rollout)
        tokens_global = self._global_token_count(mask)

        old_logps = None  # first iteration: the rollout's own weights, ρ = 1
        stats = {}
        for _ in range(self.objective.num_iterations):
            result = self._optimise(rollout, mask, old_logps, ref_logps, advantages, tokens_global)
            if result is None:
                return
            stats, logps = result
            if old_logps is None:
                old_logps = logps
        if rollout.engine_logps is not None:
            gap = logprob_gap(old_logps, rollout.engine_logps, mask)
            stats = {**stats, "train/engine_logprob_diff_mean": gap["mean"], "train/engine_logprob_diff_max": gap["max"]}
        self.consecutive_skips = 0
        self._log_step(per_function, rewards, group, completions, stats, start, generation_time, mask)
        if batch_index % max(1, self.trainer.log_every_n_steps * 10) == 0:
            log_grounding_samples(
                self.logger,
                "train",
                self.global_step,
                completions.texts[::group],
                meta,
                limit=self.log_completions,
                convention=self.convention,
            )

    def _global_token_count(self, mask: torch.Tensor) -> torch.Tensor:
        """Active completion tokens of the whole global batch (``dapo``'s normaliser), summed over ranks."""
        count = mask.sum().float()
        return self.all_gather(count).sum() if self.trainer.world_size > 1 else count

    def _chunk_weight(self, rows: slice, mask: torch.Tensor, n: int) -> float:
        """Factor that turns a chunk's own ``grpo_loss`` into its share of the whole batch's loss."""
        chunk_rows = rows.stop - rows.start
        if self.objective.loss_type == "bnpo":
            return float(mask[rows].sum().clamp(min=1.0) / mask.sum().clamp(min=1.0))
        if self.objective.loss_type in ("grpo", "dr_grpo"):
            return chunk_rows / n
        return 1.0  # dapo: every chunk is normalised by the global token count already

    def _optimise(self, rollout: Rollout, mask, old_logps, ref_logps, advantages, tokens_global) -> tuple[dict, torch.Tensor] | None:
        """One optimizer step (or one accumulation step) over the rollout: ``(stats, detached log-probs
        [N, C])``, or None when skipped."""
        optimizer = self.optimizers()
        n = len(rollout)
        total_loss = 0.0
        stats_sum: dict[str, float] = {}
        all_logps = []
        accumulation = self.objective.gradient_accumulation_steps
        last_micro_step = self._accumulated + 1 >= accumulation
        chunks = self._chunks(n)
        for index, rows in enumerate(chunks):
            # DDP all-reduces once per optimizer step: only the last chunk's backward of the last micro step syncs
            synced = last_micro_step and index == len(chunks) - 1
            sync_context = nullcontext if synced else getattr(self.trainer.strategy, "block_backward_sync", nullcontext)
            logps, entropies = self.completion_logprobs(self.model, rollout, rows, with_entropy=True)
            all_logps.append(logps.detach())
            weights = None
            if self.importance_sampling_cap is not None and rollout.engine_logps is not None:
                old = logps if old_logps is None else old_logps[rows]
                weights = truncated_importance_weights(old, rollout.engine_logps[rows], self.importance_sampling_cap)
            loss, stats = grpo_loss(
                logps,
                None if old_logps is None else old_logps[rows],
                None if ref_logps is None else ref_logps[rows],
                advantages[rows],
                mask[rows],
                self.objective,
                num_items_in_batch=tokens_global,
                world_size=self.trainer.world_size,
                entropies=entropies,
                importance_weights=weights,
            )
            loss = loss * self._chunk_weight(rows, mask, n)
            total_loss += float(loss.detach()) / accumulation
            # dapo under accumulation: Σℓ·world_size now, ÷ the accumulated token count at the step
            loss = loss * tokens_global if self._dapo_accumulates else loss / accumulation
            if not self._all_ranks(torch.isfinite(loss)):
                optimizer.zero_grad()
                self._accumulated, self._accumulated_tokens = 0, 0.0
                self._skip("non-finite loss")
                return None
            with sync_context():
                self.manual_backward(loss)
            weight = (rows.stop - rows.start) / n
            for key, value in stats.items():
                stats_sum[key] = stats_sum.get(key, 0.0) + weight * float(value)
        self._accumulated += 1
        self._accumulated_tokens += float(tokens_global)
        if self._accumulated >= accumulation:
            if self._dapo_accumulates:
                scale_gradients(self.model.parameters(), 1.0 / max(self._accumulated_tokens, 1.0))
            if not self._all_ranks(local_gradients_finite(self.model.parameters())):  # one device sync
                optimizer.zero_grad()
                self._accumulated, self._accumulated_tokens = 0, 0.0
                self._skip("non-finite gradient")
                return None
            if self.gradient_clip_val:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")
            optimizer.step()
            optimizer.zero_grad()
            self.lr_schedulers().step()
            self._accumulated, self._accumulated_tokens = 0, 0.0
        stats_sum["loss"] = total_loss
        return stats_sum, torch.cat(all_logps)

    def _log_step(self, per_function, rewards, group: int, completions: Completions, stats, start, generation_time, mask) -> None:
        lengths = completions.lengths.float()
        metrics = {
            **group_reward_stats(rewards, group),
            "completions/mean_length": lengths.mean().item(),
            "completions/min_length": lengths.min().item(),
            "completions/max_length": lengths.max().item(),
            "completions/clipped_ratio": completions.truncated.float().mean().item(),
            "num_tokens": float(mask.sum().item()),
            "skipped_steps": float(self.skipped_steps),
            **{key: value for key, value in stats.items()},
        }
        for column, callback in enumerate(self.rewards):
            values = [None if math.isnan(v) else v for v in per_function[:, column].tolist()]
            for key, value in reward_stats(values).items():
                metrics[f"rewards/{callback.name}/{key}"] = value
        step_time = time.perf_counter() - start
        metrics["step_time"] = step_time
        metrics["generation_time_fraction"] = generation_time / step_time
        metrics = {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}
        shown = {"reward", "kl", "completions/mean_length"}
        self.log_dict({k: v for k, v in metrics.items() if k not in shown}, batch_size=len(per_function))
        self.log_dict({k: v for k, v in metrics.items() if k in shown}, prog_bar=True, batch_size=len(per_function))

    @property
    def _dapo_accumulates(self) -> bool:
        return self.objective.loss_type == "dapo" and self.objective.gradient_accumulation_steps > 1

    def configure_optimizers(self):
        trainer = self.trainer
        _ = trainer.estimated_stepping_batches  # sets up the training data: num_training_batches is known after it
        steps = optimizer_steps(
            trainer.max_steps,
            trainer.num_training_batches,
            trainer.max_epochs,
            num_iterations=self.objective.num_iterations,
            accumulation=self.objective.gradient_accumulation_steps,
        )
        return build_optimizer_and_scheduler(self.model, self.optim, steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = checkpoint_state_dict(self, checkpoint["state_dict"])
        checkpoint["grpo"] = {"skipped_steps": self.skipped_steps}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.skipped_steps = checkpoint.get("grpo", {}).get("skipped_steps", 0)
