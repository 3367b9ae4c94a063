"""Model output is hostile input: ``parse_trace``, every reward callback and the faithfulness metric on
more than 10,000 generated strings (hypothesis, derandomized, no example database).

Strings: arbitrary unicode (control characters, surrogates, right-to-left marks), grammar fragments mixed
with huge, negative, non-ASCII and non-finite numbers, nested and unclosed tags, thousands of boxes,
mutated valid traces and empty text. Every call must return normally; every reward must be finite and
inside its documented ``value_range`` (or None where the reward documents "not applicable"); every
faithfulness score must lie in [0, 1] (or be undefined).

Examples: parser 4,000 + rewards 3,500 + metric 2,500 = 10,000, each one string (parser) or one to two
strings (a reward batch, a metric update): about 13,000 strings in all. The parser test also checks
that the linear ``<answer>`` scan finds exactly what the regular expression it replaced finds (that
expression took quadratic time on a completion repeating ``<answer>``: 0.6 s for 20,000 characters).
"""

from __future__ import annotations

import math
import random
import re

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.trace import MAX_TRACE_CHARS, ParsedTrace, Trace, TraceStep, answer_spans, parse_trace, render_trace
from tagfer.core.vocabulary import AU_LIST, REGIONS
from tagfer.metrics.grounding import SCORE_NAMES, GroundingFaithfulness, faithfulness_counts
from tagfer.training.grpo import combine_rewards
from tagfer.training.rewards import REWARDS, GRPOBatch, build_reward, reward_matrix

PARSER_EXAMPLES, REWARD_EXAMPLES, METRIC_EXAMPLES = 4000, 3500, 2500
FUZZ = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --------------------------------------------------------------------------------------- strategies
# Hypothesis draws the kind of string and a seed (two cheap draws per example); the string is built from
# ``random.Random(seed)`` out of grammar pieces and hostile fragments. Per-character hypothesis strategies
# cost ~5-10 ms per example here, which would make 10,000 examples take minutes instead of seconds.
NUMBER_POOL = [
    "0", "1", "-1", "-0", "+5", "999", "1000", "100000", "100001", "-250", "5.", ".5", "-.5", "1.25", "3.14159",
    "1e3", "1e309", "-1e309", "nan", "NaN", "inf", "-inf", "0x1F", "1_000", "٣", "１２", "½", "²", "9" * 13, "9" * 400,
    str(2**63), str(-(2**63)), str(10**40), "1" * 12 + "." + "9" * 12, ".", "", " ", "--1", "1-", "1e-5",
]  # fmt: skip
TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<bbox>", "</bbox>", "<box>", "<|im_end|>", "<|image_pad|>"]
WORDS = [
    "Global analysis:", "Verification loop:", "Final conclusion:", "Inspect ", "Combined ", " + ", "No active AUs",
    " indicate a dominant emotion of ", " indicates a dominant emotion of ", "→", "->", "(", ")", "[", "]", ",",
    "none", "AU", "AU0", "AU99", "AU٤", "AU４", "au_04_r", "\n", "\r\n", "\t", " ", "\x00", "\u202e", "\ufeff", "\ud800",
    "😀", "Ä", "ﬀ", "happy", "happiness", "sad or happy", "HAPPY!!", "Neutral.", "contempt", "anger", "", "\\boxed{fear}",
]  # fmt: skip
POOL = TAGS + WORDS + list(REGIONS) + list(AU_LIST) + list(CLASS_NAMES) + NUMBER_POOL
BOX_FORMS = [
    ("<bbox>[", "]</bbox>"),
    ("<bbox>", "</bbox>"),
    ("<bbox>[", ""),
    ("[", "]"),
    ("<bbox>[[", "]]</bbox>"),
    ("<bbox>[", "]</bbox></bbox>"),
]
AU_LISTS = ["AU25", "none", "", "AU99", "AU-4", "au4, AU4", "AU٤", "AU1, AU2, AU4, AU5", "AU12,,AU6", "AU6 + AU12", "AU6, AU6"]
MANY_UNITS = [
    "<bbox>[1,2,3,4]</bbox>",
    "Inspect mouth (AU25) → open → <bbox>[1,2,30,40]</bbox>\n",
    "Inspect lip corners (AU12, AU14) -> up -> <bbox>[-5,1e9,3,4]</bbox>\n",
    "[1,2,3,4]",
]
CONCLUSIONS = ["", "Final conclusion: Combined AU25 indicate a dominant emotion of surprise.\n<answer> surprise </answer>"]


