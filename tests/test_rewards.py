"""Reward callbacks: hand-computed scores, reward-hacking attempts, robustness to arbitrary text, registry."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tagfer.core.config import ConfigError, RewardSpec, load_config
from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.training.rewards import REWARDS, GRPOBatch, build_reward, build_rewards, reward_matrix, reward_stats

EXTENT = (100, 100)
AU_PROB = {"AU6": 0.9, "AU12": 0.8, "AU4": 0.1}
AU_BOX = {"AU6": (20, 40, 80, 60), "AU12": (30, 70, 70, 90), "AU4": (30, 10, 70, 30)}
NEUTRAL_PROB = {"AU6": 0.2, "AU12": 0.1}


def batch(texts: list[str], label: str = "happiness", au_prob: dict = AU_PROB, au_box: dict = AU_BOX) -> GRPOBatch:
    """The completions ``texts`` (parsed once), every one of the same sample."""
    n = len(texts)
    return GRPOBatch.of(texts, label_name=[label] * n, au_prob=[au_prob] * n, au_box=[au_box] * n, image_extent=[EXTENT] * n)


def trace(steps, label="happiness", conclusion=None, think=False) -> str:
    """Render steps ``(region, AUs, box)``; the conclusion names every stepped AU unless given."""
    aus = tuple(dict.fromkeys(au for _, step_aus, _ in steps for au in step_aus))
    body = Trace(
        global_analysis="The cheeks are raised and the lip corners pulled up.",
        steps=tuple(TraceStep(region, step_aus, "visible change", box) for region, step_aus, box in steps),
        conclusion_aus=aus if conclusion is None else conclusion,
        label=label,
    )
    return render_trace(body, think_tags=think)


# AU6 cited with its exact box (IoU 1); AU12 cited with [30,70,70,80] against [30,70,70,90]:
# intersection 40×10 = 400, union 40×20 = 800 → IoU 0.5.
HONEST = trace([("cheeks", ("AU6",), (20, 40, 80, 60)), ("lip corners", ("AU12",), (30, 70, 70, 80))])


def score(name: str, completion: str, label: str = "happiness", au_prob: dict = AU_PROB, **params) -> float | None:
    (value,) = build_reward({"name": name, "params": params})(batch([completion], label, au_prob))
    return value


# ----------------------------------------------------------------------------------- known scores


def test_au_grounding_hand_computed_ious():
    # default: IoU-weighted F1 = 2·S / (C + R) with R = {AU6, AU12}
    assert score("au_grounding", HONEST) == pytest.approx(2 * (1.0 + 0.5) / (2 + 2))
    assert score("au_grounding", HONEST, normalize="cited") == pytest.approx((1.0 + 0.5) / 2)
    only_au6 = trace([("cheeks", ("AU6",), (20, 40, 80, 60))])
    assert score("au_grounding", only_au6) == pytest.approx(2 * 1.0 / (1 + 2))
    assert score("au_grounding", only_au6, normalize="cited") == pytest.approx(1.0)
    assert score("au_grounding", only_au6, normalize="max") == pytest.approx(1.0 / 2)
    assert score("au_grounding", only_au6, normalize="cited", recall_weight=0.5) == pytest.approx(0.5 * 1.0 + 0.5 * (1.0 / 2))
    # partly outside the image, scored as written: [50,40,110,60] (area 1200) against [20,40,80,60]
    # (area 1200): intersection 30×20 = 600, union 1800 → IoU 1/3
    shifted = trace([("cheeks", ("AU6",), (50, 40, 110, 60))])
    assert score("au_grounding", shifted, normalize="cited") == pytest.approx(600 / 1800)
    assert score("au_grounding", shifted) == pytest.approx(2 * (600 / 1800) / (1 + 2))
    # AU4 is inactive (p = 0.1): its exact box scores 0 → S = 1.5 over C = 3
    with_inactive = trace(
        [("cheeks", ("AU6",), (20, 40, 80, 60)), ("lip corners", ("AU12",), (30, 70, 70, 80)), ("inner brow", ("AU4",), (30, 10, 70, 30))]
    )
    assert score("au_grounding", with_inactive, normalize="cited") == pytest.approx(1.5 / 3)
    assert score("au_grounding", with_inactive) == pytest.approx(2 * 1.5 / (3 + 2))
    # top_k = 1 keeps AU6 only as reference: AU12 now scores 0 → S = 1, C = 2, R = 1
    assert score("au_grounding", HONEST, top_k=1, normalize="cited") == pytest.approx(0.5)
    assert score("au_grounding", HONEST, top_k=1) == pytest.approx(2 * 1.0 / (2 + 1))
    # a step naming two AUs with one box cites both: AU6 gets IoU 1, AU12's box [30,70,70,90] vs
    # [20,40,80,60] does not overlap → S = 1 + 0
    shared = trace([("cheeks", ("AU6", "AU12"), (20, 40, 80, 60))])
    assert score("au_grounding", shared) == pytest.approx(2 * 1.0 / (2 + 2))
    # an AU repeated: its first box counts, the later (better) one does not
    repeated = trace([("lip corners", ("AU12",), (30, 70, 70, 80)), ("mouth", ("AU12",), (30, 70, 70, 90))])
    assert score("au_grounding", repeated, normalize="cited") == pytest.approx(0.5)


def test_au_grounding_special_cases():
    neutral = trace([("mouth", (), (30, 70, 70, 90))], label="neutral", conclusion=())
    assert score("au_grounding", neutral, au_prob=NEUTRAL_PROB) == 1.0  # nothing active, nothing cited
    assert score("au_grounding", neutral) == 0.0  # active AUs left uncited
    assert score("au_grounding", HONEST, au_prob=NEUTRAL_PROB) == 0.0  # every cited AU is a hallucination
    assert score("au_grounding", "<answer> happiness </answer>") == 0.0  # no step at all


def test_format_reward():
    assert score("format", HONEST) == 1.0
    assert score("format", HONEST, require_think=True) == 0.0
    thought = trace([("cheeks", ("AU6",), (20, 40, 80, 60))], think=True)
    assert score("format", thought, require_think=True) == 1.0
    assert score("format", thought, require_think=False) == 0.0
    no_loop_line = HONEST.replace("Verification loop:\n", "")
    assert score("format", no_loop_line) == 0.0
    assert score("format", no_loop_line, partial_credit=True) == 0.5  # every check passes, still invalid
    assert score("format", "<answer> happiness </answer>", partial_credit=True) == pytest.approx(0.5 * 1 / 4)


def test_answer_reward():
    assert score("answer", HONEST) == 1.0
    assert score("answer", HONEST, label="sadness") == 0.0
    assert score("answer", "<answer> Happy. </answer>") == 1.0
    with pytest.raises(ValueError, match="canonical class"):
        score("answer", HONEST, label="joyful")


def test_label_au_consistency_reward():
    assert score("label_au_consistency", HONEST) == 1.0  # {AU6, AU12} is happiness' prior
    assert score("label_au_consistency", HONEST, prior="wide") == pytest.approx(2 * 2 / (2 + 3))  # + AU25
    sad = trace([("cheeks", ("AU6",), (20, 40, 80, 60))], label="sadness")
    assert score("label_au_consistency", sad) == 0.0
    neutral = trace([("mouth", (), (30, 70, 70, 90))], label="neutral", conclusion=())
    assert score("label_au_consistency", neutral) == 1.0
    neutral_with_au = trace([("cheeks", ("AU6",), (20, 40, 80, 60))], label="neutral")
    assert score("label_au_consistency", neutral_with_au) == 0.0


def test_au_f1_reward():
    assert score("au_f1", HONEST) == 1.0
    only_au6 = trace([("cheeks", ("AU6",), (20, 40, 80, 60))])
    assert score("au_f1", only_au6) == pytest.approx(2 * (2 * 1 / (1 + 2)) - 1)
    none_cited = trace([("mouth", (), (30, 70, 70, 90))], conclusion=())
    assert score("au_f1", none_cited) == -1.0
    assert score("au_f1", HONEST, au_prob=NEUTRAL_PROB) is None


def test_length_penalty_reward():
    penalty = build_reward({"name": "length_penalty", "params": {"soft_length": 10, "max_length": 20}})
    assert penalty(batch(["a" * 5, "a" * 10, "a" * 15, "a" * 20, "a" * 25])) == [0.0, 0.0, -0.5, -1.0, -1.0]
    tokens = build_reward({"name": "length_penalty", "params": {"soft_length": 10, "max_length": 20, "unit": "tokens"}})
    assert tokens(GRPOBatch.of(["short", "text"], completion_length=[12, 30])) == [-0.2, -1.0]
    with pytest.raises(KeyError, match="completion_length"):
        tokens(GRPOBatch.of(["short"]))


# ------------------------------------------------------------------------------- hacking attempts


def with_answer(text: str) -> str:
    return HONEST.replace("<answer> happiness </answer>", f"<answer> {text} </answer>")


HACKS = {
    "empty answer": with_answer(""),
    "all labels listed": with_answer("neutral, happiness, sadness, surprise, fear, disgust, anger, contempt"),
    "happy or sad": with_answer("happy or sad"),
    "two answers": HONEST + "\n<answer> sadness </answer>",
    "twenty copies of one box": trace([("cheeks", ("AU6",), (20, 40, 80, 60))] * 20),
    "twenty copies plus the honest steps": trace(
        [("cheeks", ("AU6",), (20, 40, 80, 60))] * 20 + [("lip corners", ("AU12",), (30, 70, 70, 80))]
    ),
    "boxes outside the image": trace([("cheeks", ("AU6",), (220, 240, 280, 260)), ("lip corners", ("AU12",), (230, 270, 270, 280))]),
    "whole-image boxes": trace([("cheeks", ("AU6",), (0, 0, 100, 100)), ("lip corners", ("AU12",), (0, 0, 100, 100))]),
    "huge numbers": HONEST.replace("[30,70,70,80]", "[0,0,99999,99999]"),
    "negative numbers": HONEST.replace("[30,70,70,80]", "[-30,70,70,80]"),
    "malformed numbers": HONEST.replace("[30,70,70,80]", "[30,70,seventy,80]"),
    "exponent numbers": HONEST.replace("[30,70,70,80]", "[3e1,7e1,7e1,8e1]"),
    "five numbers": HONEST.replace("[30,70,70,80]", "[30,70,70,80,90]"),
    "cited inactive AU": trace(
        [("cheeks", ("AU6",), (20, 40, 80, 60)), ("lip corners", ("AU12",), (30, 70, 70, 80)), ("inner brow", ("AU4",), (30, 10, 70, 30))]
    ),
    "every AU cited": trace(
        [
            ("cheeks", ("AU6",), (20, 40, 80, 60)),
            ("lip corners", ("AU12", "AU14", "AU15", "AU20"), (30, 70, 70, 80)),
            ("inner brow", ("AU1", "AU4"), (30, 10, 70, 30)),
            ("mouth", ("AU16", "AU23", "AU24", "AU25", "AU26"), (30, 70, 70, 90)),
        ]
    ),  # fmt: skip
    "step without box": HONEST.replace("<bbox>[30,70,70,80]</bbox>", "<bbox>[]</bbox>"),
    "no boxes at all": HONEST.replace("<bbox>[30,70,70,80]</bbox>", "<bbox>[]</bbox>").replace(
        "<bbox>[20,40,80,60]</bbox>", "<bbox>[]</bbox>"
    ),
    "broken step line": HONEST.replace(" → <bbox>[30,70,70,80]</bbox>", ""),
    "answer only": "<answer> happiness </answer>",
    "empty reasoning in think tags": "<think></think>\n<answer> happiness </answer>",
    "answer outside the end": HONEST + " trailing words",
}
HACK_REWARDS = [
    {"name": "format"},
    {"name": "format", "params": {"partial_credit": True}},
    {"name": "answer"},
    {"name": "au_grounding"},
    {"name": "au_grounding", "params": {"normalize": "max"}},
    {"name": "au_grounding", "params": {"normalize": "max", "recall_weight": 0.5}},
    {"name": "au_grounding", "params": {"normalize": "cited", "recall_weight": 0.5}},
    {"name": "label_au_consistency"},
    {"name": "au_f1"},
    {"name": "length_penalty"},
]


@pytest.mark.parametrize("hack", list(HACKS))
def test_hacking_attempts_never_beat_the_honest_answer(hack):
    for spec in HACK_REWARDS:
        callback = build_reward(spec)
        honest, hacked = callback(batch([HONEST, HACKS[hack]]))
        assert hacked <= honest + 1e-12, f"{hack!r} beats the honest trace on {spec}: {hacked} > {honest}"


def test_grounding_hacks_score_what_the_formula_says():
    grounding = build_reward({"name": "au_grounding"})  # F1 = 2·S / (C + 2)
    values = dict(zip(HACKS, grounding(batch(list(HACKS.values())))))
    assert values["twenty copies of one box"] == pytest.approx(2 * 1 / (1 + 2))  # one distinct AU
    assert values["boxes outside the image"] == 0.0
    assert values["negative numbers"] == pytest.approx(2 * (1 + 0) / (2 + 2))  # AU12 named without a valid box
    assert values["step without box"] == pytest.approx(2 * (1 + 0) / (2 + 2))
    assert values["cited inactive AU"] == pytest.approx(2 * 1.5 / (3 + 2))
    # [0,0,99999,99999] as written: IoU with [30,70,70,90] = 800 / 99999²
    assert values["huge numbers"] == pytest.approx(2 * (1 + 800 / 99999**2) / (2 + 2))


def test_adding_non_matching_citations_never_raises_grounding():
    base_steps = [("cheeks", ("AU6",), (20, 40, 80, 60)), ("lip corners", ("AU12",), (30, 70, 70, 80))]
    extras = [
        ("cheeks", ("AU6",), (25, 45, 80, 60)),  # a worse copy of a matched AU
        ("inner brow", ("AU4",), (30, 10, 70, 30)),  # inactive
        ("nose", ("AU9",), (40, 30, 60, 50)),  # unknown to the detector
        ("chin", ("AU17",), None),  # no box
    ]
    for params in ({}, {"normalize": "cited"}, {"normalize": "max"}, {"normalize": "cited", "recall_weight": 0.3}):
        grounding = build_reward({"name": "au_grounding", "params": params})
        previous = grounding(batch([trace(base_steps)]))[0]
        for count in range(1, len(extras) + 1):
            current = grounding(batch([trace(base_steps + extras[:count])]))[0]
            assert current <= previous + 1e-12, (params, count)
            previous = current


def _box_iou(a, b) -> float:
    """Plain-Python IoU (the independent reference for these property tests)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


