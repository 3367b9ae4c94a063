"""Property tests of the trace grammar: render → parse round-trips, and the parser never raises."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.phrases import AU_PHRASES, RELAXED_PHRASES
from tagfer.core.trace import MAX_COORDINATE, MAX_TRACE_CHARS, ParsedTrace, Trace, TraceStep, parse_trace, render_trace
from tagfer.core.vocabulary import AU_LIST, REGIONS

BANK = sorted(
    {p for levels in AU_PHRASES.values() for ps in levels.values() for p in ps} | {p for ps in RELAXED_PHRASES.values() for p in ps}
)

# Free text that the grammar allows inside a line: anything but a newline, the arrow, and angle
# brackets (which would open tags); surrogates cannot be encoded.
SAFE_TEXT = (
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n<>→"), min_size=1, max_size=80).map(str.strip).filter(bool)
)
OBSERVATION = st.one_of(st.sampled_from(BANK), SAFE_TEXT)
AU_SET = st.lists(st.sampled_from(AU_LIST), unique=True, max_size=5).map(tuple)


@st.composite
def integer_boxes(draw, limit: int = int(MAX_COORDINATE)):
    x1 = draw(st.integers(0, limit - 1))
    y1 = draw(st.integers(0, limit - 1))
    x2 = draw(st.integers(x1 + 1, limit))
    y2 = draw(st.integers(y1 + 1, limit))
    return (float(x1), float(y1), float(x2), float(y2))


STEP = st.builds(TraceStep, region=st.sampled_from(REGIONS), aus=AU_SET, observation=OBSERVATION, box=integer_boxes())
TRACE = st.builds(
    Trace,
    global_analysis=SAFE_TEXT,
    steps=st.lists(STEP, min_size=1, max_size=8).map(tuple),
    conclusion_aus=AU_SET,
    label=st.sampled_from(CLASS_NAMES),
)


@given(trace=TRACE, think=st.booleans())
@settings(max_examples=300, deadline=None)
def test_render_then_parse_round_trips(trace: Trace, think: bool) -> None:
    parsed = parse_trace(render_trace(trace, think_tags=think), require_think=think)
    assert parsed.errors == []
    assert parsed.valid
    assert parsed.has_think is think
    assert parsed.global_analysis == trace.global_analysis
    assert parsed.steps == list(trace.steps)
    assert parsed.conclusion_aus == trace.conclusion_aus
    assert parsed.answer == trace.label == parsed.conclusion_label
    assert parsed.cited_boxes() == [(au, s.box) for s in trace.steps for au in s.aus]


@given(trace=TRACE, think=st.booleans())
@settings(max_examples=50, deadline=None)
def test_think_requirement_is_enforced_both_ways(trace: Trace, think: bool) -> None:
    parsed = parse_trace(render_trace(trace, think_tags=think), require_think=not think)
    assert not parsed.valid
    assert parsed.answer == trace.label  # the answer is still read


def test_a_step_without_box_renders_to_an_invalid_trace() -> None:
    trace = Trace("calm face", (TraceStep("mouth", (), "mouth at rest", None),), (), "neutral")
    parsed = parse_trace(render_trace(trace))
    assert not parsed.valid
    assert any("box is not" in e for e in parsed.errors)
    assert parsed.answer == "neutral"


def test_decimal_coordinates_are_read_and_negative_ones_rejected() -> None:
    base = (
        "Global analysis: x\nVerification loop:\nInspect mouth (AU25) → lips parted → <bbox>[{}]</bbox>\n"
        "Final conclusion: Combined AU25 indicate a dominant emotion of surprise.\n<answer> surprise </answer>"
    )
    assert parse_trace(base.format("1.5,2,10.25,20")).steps[0].box == (1.5, 2.0, 10.25, 20.0)
    negative = parse_trace(base.format("-1,2,10,20"))
    assert not negative.valid and negative.steps[0].box is None
    huge = parse_trace(base.format(f"1,2,{int(MAX_COORDINATE) + 1},20"))
    assert not huge.valid and huge.steps[0].box is None


FRAGMENTS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<answer> happiness </answer>",
    "<bbox>",
    "</bbox>",
    "[",
    "]",
    ",",
    "Inspect ",
    "Inspect mouth (AU25) → ",
    "Global analysis:",
    "Verification loop:",
    "Final conclusion:",
    "Combined AU4 + AU99",
    " indicate a dominant emotion of ",
    "→",
    "->",
    "\n",
    "(",
    ")",
    "AU",
    "none",
    "-1",
    "1e309",
    "nan",
    "inf",
    "9" * 40,
    "0.",
    ".5",
    "happy",
    "sad or happy",
    "\u202e",
    "\x00",
    "ÄÖÜ",
    "😀",
    " ",
    "\t",
    "\r\n",
]


def _check_never_raises(text) -> ParsedTrace:
    parsed = parse_trace(text)
    assert isinstance(parsed, ParsedTrace)
    if parsed.valid:  # a valid parse always carries a class answer and at least one step
        assert parsed.answer in CLASS_NAMES and parsed.steps
    return parsed


@given(text=st.text(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_parser_never_raises_on_arbitrary_unicode(text: str) -> None:
    _check_never_raises(text)


@given(parts=st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=10)), max_size=60), think=st.sampled_from([None, True, False]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parser_never_raises_on_grammar_fragments(parts: list[str], think) -> None:
    parsed = parse_trace("".join(parts), require_think=think)
    assert isinstance(parsed, ParsedTrace)


@given(trace=TRACE, data=st.data())
@settings(max_examples=200, deadline=None)
def test_parser_never_raises_on_mutated_valid_traces(trace: Trace, data) -> None:
    text = render_trace(trace, think_tags=data.draw(st.booleans()))
    cut = data.draw(st.integers(0, len(text)))
    insert = data.draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)))
    _check_never_raises(text[:cut] + insert + text[cut + data.draw(st.integers(0, 5)) :])


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n\t ",
        None,
        42,
        b"<answer> happiness </answer>",
        ["<answer>"],
        "<answer></answer>",
        "<think><think><answer> fear </answer></think></think>",
        "<think>Global analysis: x",
        "<answer> fear </answer><answer> fear </answer>",
        "Global analysis: x\nVerification loop:\n" + "Inspect mouth (AU25) → open → <bbox>[1,2,3,4]</bbox>\n" * 5000,
        "Inspect mouth (AU25) → open → <bbox>[" + "9" * 5000 + ",1,2,3]</bbox>",
        "Inspect mouth (AU25) → open → <bbox>[" + ",".join(["1"] * 3000) + "]</bbox>",
        "<bbox>[1,2,3,4]</bbox>" * 4000,
        "(" * 10000 + ")" * 9000,
        "Final conclusion: Combined " + " + ".join(["AU1"] * 500) + " indicate a dominant emotion of fear.",
    ],
)
def test_parser_never_raises_on_hostile_inputs(text) -> None:
    parsed = parse_trace(text)
    assert isinstance(parsed, ParsedTrace)
    assert not parsed.valid
    assert parsed.errors


def test_many_steps_within_the_length_limit_parse() -> None:
    steps = tuple(TraceStep("mouth", ("AU25",), "open", (1.0, 2.0, 3.0 + i, 4.0)) for i in range(300))
    text = render_trace(Trace("x", steps, ("AU25",), "surprise"))
    assert len(text) < MAX_TRACE_CHARS
    parsed = parse_trace(text)
    assert parsed.valid and len(parsed.steps) == 300


PAPER_TRACE = (
    "Global analysis: The mouth corners are pulled down and the chin is raised.\n"
    "Verification loop:\n"
    "Inspect mouth region (AU14, AU17) → slight downturn and skin tension → <bbox>[181,410,334,511]</bbox>\n"
    "Final conclusion: Combined AU14 + AU17 indicate a dominant emotion of sadness.\n"
    "<answer> sadness </answer>"
)


@pytest.mark.parametrize(
    ("old", "new", "region", "aus"),
    [
        ("", "", "mouth", ("AU14", "AU17")),  # TAG's figure verbatim
        ("mouth region", "cheek region", "cheeks", ("AU14", "AU17")),
        ("mouth region", "mouth corners", "lip corners", ("AU14", "AU17")),
        ("mouth region", "Cheeks", "cheeks", ("AU14", "AU17")),
        ("mouth region", "Lip Corners", "lip corners", ("AU14", "AU17")),
        ("Inspect mouth region", "inspect the Mouth area", "mouth", ("AU14", "AU17")),
        ("(AU14, AU17)", "(AU14 Dimpler, AU17: chin raiser)", "mouth", ("AU14", "AU17")),
        (
            "Combined AU14 + AU17 indicate a dominant emotion of sadness.",
            "The combination of AU17 and AU14 indicates sadness.",
            "mouth",
            ("AU14", "AU17"),
        ),
        ("Final conclusion: Combined", "FINAL CONCLUSION: Combined", "mouth", ("AU14", "AU17")),
    ],
)
def test_the_papers_trace_wording_parses(old, new, region, aus) -> None:
    parsed = parse_trace(PAPER_TRACE.replace(old, new) if old else PAPER_TRACE)
    assert parsed.valid, parsed.errors
    assert parsed.steps[0].region == region and parsed.steps[0].aus == aus
    assert parsed.steps[0].box == (181.0, 410.0, 334.0, 511.0)
    assert set(parsed.conclusion_aus) == {"AU14", "AU17"} and parsed.conclusion_label == parsed.answer == "sadness"


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("(AU14, AU17)", "()", "is not a known AU"),  # a step grounding no AU
        ("(AU14, AU17)", "(AU14, AU99)", "is not a known AU"),
        ("(AU14, AU17)", "(AU14 Cheek Raiser, AU17)", "AU14 is the dimpler"),
        ("[181,410,334,511]", "[181,410,334]", "4 numbers"),
        ("<answer> sadness", "<answer> gloomy", "is not exactly one of"),
        ("emotion of sadness.", "emotion of happiness.", "conclusion says happiness, answer says sadness"),
        ("emotion of sadness.", "emotion of sadness rather than anger.", "several classes"),
        ("emotion of sadness.", "emotion.", "names no class"),
        ("Combined AU14 + AU17 indicate", "The face indicates", "names no AU"),
        ("mouth region", "elbow region", "unknown region"),
    ],
)
def test_what_breaks_grounding_is_still_rejected(old, new, error) -> None:
    parsed = parse_trace(PAPER_TRACE.replace(old, new))
    assert not parsed.valid and any(error in e for e in parsed.errors), parsed.errors