def _number(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(NUMBER_POOL)
    if roll < 0.8:
        return str(rng.randint(-(10**40), 10**40))
    return repr(rng.uniform(-1e308, 1e308) if rng.random() < 0.5 else rng.random() * 2000 - 500)


def _unicode(rng: random.Random, size: int) -> str:
    """Arbitrary code points: controls, surrogates, combining marks, emoji, private use."""
    return "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(0, 0x110000)])) for _ in range(size))


def _fragment(rng: random.Random) -> str:
    roll = rng.random()
    return rng.choice(POOL) if roll < 0.7 else _number(rng) if roll < 0.85 else _unicode(rng, rng.randint(0, 4))


def _box(rng: random.Random) -> str:
    """Boxes with huge, negative, non-ASCII or non-finite coordinates, wrong arity or open brackets."""
    opener, closer = rng.choice(BOX_FORMS)
    return opener + rng.choice([",", ", ", " ", ";"]).join(_number(rng) for _ in range(rng.choice([0, 1, 3, 4, 4, 4, 5, 6]))) + closer


def _steps(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 8)):
        region = rng.choice(list(REGIONS) + ["", "eyes (AU6)", "x" * 70, _unicode(rng, 5)])
        arrow = rng.choice(["→", "->", "→→", "", "- >"])
        box = (
            _box(rng) if rng.random() < 0.6 else rng.choice(["<bbox>[10,20,30,40]</bbox>", "<bbox>[]</bbox>", "<bbox>[30,40,10,20]</bbox>"])
        )
        lines.append(f"Inspect {region} ({rng.choice(AU_LISTS)}) {arrow} {_fragment(rng)} {arrow} {box}")
    return "\n".join(lines)


def _soup(rng: random.Random) -> str:
    return "".join(_fragment(rng) for _ in range(rng.randint(0, 60)))


def _nested(rng: random.Random) -> str:
    """Nested, repeated and unclosed think/answer/bbox tags around a plausible body."""
    depth = rng.randint(0, 50)
    opens = rng.choice(["<think>", "<answer>", "<bbox>", "<think><answer>"]) * depth
    closes = rng.choice(["</think>", "</answer>", "", "</answer></think>"]) * rng.randint(0, depth + 2)
    body = _soup(rng) if rng.random() < 0.5 else _steps(rng)
    return opens + body + closes + rng.choice(["", "<answer> fear </answer>", "<answer>", "</answer>"])


def _many_boxes(rng: random.Random) -> str:
    """Hundreds to thousands of boxes, inside steps or bare, under and over the parser's length limit."""
    head = "Global analysis: many boxes.\nVerification loop:\n"
    return head + rng.choice(MANY_UNITS) * rng.randint(100, 5000) + rng.choice(CONCLUSIONS)


def _near_limit(rng: random.Random) -> str:
    unit = rng.choice(["a", "→", "😀", "<answer>", MANY_UNITS[1]])
    return (unit * MAX_TRACE_CHARS)[: MAX_TRACE_CHARS + rng.randint(-3, 3)]


def _valid(rng: random.Random) -> str:
    steps = tuple(
        TraceStep(
            rng.choice(REGIONS),
            tuple(rng.sample(AU_LIST, rng.randint(0, 3))),
            rng.choice(["brows raised", "lips parted", "x"]),
            (float(rng.randint(0, 400)), float(rng.randint(0, 400)), float(rng.randint(401, 1000)), float(rng.randint(401, 1000))),
        )
        for _ in range(rng.randint(1, 6))
    )
    conclusion = tuple(dict.fromkeys(au for step in steps for au in step.aus))
    return render_trace(Trace("A face.", steps, conclusion, rng.choice(CLASS_NAMES)), think_tags=rng.random() < 0.5)


def _mutated(rng: random.Random) -> str:
    """A valid trace with a few cuts and insertions of fragments and hostile boxes."""
    text = _valid(rng)
    for _ in range(rng.randint(1, 4)):
        cut = rng.randint(0, len(text))
        text = text[:cut] + (_fragment(rng) if rng.random() < 0.6 else _box(rng)) + text[cut + rng.randint(0, 8) :]
    return text


KINDS = {
    "empty": lambda rng: rng.choice(["", " ", "\n", "\x00", "<answer></answer>"]),
    "unicode": lambda rng: _unicode(rng, rng.randint(0, 300)),
    "soup": _soup,
    "steps": _steps,
    "nested": _nested,
    "many_boxes": _many_boxes,
    "near_limit": _near_limit,
    "valid": _valid,
    "mutated": _mutated,
}
HOSTILE = st.one_of(
    st.builds(lambda kind, seed: KINDS[kind](random.Random(seed)), st.sampled_from(sorted(KINDS)), st.integers(0, 2**32 - 1)),
    st.text(max_size=80),  # hypothesis' own unicode text, shrinkable
)

# --------------------------------------------------------------------------------------- evidence
EXTENT = (1000, 1000)
AU_PROB = {"AU1": 0.9, "AU4": 0.7, "AU6": 0.95, "AU12": 0.8, "AU25": 0.6, "AU15": 0.1}
AU_BOX = {"AU1": (200, 100, 400, 200), "AU4": (350, 100, 650, 200), "AU6": (150, 300, 850, 450), "AU12": (250, 550, 750, 750),
          "AU25": (380, 600, 620, 720), "AU15": (250, 600, 750, 800)}  # fmt: skip
NO_ACTIVE_PROB = {au: 0.05 for au in AU_PROB}

