"""The GRPO objective against plain, loop-by-loop float64 reference implementations written here."""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from tagfer.core.config import LOSS_TYPES, ConfigError
from tagfer.training.grpo import (
    GRPOObjective,
    combine_rewards,
    group_advantages,
    group_reward_stats,
    grpo_loss,
    selective_log_softmax,
    token_entropies,
    token_logprobs,
)

LOSS_DEFAULTS = dict(
    loss_type="dapo", epsilon_low=0.2, epsilon_high=None, beta=0.0, kl_clamp=20.0, scale_rewards="group",
    max_completion_length=None, num_iterations=1, gradient_accumulation_steps=1, logprob_micro_batch=0,
)  # fmt: skip


def objective(**fields) -> GRPOObjective:
    """An objective with :data:`LOSS_DEFAULTS` and ``fields`` overriding them."""
    return GRPOObjective(**{**LOSS_DEFAULTS, **fields})


# ------------------------------------------------------------------------------------ references


def ref_std(values: list[float]) -> float:
    """Bessel-corrected standard deviation; 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def ref_advantages(rewards: list[float], group_size: int, scale: str) -> list[float]:
    out = []
    batch_std = ref_std(rewards)
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean = sum(group) / len(group)
        for r in group:
            if max(group) == min(group):
                out.append(0.0)  # the specification: equal rewards carry no signal
            elif scale == "group":
                out.append((r - mean) / (ref_std(group) + 1e-4))
            elif scale == "batch":
                out.append((r - mean) / (batch_std + 1e-4))
            else:
                out.append(r - mean)
    return out


def ref_clip(value, low, high):
    """clip with python branches: a constant outside [low, high] (no gradient), else the value itself."""
    if value.item() < low:
        return torch.tensor(low, dtype=torch.float64)
    if value.item() > high:
        return torch.tensor(high, dtype=torch.float64)
    return value


def ref_loss(lp, old, ref, adv, mask, *, eps_low, eps_high, beta, loss_type, max_len, num_items, world_size, clamp):
    """Per token, per sequence, with python scalars of autograd tensors (float64)."""
    n_rows, n_cols = lp.shape
    eps_high = eps_low if eps_high is None else eps_high
    row_sums, row_counts = [], []
    kl_values, low_flags, high_flags = [], [], []
    for i in range(n_rows):
        row_sum = torch.tensor(0.0, dtype=torch.float64)
        count = 0
        for t in range(n_cols):
            if not mask[i][t]:
                continue
            count += 1
            old_value = lp[i, t].detach() if old is None else old[i, t]
            ratio = torch.exp(lp[i, t] - old_value)
            a = float(adv[i])
            unclipped = ratio * a
            clipped = ref_clip(ratio, 1 - eps_low, 1 + eps_high) * a
            token_loss = -(unclipped if unclipped.item() <= clipped.item() else clipped)
            if ref is not None:
                delta = ref[i, t] - lp[i, t]
                delta = ref_clip(delta, -clamp, clamp)
                kl = torch.exp(delta) - delta - 1
                kl_values.append(kl.item())
                token_loss = token_loss + beta * kl
            low_flags.append(ratio.item() < 1 - eps_low and a < 0)
            high_flags.append(ratio.item() > 1 + eps_high and a > 0)
            row_sum = row_sum + token_loss
        row_sums.append(row_sum)
        row_counts.append(count)
    total = sum(row_sums)
    active = sum(row_counts)
    if loss_type == "grpo":
        loss = sum(s / max(c, 1) for s, c in zip(row_sums, row_counts)) / n_rows
    elif loss_type == "bnpo":
        loss = total / max(active, 1)
    elif loss_type == "dr_grpo":
        loss = total / (n_rows * (n_cols if max_len is None else max_len))
    else:
        loss = total / (max(active, 1) if num_items is None else num_items / world_size)
    stats = {
        "clip_ratio/low_mean": sum(low_flags) / max(active, 1),
        "clip_ratio/high_mean": sum(high_flags) / max(active, 1),
        "clip_ratio/region_mean": sum(a or b for a, b in zip(low_flags, high_flags)) / max(active, 1),
    }
    if ref is not None:
        stats["kl"] = sum(kl_values) / max(active, 1)
    return loss, stats


# ------------------------------------------------------------------------------------- advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("group_size,num_groups", [(1, 3), (2, 4), (4, 3), (8, 2)])
def test_group_advantages_match_reference(scale, group_size, num_groups):
    generator = torch.Generator().manual_seed(group_size * 10 + num_groups)
    rewards = torch.rand(group_size * num_groups, generator=generator, dtype=torch.float64) * 3 - 1
    rewards[:group_size] = 0.7  # one constant group
    got = group_advantages(rewards, group_size, scale)
    expected = torch.tensor(ref_advantages(rewards.tolist(), group_size, scale), dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert torch.all(got[:group_size] == 0)


def test_group_advantages_constant_groups_are_zero_and_order_is_group_major():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 2.0])
    adv = group_advantages(rewards, 3, "group")
    assert adv[:3].tolist() == [0.0, 0.0, 0.0]
    # second group: mean 2/3, unbiased std sqrt(4/3)
    std = math.sqrt(((2 / 3) ** 2 * 2 + (4 / 3) ** 2) / 2)
    assert adv[5].item() == pytest.approx((2 - 2 / 3) / (std + 1e-4), rel=1e-6)


def test_group_advantages_reject_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="inf"):
        group_advantages(torch.tensor([0.0, math.inf]), 2)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(4), 2, "groups")
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 2), 2)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_rows_without_reward_are_left_out_of_the_baseline(scale):
    """A completion no reward applies to (NaN) gets A = 0 and the others get exactly the advantages of
    their group without it."""
    rewards = torch.tensor([1.0, math.nan, 0.0, 2.0, 0.5, 0.5, math.nan, 3.0], dtype=torch.float64)
    got = group_advantages(rewards, 4, scale)
    assert got[1] == 0 and got[6] == 0
    # reference: the same groups with the NaN rows removed (groups of 3), by the pure-Python formula
    first = ref_advantages([1.0, 0.0, 2.0], 3, "group" if scale == "group" else "none")
    second = ref_advantages([0.5, 0.5, 3.0], 3, "group" if scale == "group" else "none")
    expected = first + second
    if scale == "batch":
        expected = [value / (ref_std([1.0, 0.0, 2.0, 0.5, 0.5, 3.0]) + 1e-4) for value in expected]
    torch.testing.assert_close(got[[0, 2, 3, 4, 5, 7]], torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert group_reward_stats(rewards, 4)["reward"] == pytest.approx(7.0 / 6)


def test_group_reward_stats_match_reference():
    rewards = torch.tensor([1.0, 1.0, 0.0, 2.0, 3.0, 3.0])
    stats = group_reward_stats(rewards, 2)
    assert stats["reward"] == pytest.approx(10 / 6)
    assert stats["reward_std"] == pytest.approx((0 + ref_std([0.0, 2.0]) + 0) / 3)
    assert stats["frac_reward_zero_std"] == pytest.approx(2 / 3)


def test_combine_rewards_nansum_matches_loop():
    per_function = torch.tensor([[1.0, math.nan, 0.5], [math.nan, math.nan, math.nan], [0.0, 2.0, -1.0]])
    weights = [1.0, 0.5, 2.0]
    expected = [sum(w * v for w, v in zip(weights, row) if not math.isnan(v)) for row in per_function.tolist()]
    expected[1] = math.nan  # no function applies: no reward
    assert combine_rewards(per_function, weights).tolist() == pytest.approx(expected, nan_ok=True)
    with pytest.raises(ValueError, match="inf"):
        combine_rewards(torch.tensor([[math.inf]]), [1.0])
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        combine_rewards(per_function, [1.0])


# -------------------------------------------------------------------------------------------- loss

CASES = {
    # name: (use old, use ref, beta, epsilon_high)
    "on_policy": (False, False, 0.0, None),
    "old": (True, False, 0.0, None),
    "old_kl": (True, True, 0.04, 0.28),
    "on_policy_kl": (False, True, 0.5, None),
    "ref_logged_beta0": (True, True, 0.0, 0.28),
}
SHAPES = [(1, 1), (3, 5), (6, 7), (4, 2)]


def random_inputs(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    n_rows, n_cols = shape
    lp = -torch.rand(shape, generator=generator, dtype=torch.float64) * 3
    old = lp + torch.randn(shape, generator=generator, dtype=torch.float64) * 0.3
    ref = lp + torch.randn(shape, generator=generator, dtype=torch.float64) * 0.5
    adv = torch.randn(n_rows, generator=generator, dtype=torch.float64)
    mask = torch.rand(shape, generator=generator) > 0.3
    if n_rows > 2:
        mask[1] = False  # an empty row
    if n_rows > 3:
        adv[3] = 0.0  # a constant group's completion: never counted as clipped
    return lp, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", SHAPES)
def test_grpo_loss_and_gradient_match_reference(loss_type, case, shape):
    use_old, use_ref, beta, eps_high = CASES[case]
    lp, old, ref, adv, mask = random_inputs(shape, seed=zlib.crc32(repr((loss_type, case, shape)).encode()))
    extra = {}
    if loss_type == "dr_grpo" and shape[1] > 1:
        extra["max_completion_length"] = shape[1] + 3
    if loss_type == "dapo" and shape[0] > 1:
        extra.update(num_items_in_batch=int(mask.sum()) + 11, world_size=2)
    settings = objective(
        epsilon_low=0.2, epsilon_high=eps_high, beta=beta, loss_type=loss_type, kl_clamp=20.0,
        max_completion_length=extra.get("max_completion_length"),
    )  # fmt: skip
    counts = {key: extra[key] for key in ("num_items_in_batch", "world_size") if key in extra}

    policy = lp.clone().requires_grad_(True)
    loss, stats = grpo_loss(policy, old if use_old else None, ref if use_ref else None, adv, mask, settings, **counts)
    loss.backward()

    reference = lp.clone().requires_grad_(True)
    expected, expected_stats = ref_loss(
        reference, old if use_old else None, ref if use_ref else None, adv, mask.tolist(),
        eps_low=0.2, eps_high=eps_high, beta=beta, loss_type=loss_type,
        max_len=extra.get("max_completion_length"), num_items=extra.get("num_items_in_batch"),
        world_size=extra.get("world_size", 1), clamp=20.0,
    )  # fmt: skip
    if torch.is_tensor(expected) and expected.requires_grad:
        expected.backward()
    grad_expected = reference.grad if reference.grad is not None else torch.zeros_like(lp)

    assert loss.item() == pytest.approx(float(torch.as_tensor(expected).detach()), rel=1e-9, abs=1e-12)
    torch.testing.assert_close(policy.grad, grad_expected, rtol=1e-9, atol=1e-12)
    assert set(stats) == set(expected_stats)
    for key, value in expected_stats.items():
        assert not stats[key].requires_grad
        assert stats[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_on_policy_loss_is_minus_mean_advantage_and_gradient_is_policy_gradient(loss_type):
    lp, _, _, adv, mask = random_inputs((5, 4), seed=3)
    policy = lp.clone().requires_grad_(True)
    loss, stats = grpo_loss(policy, None, None, adv, mask, objective(loss_type=loss_type))
    loss.backward()
    counts = mask.sum(1).double()
    n_rows, n_cols = mask.shape
    active = counts.sum()
    # ratio ≡ 1: every active token contributes −A_i; the gradient is −A_i · (aggregation weight of the token)
    if loss_type == "grpo":
        token_weight = torch.where(counts > 0, 1.0 / (n_rows * counts.clamp(min=1)), 0.0)
        expected = -(adv * (counts > 0)).sum() / n_rows
    elif loss_type in ("bnpo", "dapo"):
        token_weight = torch.full((n_rows,), 1.0 / active.item(), dtype=torch.float64)
        expected = -(adv * counts).sum() / active
    else:
        token_weight = torch.full((n_rows,), 1.0 / (n_rows * n_cols), dtype=torch.float64)
        expected = -(adv * counts).sum() / (n_rows * n_cols)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    expected_grad = -(adv * token_weight).unsqueeze(1) * mask
    torch.testing.assert_close(policy.grad, expected_grad, rtol=1e-10, atol=1e-14)
    assert stats["clip_ratio/region_mean"].item() == 0.0


def test_masked_positions_never_reach_loss_or_gradient():
    lp, old, ref, adv, mask = random_inputs((4, 6), seed=5)
    poisoned = lp.clone()
    poisoned[~mask] = math.nan
    old_poisoned = old.clone()
    old_poisoned[~mask] = math.inf
    policy = poisoned.requires_grad_(True)
    loss, stats = grpo_loss(policy, old_poisoned, ref, adv, mask, objective(beta=0.1, loss_type="grpo"))
    loss.backward()
    clean = lp.clone().requires_grad_(True)
    clean_loss, _ = grpo_loss(clean, old, ref, adv, mask, objective(beta=0.1, loss_type="grpo"))
    clean_loss.backward()
    assert loss.item() == pytest.approx(clean_loss.item())
    torch.testing.assert_close(policy.grad, clean.grad)
    assert torch.all(policy.grad[~mask] == 0)
    assert all(math.isfinite(v.item()) for v in stats.values())


def test_kl_clamp_is_a_guard():
    lp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0 + 5.0, -2.0 + 30.0]], dtype=torch.float64)  # Δ = 5 (inside), 30 (outside)
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = grpo_loss(lp, None, ref, torch.zeros(1, dtype=torch.float64), mask, objective(beta=1.0, loss_type="bnpo", kl_clamp=20.0))
    loss.backward()
    inside, outside = math.exp(5) - 5 - 1, math.exp(20) - 20 - 1
    assert loss.item() == pytest.approx((inside + outside) / 2)
    assert lp.grad[0, 0].item() == pytest.approx(-(math.exp(5) - 1) / 2)  # d/dlogp of exp(Δ)−Δ−1 = −(exp(Δ) − 1)
    assert lp.grad[0, 1].item() == 0.0
    assert stats["kl"].item() == pytest.approx((inside + outside) / 2)


def test_entropy_stat_and_argument_errors():
    lp, old, ref, adv, mask = random_inputs((3, 4), seed=9)
    entropies = torch.rand(3, 4, dtype=torch.float64)
    _, stats = grpo_loss(lp, old, None, adv, mask, objective(), entropies=entropies)
    assert stats["entropy"].item() == pytest.approx((entropies * mask).sum().item() / mask.sum().item())
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_loss(lp, old, None, adv, mask, objective(beta=0.1))
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(lp, old, None, adv, mask, objective(loss_type="ppo"))
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(lp, old, None, adv[:2], mask, objective())
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(lp, old, None, adv, mask[:, :2], objective())


def test_dapo_without_global_count_equals_bnpo():
    lp, old, ref, adv, mask = random_inputs((4, 5), seed=11)
    dapo, _ = grpo_loss(lp, old, ref, adv, mask, objective(beta=0.04, loss_type="dapo"))
    bnpo, _ = grpo_loss(lp, old, ref, adv, mask, objective(beta=0.04, loss_type="bnpo"))
    assert dapo.item() == pytest.approx(bnpo.item())


@pytest.mark.parametrize(
    "fields,key",
    [
        ({"loss_type": "ppo"}, r"rl\.loss_type='ppo', expected one of \['grpo', 'bnpo', 'dr_grpo', 'dapo'\]"),
        ({"scale_rewards": "global"}, r"rl\.scale_rewards='global'"),
        ({"epsilon_low": 1.0}, r"rl\.epsilon_low=1\.0"),
        ({"epsilon_high": -0.1}, r"rl\.epsilon_high=-0\.1"),
        ({"beta": -0.04}, r"rl\.beta=-0\.04"),
        ({"beta": math.nan}, r"rl\.beta=nan"),
        ({"kl_clamp": 0.0}, r"rl\.kl_clamp=0\.0"),
        ({"max_completion_length": 0}, r"rl\.max_new_tokens=0"),
        ({"num_iterations": 0}, r"rl\.num_iterations=0"),
        ({"gradient_accumulation_steps": 1.5}, r"rl\.gradient_accumulation_steps=1\.5"),
        ({"logprob_micro_batch": -1}, r"rl\.logprob_micro_batch=-1"),
        ({"num_iterations": 2, "gradient_accumulation_steps": 2}, r"rl\.num_iterations > 1 and rl\.gradient_accumulation_steps > 1"),
    ],
)
def test_objective_rejects_bad_settings_naming_the_key(fields, key):
    with pytest.raises(ConfigError, match=key):
        objective(**fields)


def test_objective_is_frozen_and_defaults_epsilon_high_to_epsilon_low():
    settings = objective(epsilon_low=0.25)
    assert settings.epsilon_high == 0.25 and objective(epsilon_high=0.28).epsilon_high == 0.28
    with pytest.raises(AttributeError):
        settings.beta = 1.0


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_listed_loss_type_aggregates(loss_type):
    """The one list of loss types (tagfer.core.config.LOSS_TYPES) is the one the loss implements."""
    lp, old, ref, adv, mask = random_inputs((3, 4), seed=13)
    loss, _ = grpo_loss(lp, old, ref, adv, mask, objective(loss_type=loss_type, beta=0.04))
    assert torch.isfinite(loss)


# ---------------------------------------------------------------------------------------- log-probs


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.5])
def test_token_logprobs_match_log_softmax(temperature):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=generator, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 11, (3, 5), generator=generator)
    got = token_logprobs(logits, ids, temperature)
    got.sum().backward()
    grad = logits.grad.clone()
    logits.grad = None
    expected = torch.stack(
        [torch.stack([torch.log_softmax(logits[n, t] / temperature, -1)[ids[n, t]] for t in range(5)]) for n in range(3)]
    )
    expected.sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(grad, logits.grad)
    if temperature == 1.0:
        torch.testing.assert_close(selective_log_softmax(logits, ids), expected)


def test_token_logprobs_half_precision_is_float32_and_close():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 50, generator=generator) * 4
    ids = torch.randint(0, 50, (2, 4), generator=generator)
    got = token_logprobs(logits.bfloat16(), ids, 0.9)
    assert got.dtype == torch.float32
    expected = torch.log_softmax(logits.bfloat16().float() / 0.9, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(logits, ids, 0.0)
    with pytest.raises(ValueError, match="ids shape"):
        token_logprobs(logits, ids[:, :2])


def test_token_entropies_match_definition():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 7, generator=generator, dtype=torch.float64)
    got = token_entropies(logits, 0.8)
    probs = torch.softmax(logits / 0.8, -1)
    expected = -(probs * torch.log(probs)).sum(-1)
    torch.testing.assert_close(got, expected)
