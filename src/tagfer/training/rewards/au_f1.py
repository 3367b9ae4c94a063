"""``au_f1``: Facial-R1's AU reward, for comparison with the IoU-based grounding reward."""

from __future__ import annotations

from collections.abc import Mapping

from tagfer.core.trace import ParsedTrace
from tagfer.training.rewards.au_sets import active_aus, set_f1
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import number, positive_int


class AUF1Reward(RewardCallback):
    """``R_AU = 2 · F1(cited AU set, detector active set) − 1`` (Facial-R1), boxes ignored.

    The cited set is every AU named in a step or the conclusion; the active set is the AUs with
    ``au_prob ≥ threshold`` (the ``top_k`` strongest when set). Citing no AU gives −1 (F1 = 0). When the
    detector finds no active AU the reward is ``None`` (not applicable: F1 against an empty set says
    nothing), and the weighted sum ignores it.

    Params: ``threshold`` (default 0.5), ``top_k`` (null: all active). Needs ``au_prob``.
    Range: [−1, 1] or None.
    """

    name = "au_f1"
    value_range = (-1.0, 1.0)
    required_keys = ("au_prob",)

    def __init__(self, weight: float = 1.0, *, threshold: float = 0.5, top_k: int | None = None) -> None:
        super().__init__(weight)
        self.threshold = number(self.name, "threshold", threshold, 0.0, 1.0)
        self.top_k = positive_int(self.name, "top_k", top_k, optional=True)

    def score(self, trace: ParsedTrace, au_prob: Mapping[str, float]) -> float | None:
        reference = active_aus(au_prob, self.threshold, self.top_k)
        if not reference:
            return None
        return 2.0 * set_f1(trace.cited_aus(), reference) - 1.0
