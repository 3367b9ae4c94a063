"""Classification metrics against sklearn, grounding faithfulness on crafted traces, DDP reduction."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.metrics import (
    NO_ANSWER,
    SCORE_NAMES,
    ExpressionClassificationMetrics,
    FaithfulnessCounts,
    GroundingFaithfulness,
    ParseRate,
    answer_indices,
    classification_scores,
    faithfulness_counts,
    to_json_ready,
)

RAF_CLASSES = CLASS_NAMES[:7]  # the 7 RAF-DB classes (canonical order without contempt)


# ------------------------------------------------------------------------------------ classification
def random_predictions(seed: int, n: int, num_classes: int, invalid_fraction: float = 0.15):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, num_classes, n)
    preds = np.where(rng.random(n) < 0.5, target, rng.integers(0, num_classes, n))  # ~55 % correct
    preds = np.where(rng.random(n) < invalid_fraction, NO_ANSWER, preds)
    return preds, target


def sklearn_reference(preds: np.ndarray, target: np.ndarray, num_classes: int) -> dict:
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" (the -1 answers)
        return {
            "accuracy": accuracy_score(target, preds),
            "mean_class_accuracy": balanced_accuracy_score(target, preds),
            "macro_recall": recall_score(target, preds, labels=labels, average="macro", zero_division=np.nan),
            "macro_f1": f1_score(target, preds, labels=labels, average="macro", zero_division=np.nan),
            "per_class_recall": recall_score(target, preds, labels=labels, average=None, zero_division=np.nan),
            "confusion_matrix": confusion_matrix(target, preds, labels=labels + [NO_ANSWER])[:num_classes],
        }


def assert_matches_sklearn(result: dict, preds: np.ndarray, target: np.ndarray, num_classes: int) -> None:
    ref = sklearn_reference(preds, target, num_classes)
    assert int(result["n"]) == len(target)
    assert float(result["accuracy"]) == pytest.approx(ref["accuracy"], abs=1e-12)
    assert float(result["mean_class_accuracy"]) == pytest.approx(ref["mean_class_accuracy"], abs=1e-12)
    assert float(result["mean_class_accuracy"]) == pytest.approx(ref["macro_recall"], abs=1e-12)
    assert float(result["macro_f1"]) == pytest.approx(ref["macro_f1"], abs=1e-12)
    np.testing.assert_allclose(result["per_class_recall"].numpy(), ref["per_class_recall"], atol=1e-12)
    np.testing.assert_array_equal(result["confusion_matrix"].numpy(), ref["confusion_matrix"])


def test_classification_matches_sklearn_over_uneven_updates():
    preds, target = random_predictions(seed=0, n=400, num_classes=len(RAF_CLASSES))
    metric = ExpressionClassificationMetrics(RAF_CLASSES)
    sizes = [1, 7, 150, 13, 229]
    batch_accuracies = []
    start = 0
    for size in sizes:
        p, t = torch.from_numpy(preds[start : start + size]), torch.from_numpy(target[start : start + size])
        metric.update(p, t)
        batch_accuracies.append(float((p == t).double().mean()))
        start += size
    assert start == len(target)
    result = metric.compute()
    assert result["classes"] == list(RAF_CLASSES)
    assert result["confusion_matrix"].shape == (7, 8)
    assert int(result["confusion_matrix"][:, -1].sum()) == int((preds == NO_ANSWER).sum()) > 0
    assert_matches_sklearn(result, preds, target, len(RAF_CLASSES))
    # the mean of per-batch accuracies is a different number: the metric does not average per batch
    assert abs(np.mean(batch_accuracies) - float(result["accuracy"])) > 1e-3


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(-1, 4), st.integers(0, 4)), min_size=1, max_size=40),
    cut=st.integers(0, 40),
)
def test_classification_matches_sklearn_with_absent_classes(pairs, cut):
    """Small sets where some classes are never true or never predicted (undefined terms are skipped)."""
    preds = np.array([p for p, _ in pairs])
    target = np.array([t for _, t in pairs])
    metric = ExpressionClassificationMetrics(CLASS_NAMES[:5])
    metric.update(preds[:cut].tolist(), target[:cut].tolist())
    metric.update(preds[cut:].tolist(), target[cut:].tolist())
    assert_matches_sklearn(metric.compute(), preds, target, 5)


def test_classification_scores_by_hand():
    confmat = torch.tensor([[3, 1, 0], [0, 0, 2]])  # 2 classes; class 1 never right, twice no answer
    scores = classification_scores(confmat)
    assert float(scores["accuracy"]) == pytest.approx(3 / 6)
    assert scores["per_class_recall"].tolist() == pytest.approx([3 / 4, 0.0])
    assert float(scores["mean_class_accuracy"]) == pytest.approx(3 / 8)
    # F1_0 = 6 / (6 + 0 + 1), F1_1 = 0 / (0 + 1 + 2)
    assert float(scores["macro_f1"]) == pytest.approx((6 / 7 + 0.0) / 2)
    with pytest.raises(ValueError, match=r"\[C, C\+1\]"):
        classification_scores(torch.zeros(3, 3))


def test_empty_metric_gives_nan_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics: compute() before update()
        result = ExpressionClassificationMetrics(["happiness", "sadness"]).compute()
    assert int(result["n"]) == 0 and math.isnan(float(result["accuracy"]))
    assert to_json_ready(result)["mean_class_accuracy"] is None


def test_answer_indices_maps_out_of_set_answers_to_no_answer():
    answers = ["happiness", None, "contempt", parse_trace("<answer> sad </answer>"), parse_trace("garbage"), "neutral"]
    assert answer_indices(answers, RAF_CLASSES).tolist() == [1, NO_ANSWER, NO_ANSWER, 2, NO_ANSWER, 0]
    assert answer_indices(["contempt"], CLASS_NAMES).tolist() == [7]
    assert answer_indices([], RAF_CLASSES).dtype == torch.long


def test_classification_rejects_bad_input():
    metric = ExpressionClassificationMetrics(["happiness", "sadness"])
    with pytest.raises(ValueError, match="preds must lie"):
        metric.update([2], [0])
    with pytest.raises(ValueError, match="target must lie"):
        metric.update([0], [-1])
    with pytest.raises(ValueError, match="same length"):
        metric.update([0, 1], [0])
    with pytest.raises(ValueError, match="integer class indices"):
        metric.update(torch.tensor([0.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="1-D"):
        metric.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct names"):
        ExpressionClassificationMetrics(["happy", "sadness"])
    with pytest.raises(ValueError, match="distinct names"):
        ExpressionClassificationMetrics(["sadness", "sadness"])


def test_parse_rate_takes_traces_and_booleans():
    valid = render_trace(sample_trace("sadness", [("inner brow", ("AU1",), (1, 1, 5, 5))], ("AU1",)))
    metric = ParseRate()
    metric.update([parse_trace(valid), parse_trace("garbage")])
    metric.update([True, True, False])
    assert float(metric.compute()) == pytest.approx(3 / 5)
    with pytest.raises(TypeError, match="ParsedTrace or bool"):
        metric.update(["text"])


def test_to_json_ready():
    value = {"a": torch.tensor(float("nan")), "b": [torch.tensor([1, 2]), (float("inf"), 0.5)], "c": "x"}
    assert to_json_ready(value) == {"a": None, "b": [[1, 2], [None, 0.5]], "c": "x"}


# ---------------------------------------------------------------------------------------- grounding
def sample_trace(label: str, steps, conclusion_aus) -> Trace:
    return Trace(
        global_analysis="A crafted face.",
        steps=tuple(TraceStep(region, aus, "crafted observation", box) for region, aus, box in steps),
        conclusion_aus=tuple(conclusion_aus),
        label=label,
    )


def crafted_samples():
    """(completion, au_prob, au_box, expected per-sample counts) with every number worked out by hand."""
    # A — sadness, AU1 box exact (IoU 1); AU4 box shifted by half (IoU 2500/7500 = 1/3 < 0.5);
    #     AU15 inactive (0.3): IoU 0 although its box is exact; AU12 active but not cited. Prior(sadness) = {AU1, AU4, AU15}: 3/3.
    a = render_trace(
        sample_trace(
            "sadness",
            [("inner brow", ("AU1", "AU4"), (100, 100, 200, 150)), ("lip corners", ("AU15",), (100, 300, 200, 350))],
            ("AU1", "AU4", "AU15"),
        )
    )
    a_det = (
        {"AU1": 0.8, "AU4": 0.6, "AU15": 0.3, "AU12": 0.9},
        {"AU1": (100, 100, 200, 150), "AU4": (150, 100, 250, 150), "AU15": (100, 300, 200, 350), "AU12": (0, 0, 9, 9)},
    )
    a_counts = dict(cited=3, active=3, cited_active=2, iou_sum=Fraction(4, 3), hallucinated=2, consistency_total=3, consistent=3)
    # B — happiness with <think> tags; AU6 IoU 100/200 = 0.5 (= threshold: grounded); AU12 active but the
    #     detector has no box (IoU 0, hallucinated); AU25 only in the conclusion (no cited box: IoU 0,
    #     hallucinated); AU26 active at exactly 0.5, not cited. EMFACS prior {AU6, AU12}: 2/3.
    b = render_trace(
        sample_trace(
            "happiness",
            [("cheeks", ("AU6",), (0, 0, 10, 10)), ("lip corners", ("AU12",), (0, 0, 10, 10))],
            ("AU6", "AU12", "AU25"),
        ),
        think_tags=True,
    )
    b_det = ({"AU6": 0.7, "AU12": 0.9, "AU25": 0.6, "AU26": 0.5}, {"AU6": [0, 0, 10, 20], "AU25": [0, 0, 10, 10]})
    b_counts = dict(cited=3, active=4, cited_active=3, iou_sum=Fraction(1, 2), hallucinated=2, consistency_total=3, consistent=2)
    # C — neutral citing AU4 (inactive, box exact: IoU 0): hallucinated; neutral's prior is empty: 0/1.
    c = render_trace(sample_trace("neutral", [("inner brow", ("AU4",), (100, 100, 200, 150))], ("AU4",)))
    c_det = ({"AU4": 0.4}, {"AU4": (100, 100, 200, 150)})
    c_counts = dict(cited=1, active=0, cited_active=0, iou_sum=Fraction(0), hallucinated=1, consistency_total=1, consistent=0)
    # D — neutral citing nothing; the detector sees AU7: only the recall denominator moves.
    d = render_trace(sample_trace("neutral", [("eye region", (), (10, 10, 20, 20))], ()))
    d_det = ({"AU7": 0.7}, {"AU7": (10, 10, 20, 20)})
    d_counts = dict(cited=0, active=1, cited_active=0, iou_sum=Fraction(0), hallucinated=0, consistency_total=0, consistent=0)
    # E — truncated before <answer>: the grounding still counts, the missing label leaves consistency out.
    e_full = render_trace(sample_trace("surprise", [("inner brow", ("AU1",), (100, 100, 200, 150))], ("AU1",)))
    e = e_full[: e_full.index("<answer>")]
    e_det = ({"AU1": 0.9}, {"AU1": (100, 100, 200, 150)})
    e_counts = dict(cited=1, active=1, cited_active=1, iou_sum=Fraction(1), hallucinated=0, consistency_total=0, consistent=0)
    # F — garbage: cites nothing.
    f = "I think it's happy <bbox>[1,2,3,4]</bbox> AU12!!"
    f_det = ({"AU1": 0.9}, {"AU1": (0, 0, 5, 5)})
    f_counts = dict(cited=0, active=1, cited_active=0, iou_sum=Fraction(0), hallucinated=0, consistency_total=0, consistent=0)
    return [
        (a, *a_det, a_counts),
        (b, *b_det, b_counts),
        (c, *c_det, c_counts),
        (d, *d_det, d_counts),
        (e, *e_det, e_counts),
        (f, *f_det, f_counts),
    ]


def test_faithfulness_counts_per_crafted_trace():
    for completion, au_prob, au_box, expected in crafted_samples():
        parsed = parse_trace(completion)
        counts = faithfulness_counts(parsed, au_prob, au_box, parsed.answer)
        for name, value in expected.items():
            assert getattr(counts, name) == pytest.approx(float(value), abs=1e-9), (completion[:60], name)
        # the string and the ParsedTrace give the same counts
        assert faithfulness_counts(completion, au_prob, au_box, parsed.answer) == counts


def test_faithfulness_per_sample_scores_and_json():
    completion, au_prob, au_box, _ = crafted_samples()[0]
    counts = faithfulness_counts(completion, au_prob, au_box, "sadness")
    assert counts.au_iou == pytest.approx({"AU1": 1.0, "AU4": 1 / 3, "AU15": 0.0})
    assert counts.scores() == pytest.approx(
        {"au_precision": 2 / 3, "au_recall": 2 / 3, "mean_iou": 4 / 9, "hallucination_rate": 2 / 3, "consistency": 1.0}
    )
    record = counts.to_json()
    assert set(SCORE_NAMES) <= set(record) and record["cited"] == 3
    neutral_empty = faithfulness_counts(crafted_samples()[3][0], {"AU7": 0.7}, {}, "neutral")
    assert neutral_empty.scores() == {
        "au_precision": None,
        "au_recall": 0.0,
        "mean_iou": None,
        "hallucination_rate": None,
        "consistency": None,
    }


def test_faithfulness_label_override_and_wide_prior():
    completion, au_prob, au_box, _ = crafted_samples()[1]  # cites AU6, AU12, AU25
    assert faithfulness_counts(completion, au_prob, au_box, "happiness", prior="wide").consistent == 3
    assert faithfulness_counts(completion, au_prob, au_box, "anger").consistent == 0
    assert faithfulness_counts(completion, au_prob, au_box, None).consistency_total == 0


def test_faithfulness_thresholds_are_inclusive():
    completion, au_prob, au_box, _ = crafted_samples()[1]
    strict = faithfulness_counts(completion, au_prob, au_box, "happiness", threshold=0.75, iou_threshold=0.51)
    assert strict.active == 1 and strict.cited_active == 1  # only AU12 (0.9) is active
    assert strict.hallucinated == 3  # AU6 inactive now, and IoU 0.5 < 0.51


def test_grounding_metric_micro_averages_over_uneven_updates():
    samples = crafted_samples()
    metric = GroundingFaithfulness(threshold=0.5, iou_threshold=0.5, prior="emfacs")
    for chunk in (samples[:1], samples[1:4], samples[4:]):
        metric.update([s[0] for s in chunk], [s[1] for s in chunk], [s[2] for s in chunk])
    result = metric.compute()
    assert set(result) == set(SCORE_NAMES)
    # totals: cited 8, active 10, cited∧active 6, IoU sum 17/6, hallucinated 5, consistency 5/7
    expected = {
        "au_precision": 6 / 8,
        "au_recall": 6 / 10,
        "mean_iou": (17 / 6) / 8,
        "hallucination_rate": 5 / 8,
        "consistency": 5 / 7,
    }
    assert {k: float(v) for k, v in result.items()} == pytest.approx(expected, abs=1e-12)
    # the same totals through the per-sample counts
    total = FaithfulnessCounts()
    for completion, au_prob, au_box, _ in samples:
        total = total + faithfulness_counts(completion, au_prob, au_box, parse_trace(completion).answer)
    assert total.scores() == pytest.approx(expected, abs=1e-12)


def test_grounding_metric_accepts_labels_and_reports_nan_when_undefined():
    metric = GroundingFaithfulness()
    metric.update(["garbage"], [{}], [{}], labels=[None])
    assert all(math.isnan(float(v)) for v in metric.compute().values())


GARBAGE = [
    "",
    None,
    12345,
    b"<answer> happy </answer>",
    ["Inspect inner brow (AU1) → x → <bbox>[1,2,3,4]</bbox>"],
    "<answer></answer>",
    "<answer> happy </answer><answer> sad </answer>",
    "Inspect inner brow (AU99, AU1, AU1) → x → <bbox>[1,2]</bbox>\nFinal conclusion: Combined AU1",
    "Inspect inner brow (AU1) → x → <bbox>[5,5,1,1]</bbox>",
    "Inspect inner brow (AU1) → x → <bbox>[nan,0,1e999,-3]</bbox>",
    "<think>" * 5000,
    "A" * 100_000,
    "\x00\ud800→→→<bbox>[</bbox>",
]


def test_faithfulness_never_raises_on_garbage():
    metric = GroundingFaithfulness()
    detector = ({"AU1": 0.9, "AU4": 0.1}, {"AU1": (1, 2, 3, 4), "AU4": (0, 0, 0, 0)})
    for completion in GARBAGE:
        counts = faithfulness_counts(completion, *detector, None)
        assert counts.cited_active <= counts.cited and counts.hallucinated <= counts.cited
    metric.update(GARBAGE, [detector[0]] * len(GARBAGE), [detector[1]] * len(GARBAGE))
    assert float(metric.compute()["au_recall"]) >= 0.0


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("Inspect AU1,4 ()→<bbox>[]0123456789\n/answer happy")), max_size=300))
def test_faithfulness_never_raises_on_fuzzed_text(text):
    counts = faithfulness_counts(text, {"AU1": 0.9, "AU4": 0.6}, {"AU1": (0, 0, 9, 9), "AU4": (1, 1, 5, 5)}, None)
    assert 0 <= counts.cited_active <= counts.cited and 0.0 <= counts.iou_sum <= counts.cited


def test_faithfulness_rejects_malformed_detector_input():
    completion = crafted_samples()[0][0]
    with pytest.raises(ValueError, match="canonical AU name"):
        faithfulness_counts(completion, {"AU04_r": 0.9}, {}, None)
    with pytest.raises(ValueError, match="4 finite numbers"):
        faithfulness_counts(completion, {}, {"AU1": (1, 2, 3)}, None)
    with pytest.raises(ValueError, match="4 finite numbers"):
        faithfulness_counts(completion, {}, {"AU1": (1, 2, 3, float("nan"))}, None)
    with pytest.raises(ValueError, match="finite number"):
        faithfulness_counts(completion, {"AU1": float("nan")}, {}, None)
    with pytest.raises(ValueError, match="canonical class name"):
        faithfulness_counts(completion, {}, {}, "happy")
    with pytest.raises(ValueError, match="threshold"):
        faithfulness_counts(completion, {}, {}, None, iou_threshold=1.5)
    with pytest.raises(ValueError, match="unknown AU prior"):
        GroundingFaithfulness(prior="facs")
    metric = GroundingFaithfulness()
    with pytest.raises(ValueError, match="one entry per sample"):
        metric.update([completion], [{}, {}], [{}])
    with pytest.raises(ValueError, match="sample 1 of the batch"):
        metric.update([completion, completion], [{}, {"AU1": "high"}], [{}, {}])


def test_faithfulness_accepts_numpy_and_torch_detector_values():
    completion, au_prob, au_box, _ = crafted_samples()[0]
    reference = faithfulness_counts(completion, au_prob, au_box, "sadness")
    as_numpy = faithfulness_counts(
        completion,
        {k: np.float32(v) for k, v in au_prob.items()},
        {k: np.asarray(v, dtype=np.float32) for k, v in au_box.items()},
        "sadness",
    )
    as_torch = faithfulness_counts(completion, au_prob, {k: torch.tensor(v) for k, v in au_box.items()}, "sadness")
    assert as_numpy == reference == as_torch