GROUNDABLE = ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU17", "AU25"]
_BOXES = st.tuples(st.integers(0, 80), st.integers(0, 80), st.integers(5, 20), st.integers(5, 20)).map(
    lambda v: (v[0], v[1], v[0] + v[2], v[1] + v[3])
)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_dropping_a_correct_citation_never_raises_the_default_grounding_reward(data):
    """Default reward (IoU-weighted F1): removing a step that cites an active AU with a box of IoU ≥ 0.5
    never raises the reward, whatever else the trace cites; its maximum needs every active AU grounded."""
    active = data.draw(st.lists(st.sampled_from(GROUNDABLE), min_size=1, max_size=5, unique=True))
    boxes = {au: data.draw(_BOXES) for au in GROUNDABLE}
    au_prob = {au: (0.9 if au in active else 0.1) for au in GROUNDABLE}
    cited = data.draw(st.lists(st.sampled_from(GROUNDABLE), min_size=1, max_size=6, unique=True))
    steps = []
    for au in cited:
        exact = au in active and data.draw(st.booleans())
        steps.append(("cheeks", (au,), boxes[au] if exact else data.draw(_BOXES)))
    grounding = build_reward({"name": "au_grounding"})

    def data_batch(text: str) -> GRPOBatch:
        return GRPOBatch.of([text], au_prob=[au_prob], au_box=[boxes])

    full = grounding(data_batch(trace(steps)))[0]
    correct = [i for i, (_, (au,), box) in enumerate(steps) if au in active and _box_iou(box, boxes[au]) >= 0.5]
    for index in correct:
        if len(steps) == 1:
            continue
        dropped = grounding(data_batch(trace(steps[:index] + steps[index + 1 :])))[0]
        assert dropped <= full + 1e-12, (steps, index, dropped, full)
    if full == pytest.approx(1.0):
        assert sorted(cited) == sorted(active) and all(box == boxes[au] for _, (au,), box in steps)


