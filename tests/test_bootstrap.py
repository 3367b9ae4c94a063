"""Bootstrap intervals and paired differences over test faces, against numpy-by-hand, scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from tagfer.metrics.bootstrap import SCORES, bootstrap_scores, concat_tables, face_table, paired_differences, table_scores

CLASSES = ("neutral", "happiness", "sadness", "surprise")


def random_predictions(n: int, seed: int, skill: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = CLASSES[rng.integers(0, len(CLASSES))]
        roll = rng.random()
        prediction = label if roll < skill else (None if roll > 0.95 else CLASSES[rng.integers(0, len(CLASSES))])
        cited = int(rng.integers(0, 4))
        cited_active = int(rng.integers(0, cited + 1))
        records.append({
            "id": f"f{i}", "dataset": "synthetic/test", "label": label, "prediction": prediction,
            "faithfulness": {"cited": cited, "active": int(rng.integers(cited_active, 5)), "cited_active": cited_active,
                             "iou_sum": float(rng.random() * cited_active), "hallucinated": cited - cited_active},
        })  # fmt: skip
    return records


def hand_scores(records: list[dict]) -> dict[str, float]:
    """The definitions, written out over the records with scikit-learn's macro F1."""
    y_true = [r["label"] for r in records]
    y_pred = [r["prediction"] or "none" for r in records]
    present = sorted(set(y_true) | (set(y_pred) - {"none"}))
    total = {k: sum(r["faithfulness"][k] for r in records) for k in ("cited", "active", "cited_active", "iou_sum", "hallucinated")}
    return {
        "accuracy": float(np.mean([t == p for t, p in zip(y_true, y_pred)])),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "au_precision": total["cited_active"] / total["cited"],
        "au_recall": total["cited_active"] / total["active"],
        "mean_iou": total["iou_sum"] / total["cited"],
        "hallucination_rate": total["hallucinated"] / total["cited"],
    }


def test_table_scores_match_the_definitions():
    records = random_predictions(300, 0, 0.6)
    got = table_scores(face_table(records, CLASSES), len(CLASSES))
    assert got == pytest.approx(hand_scores(records), abs=1e-12)
    rows = np.array([0, 0, 5, 7, 7, 7, 20])  # repeats count again
    assert table_scores(face_table(records, CLASSES), len(CLASSES), rows) == pytest.approx(
        hand_scores([records[i] for i in rows]), abs=1e-12
    )


def test_bootstrap_matches_a_hand_written_resampling_loop():
    records = random_predictions(200, 1, 0.5)
    table = face_table(records, CLASSES)
    got = bootstrap_scores(table, len(CLASSES), resamples=300, seed=7)
    rng = np.random.default_rng(7)
    draws = [hand_scores([records[i] for i in rng.integers(0, 200, 200)]) for _ in range(300)]
    for name in SCORES:
        low, high = np.quantile([d[name] for d in draws], [0.025, 0.975])
        assert got[name] == pytest.approx((hand_scores(records)[name], low, high), abs=1e-12), name


def test_percentile_intervals_agree_with_scipy():
    """Accuracy (a mean of per-face 0/1) and a paired accuracy difference, against scipy.stats.bootstrap."""
    tag, answer_only = random_predictions(600, 2, 0.55), random_predictions(600, 2, 0.45)
    for record, other in zip(answer_only, tag):  # the same faces: same ids and labels
        record["label"] = other["label"]
        if np.random.default_rng(hash(record["id"]) % 2**32).random() < 0.5:
            record["prediction"] = other["prediction"]
    a, b = face_table(tag, CLASSES), face_table(answer_only, CLASSES)
    correct_a = (a["prediction"] == a["label"]).astype(float)
    correct_b = (b["prediction"] == b["label"]).astype(float)
    ours = bootstrap_scores(a, len(CLASSES), resamples=4000, seed=3)["accuracy"]
    reference = stats.bootstrap((correct_a,), np.mean, n_resamples=4000, method="percentile", random_state=5).confidence_interval
    assert ours[1:] == pytest.approx((reference.low, reference.high), abs=0.008)
    difference = paired_differences(a, b, len(CLASSES), resamples=4000, seed=3)["accuracy"]
    paired = stats.bootstrap(
        (correct_a, correct_b), lambda x, y: np.mean(x) - np.mean(y), paired=True, n_resamples=4000, method="percentile", random_state=5
    ).confidence_interval
    assert difference[0] == pytest.approx(correct_a.mean() - correct_b.mean(), abs=1e-12)
    assert difference[1:] == pytest.approx((paired.low, paired.high), abs=0.008)


def test_pooling_and_pairing_rules():
    first, second = face_table(random_predictions(20, 4, 0.5), CLASSES), face_table(random_predictions(20, 5, 0.5), CLASSES)
    pooled = concat_tables({"seed0": first, "seed1": second})
    assert len(pooled["face"]) == 40 and len(set(pooled["face"])) == 40
    shuffled = {k: v[::-1] for k, v in first.items()}
    with pytest.raises(ValueError, match="same faces"):
        paired_differences(first, shuffled, len(CLASSES), resamples=10)
    with pytest.raises(ValueError, match="not among the classes"):
        face_table([{"id": "x", "label": "fear", "prediction": None}], CLASSES)
