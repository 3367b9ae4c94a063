"""Metrics (torchmetrics): classification and grounding faithfulness.

Per evaluated dataset, the report entry is::

    {**ExpressionClassificationMetrics(classes).compute(),   # n, classes, accuracy, mean_class_accuracy,
                                                             # macro_f1, per_class_recall, confusion_matrix
     "parse_rate": ParseRate().compute(),
     "faithfulness": GroundingFaithfulness().compute()}     # au_precision, au_recall, mean_iou,
                                                             # hallucination_rate, consistency

passed through :func:`to_json_ready`.
"""

from tagfer.metrics.classification import (
    NO_ANSWER,
    ExpressionClassificationMetrics,
    ParseRate,
    answer_indices,
    classification_scores,
)
from tagfer.metrics.grounding import SCORE_NAMES, FaithfulnessCounts, GroundingFaithfulness, faithfulness_counts
from tagfer.metrics.jsonify import to_json_ready

__all__ = [
    "NO_ANSWER",
    "SCORE_NAMES",
    "ExpressionClassificationMetrics",
    "FaithfulnessCounts",
    "GroundingFaithfulness",
    "ParseRate",
    "answer_indices",
    "classification_scores",
    "faithfulness_counts",
    "to_json_ready",
]
