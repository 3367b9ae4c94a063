"""Bootstrap intervals over test faces for the study's scores, and paired differences between variants.

A *face table* holds one row per evaluated face (columns of equal length, numpy arrays): ``face``
(an id naming the face), ``label`` and ``prediction`` (class indices, ``-1`` = no answer), and the faithfulness counts of
:class:`tagfer.metrics.grounding.FaithfulnessCounts` — ``cited``, ``active``, ``cited_active``,
``iou_sum``, ``hallucinated``. The scores of a set of rows (:func:`table_scores`)::

    accuracy            mean of [prediction = label]
    macro_f1            mean over classes c of 2·TP_c / (2·TP_c + FP_c + FN_c)   (a class with no label and
                        no prediction in the rows is left out); "no answer" is a miss of the true class
    au_precision        Σ cited_active / Σ cited          micro-averaged, as the evaluator reports them
    au_recall           Σ cited_active / Σ active
    mean_iou            Σ iou_sum / Σ cited
    hallucination_rate  Σ hallucinated / Σ cited          (NaN where a denominator is 0)

Percentile bootstrap (:func:`bootstrap_scores`): ``B`` resamples of the row indices, each drawn as
``rng.integers(0, n, n)`` in turn from ``numpy.random.default_rng(seed)``; the interval is the
``(α/2, 1 − α/2)`` quantiles (numpy's default linear interpolation) of the resampled scores. Paired
differences (:func:`paired_differences`) apply the SAME resample to two tables whose rows are the same
faces in the same order (the variants of one study evaluated on one test set), so the interval of
``score(A) − score(B)`` reflects only how the variants differ on the same faces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SCORES = ("accuracy", "macro_f1", "au_precision", "au_recall", "mean_iou", "hallucination_rate")
COUNT_COLUMNS = ("cited", "active", "cited_active", "iou_sum", "hallucinated")


def face_table(predictions: Sequence[Mapping], classes: Sequence[str]) -> dict[str, np.ndarray]:
    """A face table from ``predictions.jsonl`` records (:mod:`tagfer.metrics.predictions`).

    A record without faithfulness counts (no completion) counts 0 everywhere; a prediction outside
    ``classes`` is no answer.
    """
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({p["label"] for p in predictions} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    table = {
        "face": np.array([f"{p.get('dataset', '')}:{p['id']}" for p in predictions], dtype=object),
        "label": np.array([index[p["label"]] for p in predictions], dtype=np.int64),
        "prediction": np.array([index.get(p.get("prediction"), -1) for p in predictions], dtype=np.int64),
    }
    for column in COUNT_COLUMNS:
        dtype = np.float64 if column == "iou_sum" else np.int64
        table[column] = np.array([(p.get("faithfulness") or {}).get(column, 0) for p in predictions], dtype=dtype)
    return table


def concat_tables(tables: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows of several face tables one after the other (faces pooled over seeds); each table's face
    ids are prefixed with its key (``"seed1/…"``) so pooled ids stay distinct."""
    pooled = {column: np.concatenate([t[column] for t in tables.values()]) for column in next(iter(tables.values()))}
    pooled["face"] = np.concatenate([np.array([f"{key}/{face}" for face in t["face"]], dtype=object) for key, t in tables.items()])
    return pooled


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def table_scores(table: Mapping[str, np.ndarray], num_classes: int, rows: np.ndarray | None = None) -> dict[str, float]:
    """The :data:`SCORES` of the rows ``rows`` of ``table`` (all rows when None; repeats count again)."""
    pick = (lambda column: table[column]) if rows is None else (lambda column: table[column][rows])
    label, prediction = pick("label"), pick("prediction")
    hit = prediction == label
    true_positive = np.bincount(label[hit], minlength=num_classes)
    label_count = np.bincount(label, minlength=num_classes)
    answered = prediction[prediction >= 0]
    prediction_count = np.bincount(answered, minlength=num_classes)
    present = (label_count + prediction_count) > 0
    f1 = 2 * true_positive[present] / (label_count[present] + prediction_count[present])
    sums = {column: pick(column).sum() for column in COUNT_COLUMNS}
    return {
        "accuracy": float(hit.mean()) if len(hit) else float("nan"),
        "macro_f1": float(f1.mean()) if len(f1) else float("nan"),
        "au_precision": _ratio(sums["cited_active"], sums["cited"]),
        "au_recall": _ratio(sums["cited_active"], sums["active"]),
        "mean_iou": _ratio(sums["iou_sum"], sums["cited"]),
        "hallucination_rate": _ratio(sums["hallucinated"], sums["cited"]),
    }


def _resamples(n: int, resamples: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, n) for _ in range(resamples)]


def _interval(values: list[float], confidence: float) -> tuple[float, float]:
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not len(finite):
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_scores(
    table: Mapping[str, np.ndarray], num_classes: int, *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """``{score: (value on all rows, interval low, interval high)}`` by the percentile bootstrap."""
    n = len(table["label"])
    draws = [table_scores(table, num_classes, rows) for rows in _resamples(n, resamples, seed)]
    point = table_scores(table, num_classes)
    return {name: (point[name], *_interval([d[name] for d in draws], confidence)) for name in SCORES}


def paired_differences(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    num_classes: int,
    *,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """``{score: (score(first) − score(second), interval low, interval high)}``, one resample for both."""
    n = len(first["label"])
    if len(second["face"]) != n or not np.array_equal(first["face"], second["face"]):
        raise ValueError("paired differences need the same faces in the same order in both tables")
    draws = []
    for rows in _resamples(n, resamples, seed):
        a, b = table_scores(first, num_classes, rows), table_scores(second, num_classes, rows)
        draws.append({name: a[name] - b[name] for name in SCORES})
    a, b = table_scores(first, num_classes), table_scores(second, num_classes)
    return {name: (a[name] - b[name], *_interval([d[name] for d in draws], confidence)) for name in SCORES}