def test_reward_and_metric_score_each_citation_alike():
    """One definition of a grounded citation: the reward's S and C are the metric's IoU sum and cited count."""
    from tagfer.metrics import faithfulness_counts

    grounding = build_reward({"name": "au_grounding", "params": {"normalize": "cited"}})
    for name, text in {"honest": HONEST, **HACKS}.items():
        counts = faithfulness_counts(text, AU_PROB, AU_BOX, None)
        (reward,) = grounding(batch([text]))
        if counts.cited and reward:
            assert reward == pytest.approx(counts.iou_sum / counts.cited, abs=1e-12), name


def test_precision_only_grounding_pays_for_dropping_citations():
    """Why ``cited`` is not the default: one perfect box of two active AUs beats grounding both."""
    only_au6 = trace([("cheeks", ("AU6",), (20, 40, 80, 60))])
    both = trace([("cheeks", ("AU6",), (20, 40, 80, 60)), ("lip corners", ("AU12",), (30, 70, 70, 85))])
    assert score("au_grounding", only_au6, normalize="cited") > score("au_grounding", both, normalize="cited")
    assert score("au_grounding", only_au6) < score("au_grounding", both)


# -------------------------------------------------------------------------------- arbitrary text

FRAGMENTS = [
    "Global analysis: ", "Verification loop:\n", "Inspect cheeks (AU6) → raised → ", "Inspect mouth (none) → x → ",
    "Inspect lip corners (AU12, AU14) -> up -> ", "<bbox>[", "]</bbox>", "\n", ",", "-", "1e308", "99999999999",
    "20", "40.5", "nan", "Final conclusion: Combined AU6 + AU12 indicate a dominant emotion of happiness.",
    "Final conclusion: No active AUs indicate a dominant emotion of neutral.", "<answer>", "</answer>",
    " happiness ", "sad", "<think>", "</think>", "AU", "AU99", "→",
]  # fmt: skip
ARBITRARY = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join),
)
ALL_REWARDS = [build_reward({"name": name}) for name in REWARDS] + [
    build_reward({"name": "format", "params": {"partial_credit": True, "require_think": True}}),
    build_reward({"name": "au_grounding", "params": {"normalize": "max", "recall_weight": 0.5, "top_k": 1}}),
]


