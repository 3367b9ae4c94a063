"""The reward-callback interface, per-reward statistics, and the ``[N, F]`` reward matrix.

A reward callback has a ``name`` (its registry name, also the logging key ``rewards/<name>/…``), a
``weight`` and ``__call__(batch) -> list[float | None]``: one value per completion of ``batch``, a
:class:`tagfer.training.rewards.batch.GRPOBatch` (the step's typed record: each completion's text and
its parse — parsed once for every reward —, label id and name, AU probabilities, AU boxes in the model's
coordinate space, image extent, token count). A callback lists the fields it reads in ``required_keys``
and scores one completion at a time in ``score(trace, **fields)``.

``None`` means "not applicable to this completion": it becomes NaN in :func:`reward_matrix` and is
left out of the weighted sum (:func:`tagfer.training.grpo.combine_rewards`) and of the statistics.
Callbacks are plain objects: nothing here knows about Lightning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from tagfer.core.config import ConfigError
from tagfer.core.trace import ParsedTrace
from tagfer.training.rewards.batch import GRPOBatch


class NonFiniteRewardError(ValueError):
    """A reward callback returned ±inf or NaN (it must return finite numbers, or None)."""


class RewardCallback:
    """Base class: subclasses set ``name``, ``value_range``, ``required_keys`` and implement :meth:`score`.

    ``value_range`` is the documented ``(low, high)`` of every non-None value the reward returns;
    ``required_keys`` names the :class:`GRPOBatch` fields :meth:`score` takes besides the parsed trace.
    """

    name: str = ""
    value_range: tuple[float, float] = (0.0, 1.0)
    required_keys: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"reward {self.name!r}: weight={weight!r}, expected a finite number")
        self.weight = float(weight)

    def score(self, trace: ParsedTrace, **row) -> float | None:
        """The reward of one parsed completion; ``row`` holds its ``required_keys`` fields."""
        raise NotImplementedError

    def __call__(self, batch: GRPOBatch) -> list[float | None]:
        columns = {}
        for key in self.required_keys:
            columns[key] = getattr(batch, key)
            if columns[key] is None:
                known = sorted(f.name for f in dataclasses.fields(batch) if getattr(batch, f.name) is not None)
                raise KeyError(f"reward {self.name!r} needs batch.{key} (fields present: {known})")
        return [self.score(trace, **{key: column[i] for key, column in columns.items()}) for i, trace in enumerate(batch.trace)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight:g})"


def reward_stats(values: Sequence[float | None]) -> dict[str, float]:
    """``{"mean", "std"}`` of the applicable (non-None) values, as TRL logs ``rewards/<name>/…``.

    ``std`` is Bessel-corrected (``n − 1``, TRL's ``nanstd``); with no value both are NaN, with one
    value ``std`` is NaN.
    """
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return {"mean": math.nan, "std": math.nan}
    mean = sum(kept) / len(kept)
    if len(kept) < 2:
        return {"mean": mean, "std": math.nan}
    variance = sum((v - mean) ** 2 for v in kept) / (len(kept) - 1)
    return {"mean": mean, "std": math.sqrt(variance)}


def reward_matrix(callbacks: Sequence[RewardCallback], batch: GRPOBatch) -> torch.Tensor:
    """Run every callback: ``[N, F]`` float32, column ``f`` = ``callbacks[f]``, NaN where it returned None.

    Raises ValueError naming the reward when it returns the wrong number of values, and
    :class:`NonFiniteRewardError` for a non-finite value (NaN must be spelled ``None``); the GRPO module
    skips such a step.
    """
    columns = []
    for callback in callbacks:
        values = callback(batch)
        if len(values) != len(batch):
            raise ValueError(f"reward {callback.name!r} returned {len(values)} values for {len(batch)} completions")
        bad = [v for v in values if v is not None and not math.isfinite(v)]
        if bad:
            raise NonFiniteRewardError(f"reward {callback.name!r} returned non-finite values {bad[:3]} (use None for 'not applicable')")
        columns.append([math.nan if v is None else float(v) for v in values])
    if not columns:
        return torch.zeros((len(batch), 0), dtype=torch.float32)
    return torch.tensor(columns, dtype=torch.float32).T.contiguous()
