"""``format``: does the completion follow the TAG trace grammar?"""

from __future__ import annotations

from tagfer.core.trace import ParsedTrace
from tagfer.core.vocabulary import REGIONS
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import flag


def format_checks(parsed: ParsedTrace) -> list[bool]:
    """The four parts of a trace that partial credit counts: a class answer, a global analysis, steps
    that all parse with a known region and a box, and a conclusion whose label matches the answer."""
    return [
        parsed.answer is not None,
        bool(parsed.global_analysis),
        bool(parsed.steps) and all(step.region in REGIONS and step.box is not None for step in parsed.steps),
        parsed.conclusion_label is not None and parsed.conclusion_label == parsed.answer,
    ]


def think_as_required(parsed: ParsedTrace, require_think: bool | None) -> bool:
    """Whether the reasoning's ``<think>`` wrapping is what ``require_think`` asks (None: either way).

    ``parsed.valid and think_as_required(parsed, r)`` equals ``parse_trace(text, require_think=r).valid``:
    the requirement only adds a format error and changes no other field of the parse.
    """
    return require_think is None or parsed.has_think == require_think


class FormatReward(RewardCallback):
    """1 when the trace has no format error at all and wraps its reasoning in ``<think>`` as
    ``require_think`` asks (:func:`think_as_required`), else 0.

    With ``partial_credit: true`` an invalid trace gets ``0.5 × (fraction of`` :func:`format_checks`
    ``passed)``, so it always stays below half of a valid trace.

    Params: ``require_think`` (true: reasoning wrapped in ``<think>…</think>``; false: not wrapped;
    null: either — default), ``partial_credit`` (default false). Range: [0, 1] ({0, 1} without
    partial credit).
    """

    name = "format"
    value_range = (0.0, 1.0)

    def __init__(self, weight: float = 1.0, *, require_think: bool | None = None, partial_credit: bool = False) -> None:
        super().__init__(weight)
        self.require_think = flag(self.name, "require_think", require_think, optional=True)
        self.partial_credit = flag(self.name, "partial_credit", partial_credit)

    def score(self, trace: ParsedTrace) -> float:
        if trace.valid and think_as_required(trace, self.require_think):
            return 1.0
        if not self.partial_credit:
            return 0.0
        checks = format_checks(trace)
        return 0.5 * sum(checks) / len(checks)
