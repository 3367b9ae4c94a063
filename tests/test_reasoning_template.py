"""Template traces from crafted AU evidence: citation, grouping, policies, boxes, wording, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.evidence import AUEvidence
from tagfer.core.phrases import AU_PHRASES, CLASS_ANALYSES, RELAXED_PHRASES
from tagfer.core.trace import Trace, TraceStep, parse_trace
from tagfer.core.vocabulary import AU_LIST, AU_REGION, REGIONS
from tagfer.reasoning.template import (
    TemplateOptions,
    TemplateSkip,
    TraceRoundTripError,
    build_template_trace,
    check_round_trip,
    integer_box,
    region_box,
    sample_rng,
)


def identity(box):
    return box


def region_boxes() -> dict[str, tuple[float, float, float, float]]:
    """Region mode: every AU of a region shares that region's box (row i of a 200-px-wide face)."""
    return {au: (10.0, 10.0 + 20 * REGIONS.index(r), 190.0, 28.0 + 20 * REGIONS.index(r)) for au, r in AU_REGION.items()}


def evidence(probs: dict[str, float], boxes=None) -> AUEvidence:
    return AUEvidence(face_box=(0.0, 0.0, 200.0, 200.0), au_prob=probs, au_box=region_boxes() if boxes is None else boxes)


def build(ev, label, key="s", **options):
    return build_template_trace(ev, label, sample_rng(0, key), identity, TemplateOptions(**options))


def test_happy_face_cites_top_k_grouped_by_region_in_grammar_order() -> None:
    ev = evidence({"AU12": 0.95, "AU6": 0.8, "AU25": 0.6, "AU1": 0.3})
    built = build(ev, "happiness")
    parsed = parse_trace(built.text)
    assert parsed.valid and parsed.answer == "happiness"
    assert [s.region for s in parsed.steps] == ["cheeks", "lip corners", "mouth"]  # top to bottom
    assert parsed.conclusion_aus == ("AU12", "AU6", "AU25")  # strongest first
    assert "AU1" not in parsed.cited_aus()  # below threshold
    assert parsed.steps[0].box == region_boxes()["AU6"]
    assert built.provenance["pattern"] == "typical" and built.provenance["missing_prior"] is None
    assert parsed.steps[1].observation in AU_PHRASES["AU12"]["strong"]  # 0.95 ≥ 0.5 + 2/3 · 0.5
    assert parsed.steps[0].observation in AU_PHRASES["AU6"]["clear"]
    assert parsed.steps[2].observation in AU_PHRASES["AU25"]["weak"]
    assert parsed.global_analysis.split(".")[0] + "." in CLASS_ANALYSES["happiness"]


def test_region_mode_names_all_active_aus_of_a_region_in_one_step() -> None:
    ev = evidence({"AU4": 0.9, "AU1": 0.7, "AU15": 0.8})
    parsed = parse_trace(build(ev, "sadness").text)
    assert [(s.region, s.aus) for s in parsed.steps] == [("inner brow", ("AU4", "AU1")), ("lip corners", ("AU15",))]
    assert ", " in parsed.steps[0].observation  # one phrase per AU


def test_au_mode_gives_one_step_per_au_with_its_own_box() -> None:
    boxes = region_boxes()
    boxes["AU1"] = (50.0, 5.0, 150.0, 25.0)
    ev = evidence({"AU4": 0.9, "AU1": 0.7}, boxes)
    parsed = parse_trace(build(ev, "sadness", box_mode="au").text)
    assert [(s.aus, s.box) for s in parsed.steps] == [(("AU4",), boxes["AU4"]), (("AU1",), boxes["AU1"])]


def test_top_k_limits_cited_aus_and_skips_ungroundable_ones() -> None:
    probs = {"AU1": 0.99, "AU2": 0.98, "AU4": 0.97, "AU5": 0.96, "AU6": 0.95, "AU45": 0.999}
    boxes = region_boxes()
    del boxes["AU2"]  # no box: cannot be grounded
    parsed = parse_trace(build(evidence(probs, boxes), "fear", top_k=3).text)
    assert parsed.conclusion_aus == ("AU1", "AU4", "AU5")  # AU45 has no region, AU2 no box


def test_neutral_without_active_aus_inspects_relaxed_regions() -> None:
    built = build(evidence({"AU12": 0.1}), "neutral", relaxed_steps=3)
    parsed = parse_trace(built.text)
    assert parsed.valid and len(parsed.steps) == 3
    assert all(s.aus == () and s.observation in RELAXED_PHRASES[s.region] for s in parsed.steps)
    assert [REGIONS.index(s.region) for s in parsed.steps] == sorted(REGIONS.index(s.region) for s in parsed.steps)
    assert parsed.conclusion_aus == () and "No active AUs" in built.text
    assert built.provenance["pattern"] == "relaxed"


def test_neutral_with_active_aus_cites_them() -> None:
    built = build(evidence({"AU25": 0.7}), "neutral")
    assert parse_trace(built.text).conclusion_aus == ("AU25",)
    assert built.provenance["pattern"] == "slight"


def test_missing_prior_inspect_policy_looks_at_the_prototype_regions() -> None:
    built = build(evidence({"AU25": 0.8, "AU12": 0.2}), "happiness")
    parsed = parse_trace(built.text)
    assert parsed.valid and parsed.answer == "happiness"
    assert [(s.region, s.aus) for s in parsed.steps] == [("cheeks", ()), ("lip corners", ()), ("mouth", ("AU25",))]
    assert parsed.conclusion_aus == ("AU25",)  # nothing below threshold is cited
    assert built.provenance["missing_prior"] == "inspect" and built.provenance["pattern"] == "atypical"