#: Every registered reward with its defaults, plus non-default parameter settings.
CALLBACKS = [build_reward({"name": name}) for name in REWARDS] + [
    build_reward({"name": "format", "params": {"partial_credit": True, "require_think": True}}),
    build_reward({"name": "au_grounding", "params": {"normalize": "max", "recall_weight": 0.5, "top_k": 2}}),
    build_reward({"name": "length_penalty", "params": {"soft_length": 10, "max_length": 20, "unit": "tokens"}}),
]
METRIC = GroundingFaithfulness()  # one instance, reset per example (construction costs more than a test)
MAY_BE_NONE = {"au_f1"}  # documented: None when the detector finds no active AU


def reward_batch(texts: list[str], label: str, au_prob: dict, lengths: list[int]) -> GRPOBatch:
    n = len(texts)
    return GRPOBatch.of(
        texts, label_name=[label] * n, au_prob=[au_prob] * n, au_box=[AU_BOX] * n, image_extent=[EXTENT] * n, completion_length=lengths
    )


# ------------------------------------------------------------------------------------------- tests
@settings(max_examples=PARSER_EXAMPLES, **FUZZ)
@given(text=HOSTILE, require_think=st.sampled_from([None, True, False]))
def test_parse_trace_never_raises_and_stays_consistent(text: str, require_think) -> None:
    parsed = parse_trace(text, require_think=require_think)
    assert isinstance(parsed, ParsedTrace)
    if len(text) < 2000:  # the linear answer scan finds what the (quadratic) regular expression finds
        assert answer_spans(text) == re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)
    assert all(isinstance(e, str) and e for e in parsed.errors)
    assert parsed.answer is None or parsed.answer in CLASS_NAMES
    assert parsed.conclusion_label is None or parsed.conclusion_label in CLASS_NAMES
    for au, box in parsed.cited_boxes():
        assert au in AU_LIST
        x1, y1, x2, y2 = box
        assert all(math.isfinite(v) and v >= 0 for v in box) and x2 > x1 and y2 > y1
    assert set(parsed.cited_aus()) <= set(AU_LIST)
    if parsed.valid:
        assert parsed.answer is not None and parsed.steps and parsed.conclusion_label == parsed.answer
        assert not any("parser failure" in e for e in parsed.errors)


@settings(max_examples=REWARD_EXAMPLES, **FUZZ)
@given(
    texts=st.lists(HOSTILE, min_size=1, max_size=2),
    label=st.sampled_from(CLASS_NAMES),
    active=st.booleans(),
    length=st.integers(0, 10**9),
)
def test_every_reward_is_finite_and_in_its_documented_range(texts: list[str], label: str, active: bool, length: int) -> None:
    batch = reward_batch(texts, label, AU_PROB if active else NO_ACTIVE_PROB, [length] * len(texts))
    matrix = reward_matrix(CALLBACKS, batch)  # raises NonFiniteRewardError on ±inf/NaN values
    assert matrix.shape == (len(texts), len(CALLBACKS))
    for column, callback in enumerate(CALLBACKS):
        low, high = callback.value_range
        for value in matrix[:, column].tolist():
            if math.isnan(value):
                assert callback.name in MAY_BE_NONE and not active, (callback.name, texts)
                continue
            assert low <= value <= high, (callback.name, value, texts)
    combined = combine_rewards(matrix, [callback.weight for callback in CALLBACKS])
    assert torch.isfinite(combined).all()


@settings(max_examples=METRIC_EXAMPLES, **FUZZ)
@given(texts=st.lists(HOSTILE, min_size=1, max_size=2), active=st.booleans(), use_answer=st.booleans())
def test_faithfulness_metric_scores_stay_in_the_unit_interval(texts: list[str], active: bool, use_answer: bool) -> None:
    prob = AU_PROB if active else NO_ACTIVE_PROB
    for text in texts:
        parsed = parse_trace(text)
        counts = faithfulness_counts(text, prob, AU_BOX, parsed.answer if use_answer else None)
        assert counts.cited_active <= counts.cited and counts.hallucinated <= counts.cited
        assert 0.0 <= counts.iou_sum <= counts.cited
        for name, value in counts.scores().items():
            assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0), (name, value, text)
    METRIC.reset()
    METRIC.update(texts, [prob] * len(texts), [AU_BOX] * len(texts))
    scores = METRIC.compute()
    assert set(scores) == set(SCORE_NAMES)
    for name, value in scores.items():
        assert bool(torch.isnan(value)) or 0.0 <= float(value) <= 1.0, (name, value)


VALID = (
    "Global analysis: x\nVerification loop:\nInspect inner brow ({au}) → raised → <bbox>[{box}]</bbox>\n"
    "Final conclusion: Combined AU1 indicate a dominant emotion of surprise.\n<answer> surprise </answer>"
)


def test_only_ascii_digits_make_numbers_and_au_names():
    """The renderer writes ASCII; look-alike digits (Arabic-Indic, full-width) are format errors, not data."""
    assert parse_trace(VALID.format(au="AU1", box="1,2,30,40")).valid
    arabic = parse_trace(VALID.format(au="AU١", box="1,2,30,40"))
    assert not arabic.valid and any("is not a known AU" in e for e in arabic.errors)
    fullwidth = parse_trace(VALID.format(au="AU1", box="１,2,30,40"))
    assert not fullwidth.valid and fullwidth.steps[0].box is None
