"""Build reward callbacks by name from the config (``rl.rewards``)."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from tagfer.core.config import ConfigError
from tagfer.training.rewards.answer import AnswerReward
from tagfer.training.rewards.au_f1 import AUF1Reward
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.consistency import LabelAUConsistencyReward
from tagfer.training.rewards.format import FormatReward
from tagfer.training.rewards.grounding import AUGroundingReward
from tagfer.training.rewards.length import LengthPenaltyReward

#: Registered reward name → callback class.
REWARDS: dict[str, type[RewardCallback]] = {
    cls.name: cls
    for cls in (
        FormatReward,
        AnswerReward,
        AUGroundingReward,
        LabelAUConsistencyReward,
        LengthPenaltyReward,
        AUF1Reward,
    )
}


def reward_params(cls: type[RewardCallback]) -> list[str]:
    """The ``params`` keys a reward accepts (its constructor's keyword-only arguments)."""
    signature = inspect.signature(cls.__init__)
    return [name for name, p in signature.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _as_mapping(spec: object, where: str) -> dict:
    if isinstance(spec, DictConfig):
        return OmegaConf.to_container(spec, resolve=True)
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return dataclasses.asdict(spec)
    if isinstance(spec, Mapping):
        return dict(spec)
    raise ConfigError(f"{where}: expected a mapping {{name, weight, params}}, got {type(spec).__name__}")


def build_reward(spec: object, where: str = "rl.rewards[?]") -> RewardCallback:
    """One callback from a :class:`tagfer.core.config.RewardSpec`, a DictConfig or a plain mapping."""
    data = _as_mapping(spec, where)
    unknown_fields = sorted(set(data) - {"name", "weight", "params"})
    if unknown_fields:
        raise ConfigError(f"{where}: unknown field(s) {unknown_fields}; a reward has name, weight, params")
    name = data.get("name")
    if name not in REWARDS:
        close = difflib.get_close_matches(str(name), list(REWARDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: unknown reward {name!r}{hint} (known rewards: {', '.join(REWARDS)})")
    cls = REWARDS[name]
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where} ({name}): params must be a mapping, got {params!r}")
    accepted = reward_params(cls)
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: reward {name!r} has no param {key!r}{hint} (its params: {', '.join(accepted) or 'none'})")
    try:
        return cls(data.get("weight", 1.0), **params)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def build_rewards(specs: Iterable[object]) -> list[RewardCallback]:
    """The callbacks for ``rl.rewards``, in order. Names must be unique (they are the logging keys)."""
    callbacks = [build_reward(spec, f"rl.rewards[{index}]") for index, spec in enumerate(specs)]
    names = [callback.name for callback in callbacks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"rl.rewards: reward(s) {repeated} listed more than once (one entry per reward)")
    if not callbacks:
        raise ConfigError("rl.rewards is empty: GRPO needs at least one reward")
    return callbacks
