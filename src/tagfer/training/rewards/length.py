"""``length_penalty``: DAPO's soft overlong punishment."""

from __future__ import annotations

from tagfer.core.trace import ParsedTrace
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import choice, param_error, positive_int

UNITS = ("chars", "tokens")


def overlong_penalty(length: float, soft_length: int, max_length: int) -> float:
    """DAPO's overlong shaping: 0 up to ``soft_length``, then a linear ramp to −1 at ``max_length``, −1 beyond.

    ``penalty = clip((soft_length − length) / (max_length − soft_length), −1, 0)``.
    """
    return max(-1.0, min(0.0, (soft_length - length) / (max_length - soft_length)))


class LengthPenaltyReward(RewardCallback):
    """:func:`overlong_penalty` of each completion's length.

    Params: ``soft_length`` (default 1024), ``max_length`` (> soft_length, default 1536), ``unit``:
    ``chars`` (default; ``len(batch.text[i])``) or ``tokens`` (reads ``batch.completion_length``, the
    token counts the trainer knows; DAPO's original unit). Range: [−1, 0].
    """

    name = "length_penalty"
    value_range = (-1.0, 0.0)

    def __init__(self, weight: float = 1.0, *, soft_length: int = 1024, max_length: int = 1536, unit: str = "chars") -> None:
        super().__init__(weight)
        self.soft_length = positive_int(self.name, "soft_length", soft_length)
        self.max_length = positive_int(self.name, "max_length", max_length)
        if self.max_length <= self.soft_length:
            raise param_error(self.name, "max_length", max_length, f"an integer > soft_length={self.soft_length}")
        self.unit = choice(self.name, "unit", unit, UNITS)
        self.required_keys = ("completion_length",) if self.unit == "tokens" else ("text",)

    def score(self, trace: ParsedTrace, completion_length: int | None = None, text: str | None = None) -> float:
        length = len(text) if completion_length is None else completion_length
        return overlong_penalty(length, self.soft_length, self.max_length)
