"""The phrase bank: complete coverage, grammar-safe wording, intensity bins and evidence patterns."""

from __future__ import annotations

import re

import pytest

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.phrases import (
    AU_PHRASES,
    CLASS_ANALYSES,
    EVIDENCE_PATTERNS,
    INTENSITIES,
    PATTERN_ANALYSES,
    RELAXED_PHRASES,
    all_phrases,
    evidence_pattern,
    intensity_level,
)
from tagfer.core.trace import parse_trace
from tagfer.core.vocabulary import AU_NAMES, EXPRESSION_PRIORS, REGIONS

UNSAFE = re.compile(r"[\n()<>→]|->")


def test_every_au_region_and_class_has_several_wordings() -> None:
    assert set(AU_PHRASES) == set(AU_NAMES)
    assert all(set(levels) == set(INTENSITIES) and all(len(v) >= 2 for v in levels.values()) for levels in AU_PHRASES.values())
    assert set(RELAXED_PHRASES) == set(REGIONS) and all(len(v) >= 2 for v in RELAXED_PHRASES.values())
    assert set(CLASS_ANALYSES) == set(CLASS_NAMES) and all(len(v) >= 2 for v in CLASS_ANALYSES.values())
    assert set(PATTERN_ANALYSES) == set(EVIDENCE_PATTERNS)


def test_phrases_are_short_single_line_and_grammar_safe() -> None:
    single = [p for p in all_phrases() if "\n" not in p]
    assert not [p for p in single if UNSAFE.search(p)]
    assert max(len(p.split()) for p in single) <= 12


def test_all_phrases_is_unique_ordered_and_its_traces_parse() -> None:
    phrases = all_phrases()
    assert phrases == all_phrases() and len(phrases) == len(set(phrases))
    traces = [p for p in phrases if "<answer>" in p]
    assert len(traces) == 2 * len(CLASS_NAMES)
    assert all(parse_trace(t).valid for t in traces)
    assert {parse_trace(t).answer for t in traces} == set(CLASS_NAMES)


@pytest.mark.parametrize(
    ("p", "threshold", "level"),
    [
        (0.5, 0.5, "weak"),
        (0.2, 0.5, "weak"),
        (0.6666, 0.5, "weak"),
        (0.6667, 0.5, "clear"),
        (0.8333, 0.5, "clear"),
        (0.8334, 0.5, "strong"),
        (1.0, 0.5, "strong"),
        (0.4, 0.1, "clear"),
        (0.0, 0.0, "weak"),
    ],
)
def test_intensity_bins_split_the_active_range_in_thirds(p, threshold, level) -> None:
    assert intensity_level(p, threshold) == level


def test_intensity_rejects_a_threshold_outside_0_1() -> None:
    with pytest.raises(ValueError, match="threshold"):
        intensity_level(0.5, 1.0)


@pytest.mark.parametrize(
    ("active", "label", "pattern"),
    [
        (set(), "happiness", "relaxed"),
        (set(), "neutral", "relaxed"),
        ({"AU25"}, "neutral", "slight"),
        ({"AU6", "AU12", "AU25"}, "happiness", "typical"),
        ({"AU12"}, "happiness", "partial"),
        ({"AU25"}, "happiness", "atypical"),
    ],
)
def test_evidence_pattern(active, label, pattern) -> None:
    assert evidence_pattern(active, EXPRESSION_PRIORS[label]) == pattern