def test_missing_prior_weak_policy_cites_the_strongest_sub_threshold_prototype_aus() -> None:
    built = build(evidence({"AU25": 0.8, "AU12": 0.3, "AU6": 0.1}), "happiness", missing_prior="weak", top_k=2)
    parsed = parse_trace(built.text)
    assert parsed.conclusion_aus == ("AU25", "AU12")  # one free Top-K slot → the strongest prototype AU
    assert parsed.steps[0].observation in AU_PHRASES["AU12"]["weak"]
    assert built.provenance["missing_prior"] == "weak"


def test_missing_prior_weak_policy_falls_back_to_inspect_when_no_prototype_au_has_probability() -> None:
    built = build(evidence({"AU25": 0.8}), "happiness", missing_prior="weak")
    assert built.provenance["missing_prior"] == "inspect"


def test_missing_prior_drop_policy_skips_the_sample() -> None:
    with pytest.raises(TemplateSkip) as err:
        build(evidence({"AU25": 0.8}), "happiness", missing_prior="drop")
    assert err.value.reason == "missing_prior"


def test_no_face_and_no_boxes_are_counted_skips() -> None:
    with pytest.raises(TemplateSkip) as no_face:
        build(AUEvidence(face_found=False), "neutral")
    assert no_face.value.reason == "no_face"
    with pytest.raises(TemplateSkip) as no_box:
        build(evidence({"AU12": 0.9}, boxes={}), "happiness")
    assert no_box.value.reason == "no_region_box"


def test_boxes_go_through_the_mapper_then_become_integers() -> None:
    ev = evidence({"AU12": 0.9})
    built = build_template_trace(ev, "happiness", sample_rng(0, "x"), lambda b: tuple(v * 2.5 for v in b), TemplateOptions())
    x1, y1, x2, y2 = region_boxes()["AU12"]
    assert parse_trace(built.text).steps[0].box == (round(x1 * 2.5), round(y1 * 2.5), round(x2 * 2.5), round(y2 * 2.5))


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((1.4, 2.6, 10.5, 20.49), (1.0, 3.0, 10.0, 20.0)),
        ((-3.0, -1.0, 0.2, 0.4), (0.0, 0.0, 1.0, 1.0)),
        ((5.0, 5.0, 5.2, 5.1), (5.0, 5.0, 6.0, 6.0)),
    ],
)
def test_integer_box(box, expected) -> None:
    assert integer_box(box) == expected


def test_region_box_is_the_union_of_the_region_aus_boxes() -> None:
    ev = evidence({}, {"AU12": (10.0, 50.0, 40.0, 60.0), "AU15": (30.0, 45.0, 90.0, 58.0), "AU1": (0.0, 0.0, float("nan"), 1.0)})
    assert region_box(ev, "lip corners") == (10.0, 45.0, 90.0, 60.0)
    assert region_box(ev, "inner brow") is None  # non-finite box is unusable
    assert region_box(ev, "chin") is None


def test_wording_is_seeded_per_sample_and_varies_across_samples() -> None:
    ev = evidence({"AU12": 0.9, "AU6": 0.9, "AU25": 0.9})
    assert build(ev, "happiness", key="a").text == build(ev, "happiness", key="a").text
    texts = {build(ev, "happiness", key=str(i)).text for i in range(30)}
    assert len(texts) > 5


def test_think_tags_option_wraps_the_reasoning() -> None:
    text = build(evidence({"AU12": 0.9}), "happiness", think_tags=True).text
    assert text.startswith("<think>") and parse_trace(text, require_think=True).valid


def test_round_trip_check_reports_a_trace_that_does_not_survive() -> None:
    bad = Trace("fine", (TraceStep("mouth", ("AU25",), "open\nwide", (1.0, 1.0, 2.0, 2.0)),), ("AU25",), "surprise")
    with pytest.raises(TraceRoundTripError, match="does not round-trip"):
        check_round_trip(bad, think_tags=False)


@pytest.mark.parametrize("options", [{"box_mode": "face"}, {"missing_prior": "guess"}, {"top_k": 0}, {"threshold": 1.0}])
def test_bad_options_are_rejected(options) -> None:
    with pytest.raises(ValueError):
        TemplateOptions(**options)


PROBS = st.dictionaries(st.sampled_from(AU_LIST + ("AU43",)), st.floats(0.0, 1.0), max_size=10)


@given(
    probs=PROBS,
    label=st.sampled_from(CLASS_NAMES),
    mode=st.sampled_from(["region", "au"]),
    policy=st.sampled_from(["inspect", "weak"]),
    k=st.integers(1, 6),
    think=st.booleans(),
    seed=st.integers(0, 99),
)
@settings(max_examples=150, deadline=None)
def test_every_template_trace_is_valid_and_grounded_in_the_evidence(probs, label, mode, policy, k, think, seed) -> None:
    ev = evidence(probs)
    built = build_template_trace(
        ev,
        label,
        sample_rng(seed, "k"),
        identity,
        TemplateOptions(top_k=k, box_mode=mode, missing_prior=policy, think_tags=think),
    )
    parsed = parse_trace(built.text, require_think=think)
    assert parsed.valid and parsed.answer == label
    cited = parsed.cited_aus()
    assert set(cited) == set(built.provenance["cited"])
    if policy == "inspect":  # only active AUs are cited, at most K of them
        assert all(probs[au] >= 0.5 for au in cited) and len(cited) <= k
    for au, box in parsed.cited_boxes():
        assert box == region_boxes()[au]
