"""The GRPO objective as pure tensor functions (TRL ``GRPOTrainer`` semantics).

Pipeline for one rollout batch of ``B`` prompts × ``G`` completions (``N = B·G`` rows, group-major: the
``G`` completions of a prompt are adjacent)::

    per-function rewards [N, F]  ──combine_rewards──>  r [N]  ──group_advantages──>  A [N]
    logits [N, T, V] ──token_logprobs──> log π(y_t) [N, T]  ──grpo_loss(…, A, mask)──>  scalar loss, stats

The objective's settings (loss type, clip range, β, …) are one frozen :class:`GRPOObjective`, built once by
the recipe and handed to :func:`grpo_loss` with the tensors.

Conventions checked against TRL's ``trl/trainer/grpo_trainer.py`` (huggingface/trl): the standard
deviation is PyTorch's default ``Tensor.std`` — unbiased, Bessel-corrected (divide by ``n − 1``); the
advantage denominator is ``std + 1e-4``; rewards of ``None`` are NaN and dropped by a NaN-sum (a row
with no reward at all stays NaN and is left out of its group's baseline, where TRL would count it 0); the k3
KL estimator; the four loss aggregations; the clip-ratio statistics; ``dapo`` divides by the
DDP-wide active-token count over the number of processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tagfer.core.config import LOSS_TYPES, REWARD_SCALES, ConfigError

#: Added to the standard deviation before dividing (TRL's constant).
STD_EPS = 1e-4


# ---------------------------------------------------------------------------------------- objective
@dataclass(frozen=True, kw_only=True)
class GRPOObjective:
    """The settings of the GRPO objective, built once by the recipe (:func:`tagfer.training.grpo_stage.grpo_objective`).

    Every field is the ``rl`` key of the same name, except ``max_completion_length`` (``rl.max_new_tokens``):

    * ``loss_type`` (:data:`tagfer.core.config.LOSS_TYPES`): the aggregation of :func:`grpo_loss`;
    * ``epsilon_low`` in [0, 1), ``epsilon_high`` ≥ 0 (None → ``epsilon_low``): the ratio's clip range;
    * ``beta`` ≥ 0: the k3 KL coefficient (0: no reference pass); ``kl_clamp`` > 0: the bound on ``ref − logp``;
    * ``scale_rewards`` (:data:`tagfer.core.config.REWARD_SCALES`): :func:`group_advantages`' ``scale``;
    * ``max_completion_length``: ``dr_grpo``'s constant normaliser (None: the batch's ``T``);
    * ``num_iterations`` (μ ≥ 1): optimizer steps per rollout batch; ``gradient_accumulation_steps`` ≥ 1:
      rollout batches per optimizer step (one of the two must be 1);
    * ``logprob_micro_batch`` ≥ 0: rows per log-prob forward/backward (0: all rows at once).

    Construction checks every field and raises :class:`tagfer.core.config.ConfigError` naming the ``rl`` key.
    """

    loss_type: str
    epsilon_low: float
    epsilon_high: float | None
    beta: float
    kl_clamp: float
    scale_rewards: str
    max_completion_length: int | None
    num_iterations: int
    gradient_accumulation_steps: int
    logprob_micro_batch: int

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise _objective_error("loss_type", self.loss_type, f"one of {list(LOSS_TYPES)}")
        if self.scale_rewards not in REWARD_SCALES:
            raise _objective_error("scale_rewards", self.scale_rewards, f"one of {list(REWARD_SCALES)}")
        if not _number_in(self.epsilon_low, 0.0, 1.0, upper_open=True):
            raise _objective_error("epsilon_low", self.epsilon_low, "a number in [0, 1)")
        if self.epsilon_high is None:
            object.__setattr__(self, "epsilon_high", self.epsilon_low)
        elif not _number_in(self.epsilon_high, 0.0, math.inf):
            raise _objective_error("epsilon_high", self.epsilon_high, "a number ≥ 0 or null (= epsilon_low)")
        if not _number_in(self.beta, 0.0, math.inf):
            raise _objective_error("beta", self.beta, "a finite number ≥ 0")
        if not _number_in(self.kl_clamp, 0.0, math.inf) or self.kl_clamp == 0.0:
            raise _objective_error("kl_clamp", self.kl_clamp, "a finite number > 0")
        if self.max_completion_length is not None and not _int_at_least(self.max_completion_length, 1):
            raise _objective_error("max_completion_length", self.max_completion_length, "a positive integer")
        for name, low in (("num_iterations", 1), ("gradient_accumulation_steps", 1), ("logprob_micro_batch", 0)):
            if not _int_at_least(getattr(self, name), low):
                raise _objective_error(name, getattr(self, name), f"an integer ≥ {low}")
        if self.num_iterations > 1 and self.gradient_accumulation_steps > 1:
            raise ConfigError("rl.num_iterations > 1 and rl.gradient_accumulation_steps > 1 cannot be combined")


def _objective_error(field: str, value: object, expected: str) -> ConfigError:
    key = "rl.max_new_tokens" if field == "max_completion_length" else f"rl.{field}"
    return ConfigError(f"GRPO objective: {key}={value!r}, expected {expected}")


def _number_in(value: object, low: float, high: float, *, upper_open: bool = False) -> bool:
    """A real, finite number (not a bool) in ``[low, high]`` (``[low, high)`` when ``upper_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return low <= value < high if upper_open else low <= value <= high


def _int_at_least(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


# ------------------------------------------------------------------------------------------ rewards
def combine_rewards(per_function: torch.Tensor, weights: torch.Tensor | list[float]) -> torch.Tensor:
    """Weighted sum of reward functions, ignoring the ones that do not apply.

    ``r_n = Σ_f w_f · R[n, f]`` over the ``f`` with ``R[n, f]`` not NaN (a reward callback returning
    ``None`` — "not applicable" — is NaN here). A row where every function is NaN has no reward: it is
    NaN, and :func:`group_advantages` leaves it out of its group's baseline (TRL's ``nansum`` would
    score it 0 and pull the baseline towards 0).

    Args:
        per_function: ``[N, F]`` float rewards, NaN where not applicable. ±inf is an error.
        weights: ``[F]`` finite weights.

    Returns:
        ``[N]`` combined rewards (dtype of ``per_function``), NaN for rows without any reward.
    """
    weights = torch.as_tensor(weights, dtype=per_function.dtype, device=per_function.device)
    if per_function.dim() != 2 or weights.shape != (per_function.shape[1],):
        raise ValueError(
            f"combine_rewards expects per_function [N, F] and weights [F]; got {tuple(per_function.shape)} and {tuple(weights.shape)}"
        )
    if torch.isinf(per_function).any():
        raise ValueError("combine_rewards: a reward is ±inf (rewards must be finite, or NaN for 'not applicable')")
    if not torch.isfinite(weights).all():
        raise ValueError(f"combine_rewards: weights must be finite, got {weights.tolist()}")
    combined = (per_function * weights.unsqueeze(0)).nansum(dim=1)
    none_apply = torch.isnan(per_function).all(dim=1)
    return torch.where(none_apply, torch.full_like(combined, math.nan), combined)


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``[B*G]`` → ``[B, G]`` after checking the layout (NaN = no reward; ±inf is an error)."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if not isinstance(group_size, int) or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"group_size={group_size!r} must be a positive int dividing the {rewards.numel()} rewards")
    if torch.isinf(rewards).any():
        raise ValueError("rewards contain inf: combine the per-function rewards with combine_rewards first")
    return rewards.reshape(-1, group_size)


def _valid_stats(values: torch.Tensor, dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, std, valid)`` over the non-NaN entries (along ``dim``, or all): Bessel-corrected std
    (``n − 1``), 0 where fewer than 2 entries (TRL: a single sample has no spread); mean 0 where none."""
    valid = ~torch.isnan(values)
    filled = torch.where(valid, values, torch.zeros_like(values))
    keep = dim is not None
    count = valid.sum(dim=dim, keepdim=keep) if keep else valid.sum()
    mean = filled.sum(dim=dim, keepdim=keep) / count.clamp(min=1) if keep else filled.sum() / count.clamp(min=1)
    squares = torch.where(valid, (values - mean) ** 2, torch.zeros_like(values))
    total = squares.sum(dim=dim, keepdim=keep) if keep else squares.sum()
    std = torch.where(count >= 2, (total / (count - 1).clamp(min=1)).sqrt(), torch.zeros_like(total))
    return mean, std, valid


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """Group-relative advantages.

    With rewards ``r`` of shape ``[B*G]`` in group-major order (row ``b·G + g`` is completion ``g`` of
    prompt ``b``) and ``μ_b`` the mean of group ``b``::

        A_{b,g} = (r_{b,g} − μ_b) / (σ + 1e-4)

    where ``σ`` is the unbiased (Bessel, ``n − 1``) standard deviation of group ``b`` (``scale="group"``,
    GRPO), of all ``B·G`` rewards (``"batch"``), or ``σ + 1e-4`` is replaced by 1 (``"none"``, Dr. GRPO).
    A group with a single completion has σ = 0. A group whose rewards are all equal gets exactly A = 0
    (TRL computes ``(r − mean)/1e-4`` there, which is rounding noise of order 1e-12). A NaN reward (a
    completion no reward applies to, :func:`combine_rewards`) is left out of ``μ`` and ``σ`` and gets
    A = 0.

    Under DDP call it on the rewards gathered from every rank (so that ``"batch"`` sees the global
    batch and groups are never split), then keep the local slice — as TRL does.

    Returns:
        ``[B*G]`` advantages, dtype and device of ``rewards``.
    """
    if scale not in REWARD_SCALES:
        raise ValueError(f"scale={scale!r}; expected one of {list(REWARD_SCALES)}")
    grouped = _grouped(rewards, group_size)
    mean, std, valid = _valid_stats(grouped, dim=1)
    centred = torch.where(valid, grouped - mean, torch.zeros_like(grouped))
    high = torch.where(valid, grouped, torch.full_like(grouped, -math.inf)).amax(dim=1, keepdim=True)
    low = torch.where(valid, grouped, torch.full_like(grouped, math.inf)).amin(dim=1, keepdim=True)
    constant = high <= low  # all valid rewards equal (or none valid)
    centred = torch.where(constant, torch.zeros_like(centred), centred)  # exact 0, not mean rounding / 1e-4
    if scale == "group":
        centred = centred / (std + STD_EPS)
    elif scale == "batch":
        centred = centred / (_valid_stats(rewards)[1] + STD_EPS)
    return centred.reshape(-1)


def group_reward_stats(rewards: torch.Tensor, group_size: int) -> dict[str, float]:
    """TRL's reward metrics for one rollout batch (NaN rewards left out).

    ``reward`` = mean of ``r``; ``reward_std`` = mean over groups of the unbiased group std;
    ``frac_reward_zero_std`` = fraction of groups whose std is 0 (all rewards equal: no gradient
    from that prompt). ``rewards`` is ``[B*G]`` group-major as in :func:`group_advantages`.
    """
    grouped = _grouped(rewards, group_size).detach().double()
    _, std, valid = _valid_stats(grouped, dim=1)
    std = std.squeeze(1)
    return {
        "reward": _valid_stats(grouped)[0].item() if valid.any() else math.nan,
        "reward_std": std.mean().item(),
        "frac_reward_zero_std": torch.isclose(std, torch.zeros_like(std)).double().mean().item(),
    }


# -------------------------------------------------------------------------------------- log-probs
def _rowwise(logits: torch.Tensor, temperature: float, reduce) -> torch.Tensor:
    """Apply ``reduce(z_row, row_index)`` to ``z = logits / temperature`` one first-dim row at a time.

    Only one row's ``[…, V]`` is ever copied (temperature division, float32 upcast of half/bfloat16);
    the per-row results are stacked into ``logits.shape[:-1]``.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    low_precision = logits.dtype in (torch.float16, torch.bfloat16)
    if logits.dim() < 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must be [N, ..., V] with N ≥ 1, got shape {tuple(logits.shape)}")
    rows = []
    for index, row in enumerate(logits.unbind(0)):
        z = row.float() if low_precision else row
        rows.append(reduce(z / temperature if temperature != 1.0 else z, index))
    return torch.stack(rows)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the chosen tokens under the sampling distribution.

    ``out[n, t] = z[n, t, ids[n, t]] − logsumexp_v z[n, t, v]`` with ``z = logits / temperature``
    (the log-probs must match the distribution the completions were sampled from).

    Memory: the temperature division and the log-sum-exp run one row (``[T, V]``) at a time, so the
    full ``[N, T, V]`` log-softmax is never materialised; half/bfloat16 rows are upcast to float32 for
    the reduction and the result is float32 (ratios ``exp(logp − old)`` are sensitive to rounding).

    Args:
        logits: ``[N, T, V]`` (more generally ``[N, ..., V]``).
        ids: ``[N, T]`` token ids (the leading shape of ``logits``).
        temperature: > 0.

    Returns:
        ``[N, T]`` log-probs; differentiable w.r.t. ``logits``.
    """
    if ids.shape != logits.shape[:-1]:
        raise ValueError(f"ids shape {tuple(ids.shape)} must equal the logits' leading shape {tuple(logits.shape[:-1])}")
    ids = ids.long()

    def chosen_logprob(z: torch.Tensor, index: int) -> torch.Tensor:
        return z.gather(-1, ids[index].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)

    return _rowwise(logits, temperature, chosen_logprob)


def selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)`` at ``ids`` without the full log-softmax: :func:`token_logprobs` at temperature 1."""
    return token_logprobs(logits, ids, 1.0)


def token_entropies(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of each next-token distribution: ``H = logsumexp(z) − Σ_v softmax(z)_v · z_v``.

    ``z = logits / temperature``; ``logits`` ``[N, T, V]`` → ``[N, T]``, row by row as
    :func:`token_logprobs` (float32 for half inputs). Detach the result when it is only logged.
    """
    return _rowwise(logits, temperature, lambda z, _: torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1))


# ------------------------------------------------------------------------ engine/trainer mismatch
def truncated_importance_weights(old_logps: torch.Tensor, engine_logps: torch.Tensor, cap: float) -> torch.Tensor:
    """TRL's truncated importance sampling (TIS) weights for completions sampled by another engine.

    ``w = min(exp(old − engine), cap)`` per token, ``old`` the trainer's log-probs of the sampling policy
    and ``engine`` the sampling engine's (vLLM) log-probs of the same tokens, both ``[N, T]``; the result
    is detached (a constant factor on the per-token policy loss, :func:`grpo_loss`'s ``importance_weights``).
    """
    if old_logps.shape != engine_logps.shape:
        raise ValueError(f"old_logps {tuple(old_logps.shape)} and engine_logps {tuple(engine_logps.shape)} must have one shape")
    if not (math.isfinite(cap) and cap > 0.0):
        raise ValueError(f"importance sampling cap must be a positive finite number, got {cap!r}")
    return torch.exp(old_logps.detach() - engine_logps.to(old_logps.dtype)).clamp(max=cap)


def logprob_gap(logps: torch.Tensor, engine_logps: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """``{"mean", "max"}`` of ``|logps − engine_logps|`` over the active tokens (``mask`` 1); 0 when none."""
    active = mask.bool()
    gap = (logps.detach().float() - engine_logps.float()).abs()[active]
    if gap.numel() == 0:
        return {"mean": 0.0, "max": 0.0}
    return {"mean": gap.mean().item(), "max": gap.max().item()}


# ------------------------------------------------------------------------------------------- loss
def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the active tokens (count clamped at 1), detached."""
    return ((values * mask).sum() / mask.sum().clamp(min=1.0)).detach()


def _check_loss_inputs(logps, old_logps, ref_logps, advantages, mask, beta):
    if logps.dim() != 2:
        raise ValueError(f"logps must be [N, T], got shape {tuple(logps.shape)}")
    for name, tensor in (("old_logps", old_logps), ("ref_logps", ref_logps), ("mask", mask)):
        if tensor is not None and tensor.shape != logps.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} must equal logps shape {tuple(logps.shape)}")
    if advantages.shape != (logps.shape[0],):
        raise ValueError(f"advantages must be [N]={logps.shape[0]}, got shape {tuple(advantages.shape)}")
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta != 0 needs ref_logps (the reference model's per-token log-probs)")


def _aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_length, num_items_in_batch, world_size):
    """Reduce ``[N, T]`` per-token losses to a scalar (see :func:`grpo_loss`)."""
    total = (per_token * mask).sum()
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return total / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        length = per_token.shape[1] if max_completion_length is None else max_completion_length
        if not (isinstance(length, int) and length > 0):
            raise ValueError(f"max_completion_length must be a positive int, got {length!r}")
        return total / (per_token.shape[0] * length)
    if num_items_in_batch is None:
        return total / mask.sum().clamp(min=1.0)
    if not (isinstance(world_size, int) and world_size >= 1):
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    global_tokens = torch.as_tensor(num_items_in_batch, dtype=per_token.dtype, device=per_token.device).clamp(min=1.0)
    return total / (global_tokens / world_size)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    objective: GRPOObjective,
    *,
    num_items_in_batch: int | torch.Tensor | None = None,
    world_size: int = 1,
    entropies: torch.Tensor | None = None,
    importance_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO surrogate with an optional KL penalty.

    Per completion token ``(i, t)``, with ``ε_low``, ``ε_high``, ``β``, ``kl_clamp``, ``loss_type`` and
    ``max_completion_length`` from ``objective`` (:class:`GRPOObjective`)::

        ρ    = exp(logp − old)                                   (1 when old_logps is None)
        ℓ    = −w·min(ρ·A_i, clip(ρ, 1 − ε_low, 1 + ε_high)·A_i) + β·KL     (w = importance_weights, else 1)
        KL   = exp(Δ) − Δ − 1,  Δ = clamp(ref − logp, −kl_clamp, kl_clamp)      (k3 estimator)

    The clamp is a guard against overflow (verl clamps to ±20): for ``|ref − logp| < kl_clamp`` it
    changes neither the value nor the gradient; beyond, KL is frozen at its value at the bound (no
    gradient). Aggregation over the active tokens (``mask`` = 1), ``n_i`` tokens in row ``i``::

        grpo     (1/N) Σ_i [Σ_t ℓ_it / max(n_i, 1)]           an empty row contributes 0 and still counts
        bnpo     Σ ℓ / max(Σ n_i, 1)                          local batch
        dr_grpo  Σ ℓ / (N · max_completion_length)            default max_completion_length = T
        dapo     Σ ℓ / (num_items_in_batch / world_size)      num_items_in_batch: active tokens of the whole
                                                              global batch (all ranks; TRL gathers it);
                                                              None → local Σ n_i (clamped at 1)

    Under DDP the gradients are averaged over ``world_size`` ranks, hence the ``/ world_size`` in the
    ``dapo`` normaliser (as TRL): the averaged gradient is then that of ``Σ_all ℓ / num_items_in_batch``.
    Gradient accumulation is the caller's (divide ``grpo``/``bnpo``/``dr_grpo`` by the number of
    micro-batches; ``dapo`` with a global count needs nothing).

    Args:
        logps: ``[N, T]`` policy log-probs of the completion tokens (with grad).
        old_logps: ``[N, T]`` log-probs at sampling time, or None → ``logps.detach()`` (one optimizer
            step per rollout: ρ = 1 but the gradient is the policy gradient ``−A·∇logp``).
        ref_logps: ``[N, T]`` reference-model log-probs; may be None only when ``beta == 0``. When
            given, ``stats["kl"]`` is reported even with ``beta == 0``.
        advantages: ``[N]``.
        mask: ``[N, T]`` 1 for completion tokens, 0 for padding (bool or float). Values at masked
            positions are ignored (even NaN/inf there never reaches the loss or the gradient).
        objective: the loss settings (validated when it was built).
        num_items_in_batch, world_size: ``dapo``'s normaliser (see above).
        entropies: optional ``[N, T]`` per-token entropies, only for ``stats["entropy"]``.
        importance_weights: optional ``[N, T]`` constant weights of the policy term (the KL term is not
            weighted), e.g. :func:`truncated_importance_weights` for completions sampled by vLLM (TRL's TIS).

    Returns:
        ``(loss, stats)``: a scalar, and detached 0-dim tensors ``kl`` (mean over active tokens, when
        ``ref_logps`` is given), ``clip_ratio/low_mean`` (fraction of active tokens with
        ``ρ < 1 − ε_low`` and ``A < 0``), ``clip_ratio/high_mean`` (``ρ > 1 + ε_high`` and ``A > 0``),
        ``clip_ratio/region_mean`` (either), and ``entropy`` when ``entropies`` is given.
    """
    epsilon_low, epsilon_high, beta, kl_clamp = objective.epsilon_low, objective.epsilon_high, objective.beta, objective.kl_clamp
    _check_loss_inputs(logps, old_logps, ref_logps, advantages, mask, beta)
    active = mask.bool()
    weights = active.to(logps.dtype)
    logps = torch.where(active, logps, torch.zeros_like(logps))
    old = logps.detach() if old_logps is None else torch.where(active, old_logps.to(logps.dtype), logps.detach())
    adv = advantages.to(logps.dtype).unsqueeze(1)

    ratio = torch.exp(logps - old)
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if importance_weights is not None:
        if importance_weights.shape != logps.shape:
            raise ValueError(f"importance_weights shape {tuple(importance_weights.shape)} must equal logps shape {tuple(logps.shape)}")
        per_token = per_token * torch.where(active, importance_weights.detach().to(logps.dtype), 0.0)

    stats: dict[str, torch.Tensor] = {}
    if ref_logps is not None:
        ref = torch.where(active, ref_logps.to(logps.dtype), logps.detach())
        delta = torch.clamp(ref - logps, -kl_clamp, kl_clamp)
        kl = torch.exp(delta) - delta - 1.0
        if beta != 0.0:
            per_token = per_token + beta * kl
        stats["kl"] = _masked_mean(kl, weights)

    loss = _aggregate(per_token, weights, objective.loss_type, objective.max_completion_length, num_items_in_batch, world_size)

    low = ((ratio < 1.0 - epsilon_low) & (adv < 0)).to(logps.dtype)
    high = ((ratio > 1.0 + epsilon_high) & (adv > 0)).to(logps.dtype)
    stats["clip_ratio/low_mean"] = _masked_mean(low, weights)
    stats["clip_ratio/high_mean"] = _masked_mean(high, weights)
    stats["clip_ratio/region_mean"] = _masked_mean(torch.maximum(low, high), weights)
    if entropies is not None:
        if entropies.shape != logps.shape:
            raise ValueError(f"entropies shape {tuple(entropies.shape)} must equal logps shape {tuple(logps.shape)}")
        stats["entropy"] = _masked_mean(torch.where(active, entropies.to(logps.dtype), 0.0), weights)
    return loss, stats
