"""The reward-callback interface, per-reward statistics, and the ``[N, F]`` reward matrix.

A reward callback has a ``name`` (its registry name, also the logging key ``rewards/<name>/…``), a
``weight`` and ``__call__(completions, batch) -> list[float | None]``. ``batch`` maps a key to a list
with one entry per completion (already repeated ``G`` times, group-major). The keys the built-in
rewards read:

* ``label``: canonical class name (:data:`tagfer.core.classes.CLASS_NAMES`);
* ``au_prob``: dict AU → detector probability;
* ``au_box``: dict AU → ``(x1, y1, x2, y2)`` in the model family's coordinate space (the space of the
  completion's boxes);
* ``image_extent``: ``(W, H)`` of that space (``(1000, 1000)`` for norm1000, the resized input size in
  pixels for the pixel convention);
* ``completion_length``: token count of each completion (only for ``length_penalty`` with
  ``unit: tokens``).

``None`` means "not applicable to this completion": it becomes NaN in :func:`reward_matrix` and is
left out of the weighted sum (:func:`tagfer.training.grpo.combine_rewards`) and of the statistics.
Callbacks are plain objects: nothing here knows about Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from tagfer.core.config import ConfigError


class NonFiniteRewardError(ValueError):
    """A reward callback returned ±inf or NaN (it must return finite numbers, or None)."""


class RewardCallback:
    """Base class: subclasses set ``name``, ``value_range``, ``required_keys`` and implement :meth:`score`.

    ``value_range`` is the documented ``(low, high)`` of every non-None value the reward returns.
    """

    name: str = ""
    value_range: tuple[float, float] = (0.0, 1.0)
    required_keys: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0) -> None:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"reward {self.name!r}: weight={weight!r}, expected a finite number")
        self.weight = float(weight)

    def score(self, completion: str, **row) -> float | None:
        """The reward of one completion; ``row`` holds ``required_keys`` for that completion."""
        raise NotImplementedError

    def __call__(self, completions: Sequence[str], batch: Mapping[str, Sequence]) -> list[float | None]:
        columns = {}
        for key in self.required_keys:
            if key not in batch:
                raise KeyError(f"reward {self.name!r} needs batch[{key!r}] (keys present: {sorted(batch)})")
            if len(batch[key]) != len(completions):
                raise ValueError(
                    f"reward {self.name!r}: batch[{key!r}] has {len(batch[key])} entries for {len(completions)} completions"
                )
            columns[key] = batch[key]
        return [
            self.score(completion, **{key: column[i] for key, column in columns.items()})
            for i, completion in enumerate(completions)
        ]

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


def reward_matrix(
    callbacks: Sequence[RewardCallback], completions: Sequence[str], batch: Mapping[str, Sequence]
) -> torch.Tensor:
    """Run every callback: ``[N, F]`` float32, column ``f`` = ``callbacks[f]``, NaN where it returned None.

    Raises ValueError naming the reward when it returns the wrong number of values, and
    :class:`NonFiniteRewardError` for a non-finite value (NaN must be spelled ``None``); the GRPO module
    skips such a step.
    """
    columns = []
    for callback in callbacks:
        values = callback(completions, batch)
        if len(values) != len(completions):
            raise ValueError(f"reward {callback.name!r} returned {len(values)} values for {len(completions)} completions")
        bad = [v for v in values if v is not None and not math.isfinite(v)]
        if bad:
            raise NonFiniteRewardError(f"reward {callback.name!r} returned non-finite values {bad[:3]} (use None for 'not applicable')")
        columns.append([math.nan if v is None else float(v) for v in values])
    if not columns:
        return torch.zeros((len(completions), 0), dtype=torch.float32)
    return torch.tensor(columns, dtype=torch.float32).T.contiguous()
