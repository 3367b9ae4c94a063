"""Grounding faithfulness: do the AUs and boxes a trace cites agree with the AU detector and the label?

For one completion (parsed with :func:`tagfer.core.trace.parse_trace`), the detector's ``au_prob``
(AU → probability) and ``au_box`` (AU → ``(x1, y1, x2, y2)``, in the SAME coordinate space as the
completion's boxes — convert before calling), and the predicted label:

* **cited** = the distinct AUs the trace names, in its steps or its conclusion
  (``ParsedTrace.cited_aus()``). Whatever the parser could read counts, also in a trace with format
  errors (those are measured by the parse rate); garbage cites nothing.
* **active** = ``{AU : au_prob[AU] ≥ threshold}``. An AU missing from ``au_prob`` is inactive.
* ``IoU(AU)`` = the grounding score ``g(AU)`` of :mod:`tagfer.core.citations` (the definition the
  AU-grounding reward uses too): the IoU of the FIRST box the trace gives the AU with its detector box
  when the AU is active; 0 for an inactive AU, an AU named without a valid box (e.g. only in the
  conclusion) or a detector box without area.

Per-sample counts (:class:`FaithfulnessCounts`) and the micro-averaged scores over a whole set
(sums of counts over all samples, then one division):

* ``au_precision = Σ |cited ∩ active| / Σ |cited|``
* ``au_recall = Σ |cited ∩ active| / Σ |active|``
* ``mean_iou = Σ_cited IoU(AU) / Σ |cited|`` (cited AUs without a box, or inactive, count 0)
* ``hallucination_rate = Σ |{AU ∈ cited : AU ∉ active or IoU(AU) < iou_threshold}| / Σ |cited|``
* ``consistency = Σ |cited ∩ prior(label)| / Σ |cited|`` over samples WITH a predicted label, where
  ``prior`` is :func:`tagfer.core.vocabulary.expression_prior` (``"emfacs"`` or ``"wide"``). Neutral's
  prior is empty: a neutral prediction that cites AUs is inconsistent for each of them, one that cites
  none adds nothing to either sum. A sample without a predicted label is left out of this score.

Micro-averaging weighs every cited AU equally, so a trace that cites five AUs counts five times as
much as one that cites one — the same unit the AU-grounding reward scores. A score whose denominator
is 0 is undefined: None per sample, NaN from :meth:`GroundingFaithfulness.compute`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor
from torchmetrics import Metric

from tagfer.core.citations import citation_ious
from tagfer.core.classes import CLASS_INDEX
from tagfer.core.trace import ParsedTrace, parse_trace
from tagfer.core.vocabulary import canonical_au, expression_prior

Box = tuple[float, float, float, float]

#: The keys of ``FaithfulnessCounts.scores()`` and ``GroundingFaithfulness.compute()`` (report schema).
SCORE_NAMES = ("au_precision", "au_recall", "mean_iou", "hallucination_rate", "consistency")


@dataclass(frozen=True)
class FaithfulnessCounts:
    """The counts behind the faithfulness scores (see the module docstring), for one or many samples.

    Attributes:
        cited: distinct cited AUs.
        active: detector-active AUs.
        cited_active: cited AUs that are active.
        iou_sum: Σ IoU over cited AUs.
        hallucinated: cited AUs that are inactive or whose IoU is under ``iou_threshold``.
        consistency_total: cited AUs of samples with a predicted label.
        consistent: of those, AUs in the predicted label's prior.
        au_iou: AU → IoU for every cited AU (per sample; empty once counts are summed).
    """

    cited: int = 0
    active: int = 0
    cited_active: int = 0
    iou_sum: float = 0.0
    hallucinated: int = 0
    consistency_total: int = 0
    consistent: int = 0
    au_iou: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: FaithfulnessCounts) -> FaithfulnessCounts:
        """Counts summed (``au_iou`` is dropped: it only describes one sample)."""
        return FaithfulnessCounts(**{n: getattr(self, n) + getattr(other, n) for n in _COUNT_NAMES})

    def scores(self) -> dict[str, float | None]:
        """The five micro-averaged scores of :data:`SCORE_NAMES`; None where the denominator is 0."""

        def ratio(numerator: float, denominator: int) -> float | None:
            return numerator / denominator if denominator else None

        return {
            "au_precision": ratio(self.cited_active, self.cited),
            "au_recall": ratio(self.cited_active, self.active),
            "mean_iou": ratio(self.iou_sum, self.cited),
            "hallucination_rate": ratio(self.hallucinated, self.cited),
            "consistency": ratio(self.consistent, self.consistency_total),
        }

    def to_json(self) -> dict:
        """Counts and scores in one JSON-ready dict (a ``predictions.jsonl`` field)."""
        return {**asdict(self), **self.scores()}


#: The summable fields of :class:`FaithfulnessCounts` (the metric's states).
_COUNT_NAMES = tuple(f.name for f in fields(FaithfulnessCounts) if f.name != "au_iou")


def faithfulness_counts(
    trace: ParsedTrace | object,
    au_prob: Mapping[str, float],
    au_box: Mapping[str, Sequence[float]],
    label: str | None,
    *,
    threshold: float = 0.5,
    iou_threshold: float = 0.5,
    prior: str = "emfacs",
) -> FaithfulnessCounts:
    """Faithfulness counts of one completion (module docstring for every definition).

    Args:
        trace: a ``ParsedTrace`` or anything else, which is parsed with ``parse_trace`` (never raises).
        au_prob: detector AU → probability; keys are canonical AU names (``"AU4"``).
        au_box: detector AU → ``(x1, y1, x2, y2)`` in the completion's box coordinates.
        label: the predicted class name (canonical), or None when the completion has no answer.
        threshold: an AU is active when its probability is ≥ this.
        iou_threshold: a cited box with IoU under this is a hallucination.
        prior: ``"emfacs"`` or ``"wide"`` (label–AU consistency).

    Raises:
        ValueError: on malformed detector input or label (never on the completion).
    """
    _check_thresholds(threshold, iou_threshold)
    au_prob, au_box = _detector_inputs(au_prob, au_box)
    if label is not None and label not in CLASS_INDEX:
        raise ValueError(f"label {label!r} is not a canonical class name; expected one of {list(CLASS_INDEX)} or None")
    parsed = trace if isinstance(trace, ParsedTrace) else parse_trace(trace)

    active = {au for au, p in au_prob.items() if p >= threshold}
    au_iou = citation_ious(parsed, {au: box for au, box in au_box.items() if au in active})
    cited = list(au_iou)

    expected = set(expression_prior(label, prior)) if label is not None else set()
    return FaithfulnessCounts(
        cited=len(cited),
        active=len(active),
        cited_active=sum(au in active for au in cited),
        iou_sum=sum(au_iou.values()),
        hallucinated=sum(au not in active or au_iou[au] < iou_threshold for au in cited),
        consistency_total=len(cited) if label is not None else 0,
        consistent=sum(au in expected for au in cited) if label is not None else 0,
        au_iou=au_iou,
    )


class GroundingFaithfulness(Metric):
    """Micro-averaged grounding faithfulness over every update (DDP: all counts are summed over ranks).

    ``update(traces, au_probs, au_boxes, labels=None)``: ``N`` completions (strings or ``ParsedTrace``),
    ``N`` detector dicts of each kind, and ``N`` predicted class names (None → each trace's parsed
    answer). ``compute()`` returns float64 tensors keyed by :data:`SCORE_NAMES` (NaN when undefined).
    """

    is_differentiable = False
    higher_is_better = None  # precision/recall/IoU/consistency up, hallucination down
    full_state_update = False

    def __init__(self, threshold: float = 0.5, iou_threshold: float = 0.5, prior: str = "emfacs", **kwargs) -> None:
        super().__init__(**kwargs)
        _check_thresholds(threshold, iou_threshold)
        expression_prior("neutral", prior)  # raises on an unknown prior
        self.threshold, self.iou_threshold, self.prior = float(threshold), float(iou_threshold), prior
        for name in _COUNT_NAMES:
            dtype = torch.float64 if name == "iou_sum" else torch.long
            self.add_state(name, default=torch.zeros((), dtype=dtype), dist_reduce_fx="sum")

    def update(
        self,
        traces: Sequence[ParsedTrace | object],
        au_probs: Sequence[Mapping[str, float]],
        au_boxes: Sequence[Mapping[str, Sequence[float]]],
        labels: Sequence[str | None] | None = None,
    ) -> None:
        parsed = [t if isinstance(t, ParsedTrace) else parse_trace(t) for t in traces]
        if labels is None:
            labels = [p.answer for p in parsed]
        if not len(parsed) == len(au_probs) == len(au_boxes) == len(labels):
            raise ValueError(
                f"traces, au_probs, au_boxes and labels must have one entry per sample, got lengths "
                f"{len(parsed)}, {len(au_probs)}, {len(au_boxes)}, {len(labels)}"
            )
        total = FaithfulnessCounts()
        for index, (trace, prob, box, label) in enumerate(zip(parsed, au_probs, au_boxes, labels)):
            try:
                total = total + faithfulness_counts(
                    trace, prob, box, label, threshold=self.threshold, iou_threshold=self.iou_threshold, prior=self.prior
                )
            except ValueError as err:
                raise ValueError(f"sample {index} of the batch: {err}") from err
        for name in _COUNT_NAMES:
            state = getattr(self, name)
            state += getattr(total, name)

    def compute(self) -> dict[str, Tensor]:
        totals = FaithfulnessCounts(**{name: getattr(self, name).item() for name in _COUNT_NAMES})
        return {
            name: torch.tensor(math.nan if value is None else value, dtype=torch.float64, device=self.device)
            for name, value in totals.scores().items()
        }


def _check_thresholds(threshold: float, iou_threshold: float) -> None:
    for name, value in (("threshold", threshold), ("iou_threshold", iou_threshold)):
        if not (isinstance(value, numbers.Real) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _detector_inputs(au_prob: Mapping[str, float], au_box: Mapping[str, Sequence[float]]) -> tuple[dict[str, float], dict[str, Box]]:
    """``au_prob`` and ``au_box`` as plain float dicts (numpy/torch numbers and arrays accepted), checked."""
    for name, table in (("au_prob", au_prob), ("au_box", au_box)):
        if not isinstance(table, Mapping):
            raise ValueError(f"{name} must be a dict AU -> value, got {type(table).__name__}")
        for au in table:
            if not isinstance(au, str) or canonical_au(au) != au:
                raise ValueError(f"{name} key {au!r} is not a canonical AU name such as 'AU4'")
    probs: dict[str, float] = {}
    for au, p in au_prob.items():
        if not (isinstance(p, numbers.Real) and math.isfinite(p)):
            raise ValueError(f"au_prob[{au!r}] = {p!r} is not a finite number")
        probs[au] = float(p)
    boxes: dict[str, Box] = {}
    for au, box in au_box.items():
        try:
            values = torch.as_tensor(box, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            values = torch.empty(0)
        if values.shape != (4,) or not bool(values.isfinite().all()):
            raise ValueError(f"au_box[{au!r}] = {box!r} is not 4 finite numbers (x1, y1, x2, y2)")
        boxes[au] = tuple(values.tolist())
    return probs, boxes
