"""``SetScorer``: the metrics of one evaluated test set, and its entry in ``report.json``.

One scorer per test set holds the torchmetrics metrics of :mod:`tagfer.metrics`:
:class:`ExpressionClassificationMetrics` over the set's classes, :class:`ParseRate`, and — for a
reasoning model — :class:`GroundingFaithfulness`. The VLM evaluator and the vision-only baseline
both score through it, so every row of an ablation table comes from the same code.

The evaluators run in one process (also the baseline's, on rank 0 after a DDP fit), so the metrics are
built with ``sync_on_compute=False``: a rank-0-only ``compute()`` must not wait for the other ranks.
The metric states are sums, so sharding the evaluation across ranks would only need the default sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tagfer.core.trace import ParsedTrace
from tagfer.metrics import (
    SCORE_NAMES,
    ExpressionClassificationMetrics,
    FaithfulnessCounts,
    GroundingFaithfulness,
    ParseRate,
    answer_indices,
    faithfulness_counts,
    to_json_ready,
)


@dataclass(frozen=True)
class GroundingOptions:
    """How grounding faithfulness is scored (:mod:`tagfer.metrics.grounding`)."""

    threshold: float = 0.5  # au.threshold: an AU is active when its probability is ≥ this
    iou_threshold: float = 0.5  # eval.iou_threshold: a cited box under this IoU is hallucinated
    prior: str = "emfacs"  # eval.prior: the label–AU consistency prior

    @classmethod
    def from_config(cls, cfg) -> GroundingOptions:
        return cls(threshold=float(cfg.au.threshold), iou_threshold=float(cfg.eval.iou_threshold), prior=str(cfg.eval.prior))


class SetScorer:
    """Scores of one test set.

    Args:
        classes: the set's classes (rows of the confusion matrix, in this order).
        grounding: faithfulness options for completions with reasoning; None for a model without
            reasoning (the vision-only baseline): its parse rate is 1.0 (every output is a class) and its
            faithfulness scores are null (no AUs cited, no boxes).
    """

    def __init__(self, classes: Sequence[str], grounding: GroundingOptions | None):
        self.classes = tuple(classes)
        self.grounding = grounding
        self.classification = ExpressionClassificationMetrics(self.classes, sync_on_compute=False)
        self.parse_rate = ParseRate(sync_on_compute=False) if grounding is not None else None
        self.faithfulness = (
            GroundingFaithfulness(grounding.threshold, grounding.iou_threshold, grounding.prior, sync_on_compute=False)
            if grounding is not None
            else None
        )

    def update_labels(self, predictions: Sequence[str | None], labels: Sequence[str]) -> None:
        """Add samples: predicted class names (None = no answer) and true class names (in ``classes``)."""
        unknown = sorted({name for name in labels if name not in self.classes})
        if unknown:
            raise ValueError(f"true labels {unknown} are not among the scored classes {list(self.classes)}")
        self.classification.update(answer_indices(list(predictions), self.classes), [self.classes.index(n) for n in labels])

    def update_traces(
        self,
        traces: Sequence[ParsedTrace],
        labels: Sequence[str],
        au_probs: Sequence[Mapping[str, float]],
        au_boxes: Sequence[Mapping[str, Sequence[float]]],
    ) -> list[FaithfulnessCounts]:
        """Add parsed completions with the detector's evidence (boxes in the completions' space).

        Returns the per-sample faithfulness counts (for ``predictions.jsonl``).
        """
        if self.grounding is None:
            raise ValueError("this scorer was built without grounding options (a model without reasoning)")
        self.update_labels([t.answer for t in traces], labels)
        self.parse_rate.update(list(traces))
        self.faithfulness.update(list(traces), au_probs, au_boxes)
        g = self.grounding
        return [
            faithfulness_counts(t, p, b, t.answer, threshold=g.threshold, iou_threshold=g.iou_threshold, prior=g.prior)
            for t, p, b in zip(traces, au_probs, au_boxes)
        ]

    def entry(self) -> dict:
        """The set's ``report.json`` entry (JSON-ready; NaN → null)."""
        scores = self.classification.compute()
        if self.grounding is None:
            parse_rate: object = 1.0
            faithfulness: dict = dict.fromkeys(SCORE_NAMES)
        else:
            parse_rate = self.parse_rate.compute()
            faithfulness = self.faithfulness.compute()
        return to_json_ready(
            {
                "n": scores["n"],
                "classes": scores["classes"],
                "accuracy": scores["accuracy"],
                "mean_class_accuracy": scores["mean_class_accuracy"],
                "macro_f1": scores["macro_f1"],
                "parse_rate": parse_rate,
                "faithfulness": faithfulness,
                "confusion_matrix": scores["confusion_matrix"],
                "per_class_recall": dict(zip(self.classes, scores["per_class_recall"].tolist())),
            }
        )
