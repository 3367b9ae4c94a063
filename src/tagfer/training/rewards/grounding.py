"""``au_grounding``: do the boxes the trace cites match the AU detector's boxes?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tagfer.core.citations import citation_ious
from tagfer.core.config import ConfigError
from tagfer.core.trace import Box, ParsedTrace
from tagfer.training.rewards.au_sets import active_aus
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import choice, number, positive_int

NORMALIZATIONS = ("f1", "cited", "max")


def reference_box(au: str, box: object) -> Box:
    """A detector box: 4 finite numbers ``(x1, y1, x2, y2)``, or a ValueError naming the AU."""
    if (
        isinstance(box, Sequence)
        and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
    ):
        return tuple(float(v) for v in box)
    raise ValueError(f"batch.au_box[{au!r}] = {box!r} is not (x1, y1, x2, y2) with 4 finite numbers")


def grounding_score(total: float, n_cited: int, n_reference: int, normalize: str = "f1", recall_weight: float = 0.0) -> float:
    """The reward from ``S = Σ_a g(a)`` over the ``C = n_cited`` distinct cited AUs and ``R = n_reference``::

        f1      2·S / (C + R)                                   (default)
        cited   (1 − w)·S / C          + w·S / R                 precision (+ recall with weight w)
        max     (1 − w)·S / max(C, R)  + w·S / R                 Visual-RFT style

    ``S / R`` is 0 when ``R = 0``. Nothing cited (``C = 0``): 1 when ``R = 0`` (a face without an active
    AU, correctly grounded with ``(none)`` steps), else 0.
    """
    if n_cited == 0:
        return 0.0 if n_reference else 1.0
    if normalize == "f1":
        return 2.0 * total / (n_cited + n_reference)
    precision = total / (n_cited if normalize == "cited" else max(n_cited, n_reference))
    recall = total / n_reference if n_reference else 0.0
    return (1.0 - recall_weight) * precision + recall_weight * recall


class AUGroundingReward(RewardCallback):
    """An IoU-weighted F1 of the cited AUs against the detector's active AUs (TAG's AU-grounding reward).

    Reference set ``R``: AUs with ``au_prob ≥ threshold`` (the ``top_k`` strongest when set) that have a
    box in ``au_box``. Each distinct cited AU ``a`` scores ``g(a)`` — the IoU of the first box the trace
    gives it with its reference box, 0 when it is not in ``R`` or has no box
    (:mod:`tagfer.core.citations`, the definition the faithfulness metric uses). The reward is
    :func:`grounding_score` of ``S = Σ g(a)``, ``C`` cited AUs and ``|R|``; no step that parses → 0.

    Why F1 by default: it is 1 only when every reference AU is cited with its exact box and nothing else
    is cited, and dropping a cited AU whose box has IoU ≥ 0.5 never raises it (removing ``s`` from
    ``2S/(C+R)`` raises it only when ``s < S/(C+R) ≤ 1/2``). Precision alone (``normalize: cited``)
    pays 1.0 for citing one perfectly boxed AU of four active ones: a policy trained on it learns to cite
    fewer AUs (benchmarks/RESULTS.md, "Learning"). Adding a citation that does not match (a repeat, an
    inactive AU, a box without AU support) never raises any of the three forms.

    Params: ``threshold`` (default 0.5), ``normalize`` (``f1`` | ``cited`` | ``max``), ``recall_weight``
    in [0, 1] (``cited`` and ``max`` only; default 0), ``top_k`` (null: every active AU). Needs
    ``au_prob`` and ``au_box`` (model coordinate space). Range: [0, 1].
    """

    name = "au_grounding"
    value_range = (0.0, 1.0)
    required_keys = ("au_prob", "au_box")

    def __init__(
        self,
        weight: float = 1.0,
        *,
        threshold: float = 0.5,
        recall_weight: float = 0.0,
        normalize: str = "f1",
        top_k: int | None = None,
    ) -> None:
        super().__init__(weight)
        self.threshold = number(self.name, "threshold", threshold, 0.0, 1.0)
        self.recall_weight = number(self.name, "recall_weight", recall_weight, 0.0, 1.0)
        self.normalize = choice(self.name, "normalize", normalize, NORMALIZATIONS)
        if self.normalize == "f1" and self.recall_weight:
            raise ConfigError(f"reward {self.name!r}: params.recall_weight applies to normalize cited|max, not f1 (F1 pays recall already)")
        self.top_k = positive_int(self.name, "top_k", top_k, optional=True)

    def score(self, trace: ParsedTrace, au_prob: Mapping[str, float], au_box: Mapping[str, Box]) -> float:
        if not any(step.region for step in trace.steps):
            return 0.0
        reference = {au: reference_box(au, au_box[au]) for au in active_aus(au_prob, self.threshold, self.top_k) if au in au_box}
        scores = citation_ious(trace, reference)
        return grounding_score(sum(scores.values()), len(scores), len(reference), self.normalize, self.recall_weight)