@settings(max_examples=150, deadline=None)
@given(text=ARBITRARY, neutral=st.booleans())
def test_arbitrary_text_gives_finite_rewards_in_range(text, neutral):
    data = batch([text], au_prob=NEUTRAL_PROB if neutral else AU_PROB)
    for callback in ALL_REWARDS:
        (value,) = callback(data)
        if value is None:
            assert callback.name == "au_f1" and neutral
            continue
        low, high = callback.value_range
        assert math.isfinite(value) and low <= value <= high, (callback.name, text, value)


@settings(max_examples=150, deadline=None)
@given(text=ARBITRARY, require_think=st.sampled_from([None, True, False]))
def test_format_reward_on_the_shared_parse_equals_a_parse_with_the_requirement(text, require_think):
    """The format reward reads the step's one parse (no <think> requirement) and applies its own; the
    reference parses the text again with the requirement, as the reward did before the parse was shared."""
    callback = build_reward({"name": "format", "params": {"require_think": require_think}})
    (value,) = callback(batch([text]))
    assert value == (1.0 if parse_trace(text, require_think=require_think).valid else 0.0)


def test_batch_keeps_label_ids_and_names_apart_and_repeats_each_sample_per_group():
    meta = {
        "id": ["a", "b"], "label_id": [1, 2], "label_name": ["happiness", "sadness"], "au_prob": [AU_PROB, NEUTRAL_PROB],
        "au_box": [AU_BOX, {}], "image_extent": [EXTENT, EXTENT], "image": ["pixels a", "pixels b"],
    }  # fmt: skip
    texts = [HONEST, "no answer", "<answer> sadness </answer>", HONEST]
    scored = GRPOBatch.from_samples(meta, texts, [30, 2, 5, 30], group_size=2)
    assert scored.id == ("a", "a", "b", "b") and scored.label_id == (1, 1, 2, 2)
    assert scored.label_name == ("happiness", "happiness", "sadness", "sadness")
    assert scored.au_box == (AU_BOX, AU_BOX, {}, {}) and scored.completion_length == (30, 2, 5, 30)
    assert [t.answer for t in scored.trace] == ["happiness", None, "sadness", "happiness"]
    assert build_reward({"name": "answer"})(scored) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="3 completions for 2 prompts"):
        GRPOBatch.from_samples(meta, texts[:3], [1, 2, 3], group_size=2)
    with pytest.raises(TypeError, match="expected str"):
        GRPOBatch.of([None])


