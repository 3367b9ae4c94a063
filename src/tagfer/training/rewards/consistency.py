"""``label_au_consistency``: do the cited AUs fit the predicted expression's EMFACS prototype?"""

from __future__ import annotations

from tagfer.core.trace import ParsedTrace
from tagfer.core.vocabulary import expression_prior
from tagfer.training.rewards.au_sets import set_f1
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import choice

PRIORS = ("emfacs", "wide")


class LabelAUConsistencyReward(RewardCallback):
    """F1 between the AUs the trace cites (steps and conclusion) and the prior AUs of its answer.

    ``reward = set_f1(cited, expression_prior(answer, prior))``. Neutral's prior is empty: citing no
    AU scores 1, citing any AU scores 0 (an AU-driven explanation contradicts "neutral"). No valid
    answer (none, several, unknown) → 0. Independent of the label and the detector: it checks the
    trace's internal coherence, not its truth.

    Params: ``prior`` (``emfacs`` default | ``wide``, :data:`tagfer.core.vocabulary.WIDE_CODEBOOK`).
    Range: [0, 1].
    """

    name = "label_au_consistency"
    value_range = (0.0, 1.0)

    def __init__(self, weight: float = 1.0, *, prior: str = "emfacs") -> None:
        super().__init__(weight)
        self.prior = choice(self.name, "prior", prior, PRIORS)

    def score(self, trace: ParsedTrace) -> float:
        if trace.answer is None:
            return 0.0
        return set_f1(trace.cited_aus(), expression_prior(trace.answer, self.prior))
