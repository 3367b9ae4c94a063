"""Expression classification metrics from one epoch-wide confusion matrix (torchmetrics, DDP-safe).

Inputs are class *positions in the evaluated class list* ``classes`` (e.g. the 7 RAF-DB classes), with
:data:`NO_ANSWER` (−1) for a completion that gives no valid answer. :func:`answer_indices` maps parsed
answers to those positions; an answer that is a canonical class but not in ``classes`` (the model says
"contempt" on a 7-class test set, in cross-dataset evaluation) also becomes −1: it cannot be right on
that set, and the report keeps one fixed shape, ``C × (C + 1)``.

The only state is the confusion matrix ``[C, C+1]`` (rows = true classes in ``classes`` order, columns =
predicted classes in the same order, then one last column "no valid answer among ``classes``"),
summed over every ``update`` and, under DDP, over ranks (``dist_reduce_fx="sum"``). Every score is
derived from it in :func:`classification_scores`, so nothing is ever averaged per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import MeanMetric, Metric
from torchmetrics.functional.classification import multiclass_confusion_matrix

from tagfer.core.classes import CLASS_INDEX
from tagfer.core.trace import ParsedTrace

#: Predicted index of a completion with no valid answer among the evaluated classes.
NO_ANSWER = -1


def answer_indices(answers: Sequence[str | ParsedTrace | None], classes: Sequence[str]) -> Tensor:
    """Positions in ``classes`` of canonical class names (or of ``ParsedTrace.answer``), −1 otherwise.

    ``None``, a name outside ``classes`` and a trace without a parsed answer all give :data:`NO_ANSWER`.
    Returns a ``[N]`` int64 tensor.
    """
    position = {name: i for i, name in enumerate(classes)}
    names = [a.answer if isinstance(a, ParsedTrace) else a for a in answers]
    return torch.tensor([position.get(n, NO_ANSWER) if isinstance(n, str) else NO_ANSWER for n in names], dtype=torch.long)


def classification_scores(confmat: Tensor) -> dict[str, Tensor]:
    """Scores of a ``[C, C+1]`` confusion matrix (last column: no valid answer).

    With ``M[i, j]`` = samples of true class ``i`` predicted ``j``, ``n = Σ M``,
    ``TP_c = M[c, c]``, ``FN_c = Σ_j M[c, j] − TP_c`` (includes "no answer"), ``FP_c = Σ_i M[i, c] − TP_c``:

    * ``accuracy = Σ_c TP_c / n`` — over ALL samples; an invalid answer is wrong.
    * ``per_class_recall[c] = TP_c / (TP_c + FN_c)`` — NaN for a class with no sample.
    * ``mean_class_accuracy`` = mean of the defined per-class recalls (classes with samples), as
      ``sklearn.metrics.balanced_accuracy_score``.
    * ``F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c)``; ``macro_f1`` = mean of the defined ``F1_c`` (a class
      neither present nor predicted, 0/0, is left out, never counted as 0; a class predicted but
      absent scores 0).

    Every value is NaN when ``n = 0``. Returns float64 tensors: ``accuracy``, ``mean_class_accuracy``,
    ``macro_f1`` (scalars) and ``per_class_recall`` (``[C]``).
    """
    if confmat.ndim != 2 or confmat.shape[1] != confmat.shape[0] + 1:
        raise ValueError(f"confusion matrix must have shape [C, C+1], got {list(confmat.shape)}")
    m = confmat.to(torch.float64)
    num_classes = m.shape[0]
    tp = torch.diagonal(m[:, :num_classes])
    support = m.sum(dim=1)
    predicted = m[:, :num_classes].sum(dim=0)
    recall = tp / support  # 0/0 → NaN for classes without samples
    f1 = 2 * tp / (support + predicted)  # 2TP + FP + FN = support + predicted
    return {
        "accuracy": tp.sum() / m.sum(),
        "mean_class_accuracy": recall.nanmean(),
        "macro_f1": f1.nanmean(),
        "per_class_recall": recall,
    }


class ExpressionClassificationMetrics(Metric):
    """Accuracy, mean class accuracy, macro-F1, per-class recall and the confusion matrix.

    ``update(preds, target)``: ``preds`` ``[N]`` ints in ``[−1, C)`` (−1 = :data:`NO_ANSWER`), ``target``
    ``[N]`` ints in ``[0, C)``, both positions in ``classes``. ``compute()`` returns the report's
    per-dataset keys: ``n``, ``classes``, ``accuracy``, ``mean_class_accuracy``, ``macro_f1``,
    ``per_class_recall`` and ``confusion_matrix`` (``[C, C+1]`` int64); see :func:`classification_scores`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(self, classes: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(classes)
        if not self.classes or len(set(self.classes)) != len(self.classes) or not set(self.classes) <= set(CLASS_INDEX):
            raise ValueError(f"classes must be distinct names from {list(CLASS_INDEX)}, got {list(classes)}")
        num_classes = len(self.classes)
        self.add_state("confmat", default=torch.zeros(num_classes, num_classes + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor | Sequence[int], target: Tensor | Sequence[int]) -> None:
        preds = self._as_index_tensor(preds, "preds")
        target = self._as_index_tensor(target, "target")
        num_classes = len(self.classes)
        if preds.shape != target.shape:
            raise ValueError(f"preds and target must have the same length, got {tuple(preds.shape)} and {tuple(target.shape)}")
        if preds.numel() and (preds.min() < NO_ANSWER or preds.max() >= num_classes):
            raise ValueError(f"preds must lie in [-1, {num_classes}) (-1 = no valid answer), got {preds.unique().tolist()}")
        if target.numel() and (target.min() < 0 or target.max() >= num_classes):
            raise ValueError(f"target must lie in [0, {num_classes}) for classes {list(self.classes)}, got {target.unique().tolist()}")
        # "no answer" becomes column C; the (C+1)-th row of the square matrix is always empty.
        preds = torch.where(preds == NO_ANSWER, num_classes, preds)
        square = multiclass_confusion_matrix(preds, target, num_classes=num_classes + 1, validate_args=False)
        self.confmat += square[:num_classes]

    def compute(self) -> dict[str, object]:
        return {
            "n": self.confmat.sum(),
            "classes": list(self.classes),
            **classification_scores(self.confmat),
            "confusion_matrix": self.confmat.clone(),
        }

    def _as_index_tensor(self, values: Tensor | Sequence[int], name: str) -> Tensor:
        tensor = values if isinstance(values, Tensor) else torch.as_tensor(list(values), dtype=torch.long)
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
        if tensor.ndim != 1:
            raise ValueError(f"{name} must be 1-D [N], got shape {tuple(tensor.shape)}")
        return tensor.to(device=self.device, dtype=torch.long)


class ParseRate(MeanMetric):
    """Fraction of completions whose trace is fully valid (``ParsedTrace.valid``), over every update.

    ``update(traces)`` takes ``ParsedTrace`` objects or booleans. A torchmetrics ``MeanMetric`` of 0/1
    values: its sum and count states are summed across ranks. NaN before any update.
    """

    def update(self, traces: Sequence[ParsedTrace | bool]) -> None:  # type: ignore[override]
        flags = []
        for index, trace in enumerate(traces):
            if isinstance(trace, ParsedTrace):
                flags.append(trace.valid)
            elif isinstance(trace, bool):
                flags.append(trace)
            else:
                raise TypeError(f"traces[{index}] is {type(trace).__name__}; expected ParsedTrace or bool")
        super().update(torch.tensor(flags, dtype=self.dtype, device=self.device))