# ------------------------------------------------------------------------------ registry and stats


def test_build_rewards_from_the_rl_config(configs_dir):
    cfg = load_config(
        configs_dir / "rl.yaml", ["rl.rewards=[{name: au_grounding, weight: 2.0, params: {normalize: max, recall_weight: 0.25}}]"]
    )
    (grounding,) = build_rewards(cfg.rl.rewards)
    assert (grounding.name, grounding.weight, grounding.recall_weight) == ("au_grounding", 2.0, 0.25)
    default = build_rewards(load_config(configs_dir / "rl.yaml").rl.rewards)
    assert [c.name for c in default] == ["format", "answer", "au_grounding"]
    assert [c.name for c in build_rewards([RewardSpec("answer", 0.5)])] == ["answer"]


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"name": "au_grouding"}, r"unknown reward 'au_grouding'; did you mean 'au_grounding'\?.*known rewards: format"),
        ({"name": "au_grounding", "params": {"treshold": 0.3}}, r"reward 'au_grounding' has no param 'treshold'.*threshold"),
        ({"name": "au_grounding", "params": {"threshold": 2}}, r"au_grounding.*params.threshold=2"),
        ({"name": "au_grounding", "params": {"normalize": "sum"}}, r"au_grounding.*params.normalize='sum'"),
        ({"name": "format", "params": {"require_think": "yes"}}, r"format.*params.require_think='yes'"),
        ({"name": "length_penalty", "params": {"soft_length": 100, "max_length": 50}}, r"params.max_length=50"),
        ({"name": "answer", "weight": math.inf}, r"answer.*weight=inf"),
        ({"name": "answer", "wieght": 1.0}, r"unknown field"),
    ],
)
def test_bad_specs_name_the_reward_and_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_rewards([spec])


def test_duplicate_and_empty_reward_lists_are_errors():
    with pytest.raises(ConfigError, match="more than once"):
        build_rewards([{"name": "format"}, {"name": "format"}])
    with pytest.raises(ConfigError, match="empty"):
        build_rewards([])


def test_batch_problems_are_named():
    grounding = build_reward({"name": "au_grounding"})
    with pytest.raises(KeyError, match="au_box"):
        grounding(GRPOBatch.of([HONEST], au_prob=[AU_PROB]))
    with pytest.raises(ValueError, match="2 entries for 1 completions"):
        grounding(GRPOBatch.of([HONEST], au_prob=[AU_PROB] * 2, au_box=[AU_BOX] * 2))
    with pytest.raises(ValueError, match="AU6"):
        grounding(batch([HONEST], au_box={"AU6": (1, 2, 3)}))


def test_reward_stats_and_matrix():
    stats = reward_stats([1.0, None, 0.0, 0.5])
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["std"] == pytest.approx(math.sqrt((0.25 + 0.25 + 0.0) / 2))
    assert all(math.isnan(v) for v in reward_stats([None]).values())
    assert math.isnan(reward_stats([0.3])["std"])
    callbacks = build_rewards([{"name": "answer"}, {"name": "au_f1"}])
    matrix = reward_matrix(callbacks, GRPOBatch.of([HONEST, HONEST], label_name=["happiness"] * 2, au_prob=[AU_PROB, NEUTRAL_PROB]))
    assert matrix.shape == (2, 2) and matrix.dtype == torch.float32
    assert matrix[:, 0].tolist() == [1.0, 1.0]
    assert matrix[0, 1].item() == 1.0 and math.isnan(matrix[1, 1].item())


def test_reward_matrix_rejects_broken_callbacks():
    class Broken(REWARDS["answer"]):
        def __call__(self, batch):
            return [math.nan] * len(batch)

    with pytest.raises(ValueError, match="non-finite"):
        reward_matrix([Broken()], batch([HONEST]))
