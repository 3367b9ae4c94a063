"""Template traces: an AU-grounded reasoning trace written from the detector's evidence and the label.

The recipe (TAG's data construction without a teacher VLM):

1. **Cite** the Top-K active AUs (probability ≥ ``threshold``, strongest first) that the project's
   vocabulary places in a region and that have a box.
2. **Steps**: ``box_mode="region"`` — one step per region naming all its cited AUs (strongest first), with
   the region's box; ``box_mode="au"`` — one step per AU with its own box. Steps run top to bottom
   (:data:`tagfer.core.vocabulary.REGIONS` order). Each AU gets a phrase for its intensity
   (:func:`tagfer.core.phrases.intensity_level`), picked with a per-sample seeded RNG so the
   wording varies across samples but not across reruns.
3. **Label without evidence** — when the label has prototypical AUs (:data:`EXPRESSION_PRIORS`) and
   none is cited, ``missing_prior`` decides:

   * ``"inspect"`` (default): add steps over the prototype's regions with ``none`` and a relaxed-region
     phrase. The trace stays true to the detector: it looks where the label's AUs would be and reports
     that they are absent, and it never cites an AU the grounding reward would count as hallucinated.
   * ``"weak"``: cite the label's prototypical AUs that have any probability (strongest first, as many
     as Top-K slots are free, at least one) with ``weak`` wording. These AUs are below the threshold,
     so the AU-grounding reward and the faithfulness metric treat them as unsupported.
   * ``"drop"``: no trace (:class:`TemplateSkip`, counted by the builder).

   Falls back from ``weak`` to ``inspect`` when no prototypical AU has a probability above zero.
4. **Nothing to cite** (neutral faces, or nothing active and no prototype regions with boxes):
   ``relaxed_steps`` regions drawn with the RNG, each ``none`` with a relaxed phrase.
5. **Boxes** are the union of the step's AU boxes in original-image pixels (in region mode the AUs of a
   region share one box, so the union is that box), mapped by ``map_box`` into the model family's
   convention *after the processor's resize* (``tagfer.models.boxes.to_model_space``), then rounded to
   integers, clipped at 0 and widened to at least 1 unit so the grammar accepts them.
6. **Global analysis**: a class sentence and an evidence-pattern sentence
   (:func:`tagfer.core.phrases.evidence_pattern` over *all* active AUs, not only the Top-K: it
   describes the whole face); **conclusion**: the cited AUs, strongest first.

Every trace is rendered, parsed back and compared (:func:`check_round_trip`); a mismatch is a bug in
the grammar or the phrase bank and raises :class:`TraceRoundTripError`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.evidence import AUEvidence
from tagfer.core.phrases import (
    AU_PHRASES,
    CLASS_ANALYSES,
    PATTERN_ANALYSES,
    RELAXED_PHRASES,
    evidence_pattern,
    intensity_level,
)
from tagfer.core.regions import union_box
from tagfer.core.trace import Box, Trace, TraceStep, parse_trace, render_trace
from tagfer.core.vocabulary import AU_REGION, EXPRESSION_PRIORS, REGIONS

#: Maps a box in original-image pixels to the model's coordinate convention.
BoxMapper = Callable[[Box], Box]

BOX_MODES = ("region", "au")
MISSING_PRIOR_POLICIES = ("inspect", "weak", "drop")


class TemplateSkip(ValueError):
    """This sample gets no template trace (a documented, counted skip); ``reason`` is a short key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TraceRoundTripError(RuntimeError):
    """A rendered trace did not parse back to the same content (a bug, never a data problem)."""


@dataclass(frozen=True)
class TemplateOptions:
    """How template traces are written (``au.threshold``, ``traces.top_k``, ``au.box_mode``, …)."""

    threshold: float = 0.5
    top_k: int = 5
    box_mode: str = "region"
    missing_prior: str = "inspect"
    relaxed_steps: int = 2
    think_tags: bool = False

    def __post_init__(self) -> None:
        if self.box_mode not in BOX_MODES:
            raise ValueError(f"box_mode={self.box_mode!r}; expected one of {list(BOX_MODES)}")
        if self.missing_prior not in MISSING_PRIOR_POLICIES:
            raise ValueError(f"missing_prior={self.missing_prior!r}; expected one of {list(MISSING_PRIOR_POLICIES)}")
        if self.top_k < 1 or self.relaxed_steps < 1:
            raise ValueError(f"top_k ({self.top_k}) and relaxed_steps ({self.relaxed_steps}) must be ≥ 1")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {self.threshold}")


@dataclass(frozen=True)
class TemplateTrace:
    """A built template trace: its content, its text, and what went into it (the JSONL provenance)."""

    trace: Trace
    text: str
    provenance: dict = field(default_factory=dict)


def sample_rng(seed: int, key: str) -> random.Random:
    """A ``random.Random`` seeded by ``(seed, key)`` (string seeding is stable across processes)."""
    return random.Random(f"{seed}:{key}")


def integer_box(box: Box) -> Box:
    """Round to integers, clip at 0, and make ``x2 > x1`` and ``y2 > y1`` (widening by 1 if needed)."""
    x1, y1, x2, y2 = (max(0, int(round(v))) for v in box)
    return (float(x1), float(y1), float(max(x2, x1 + 1)), float(max(y2, y1 + 1)))


def region_box(evidence: AUEvidence, region: str) -> Box | None:
    """The union of the boxes of ``region``'s AUs in ``evidence`` (None when it has none)."""
    boxes = [evidence.au_box[au] for au, r in AU_REGION.items() if r == region and _usable_box(evidence.au_box.get(au))]
    return union_box(boxes) if boxes else None


def build_template_trace(
    evidence: AUEvidence,
    label: str,
    rng: random.Random,
    map_box: BoxMapper,
    options: TemplateOptions = TemplateOptions(),
) -> TemplateTrace:
    """The template trace for one sample (see the module docstring). Raises :class:`TemplateSkip`."""
    if label not in CLASS_NAMES:
        raise ValueError(f"label {label!r} is not one of {list(CLASS_NAMES)}")
    if not evidence.face_found:
        raise TemplateSkip("no_face", "the AU detector found no face")
    prior = EXPRESSION_PRIORS[label]
    cited = groundable_top_k(evidence, options.top_k, options.threshold)
    policy = None
    relaxed: list[str] = []
    if prior and not set(cited) & set(prior):
        policy = options.missing_prior
        if policy == "drop":
            raise TemplateSkip("missing_prior", f"no prototypical AU of {label} {list(prior)} is active")
        weak = _weak_prior_aus(evidence, prior, max(1, options.top_k - len(cited))) if policy == "weak" else {}
        if weak:
            cited.update(weak)
        else:
            policy = "inspect"
            covered = {AU_REGION[au] for au in cited}
            relaxed = [r for r in dict.fromkeys(AU_REGION[au] for au in prior) if r not in covered]
            relaxed = [r for r in relaxed if region_box(evidence, r) is not None][: max(1, options.top_k - len(covered))]
    if not cited and not relaxed:
        with_box = [r for r in REGIONS if region_box(evidence, r) is not None]
        if not with_box:
            raise TemplateSkip("no_region_box", "the evidence has no usable region box")
        relaxed = rng.sample(with_box, min(options.relaxed_steps, len(with_box)))

    steps = _au_steps(evidence, cited, rng, map_box, options) + [
        (
            REGIONS.index(region),
            TraceStep(region, (), rng.choice(RELAXED_PHRASES[region]), _model_box(region_box(evidence, region), map_box)),
        )
        for region in relaxed
    ]
    steps.sort(key=lambda item: item[0])
    pattern = evidence_pattern({au for au in evidence.active(options.threshold) if au in AU_REGION}, prior)
    analysis = f"{rng.choice(CLASS_ANALYSES[label])} {rng.choice(PATTERN_ANALYSES[pattern])}"
    trace = Trace(analysis, tuple(step for _, step in steps), tuple(cited), label)
    text = check_round_trip(trace, think_tags=options.think_tags)
    provenance = {
        "cited": {au: round(float(p), 4) for au, p in cited.items()},
        "pattern": pattern,
        "missing_prior": policy,
        "threshold": options.threshold,
        "top_k": options.top_k,
        "box_mode": options.box_mode,
    }
    return TemplateTrace(trace, text, provenance)


def check_round_trip(trace: Trace, *, think_tags: bool) -> str:
    """Render ``trace``, parse it back and require the same content; returns the text.

    Raises :class:`TraceRoundTripError` listing the parser's errors or the first differing field.
    """
    text = render_trace(trace, think_tags=think_tags)
    parsed = parse_trace(text, require_think=think_tags)
    expected_steps = [TraceStep(s.region, s.aus, s.observation.strip(), s.box) for s in trace.steps]
    problems = list(parsed.errors)
    if parsed.global_analysis != trace.global_analysis.strip():
        problems.append(f"global analysis {parsed.global_analysis!r} != {trace.global_analysis.strip()!r}")
    if parsed.steps != expected_steps:
        problems.append(f"steps {parsed.steps} != {expected_steps}")
    if parsed.conclusion_aus != tuple(trace.conclusion_aus):
        problems.append(f"conclusion AUs {parsed.conclusion_aus} != {trace.conclusion_aus}")
    if parsed.answer != trace.label or parsed.conclusion_label != trace.label:
        problems.append(f"answer {parsed.answer!r} / conclusion {parsed.conclusion_label!r} != label {trace.label!r}")
    if problems:
        raise TraceRoundTripError(f"trace does not round-trip ({'; '.join(problems)}):\n{text}")
    return text


# ------------------------------------------------------------------------------------------- helpers
def _usable_box(box) -> bool:
    return box is not None and len(box) == 4 and all(math.isfinite(v) for v in box) and box[2] > box[0] and box[3] > box[1]


def groundable_top_k(evidence: AUEvidence, top_k: int, threshold: float) -> dict[str, float]:
    """The ``top_k`` strongest AUs with probability ≥ ``threshold`` among those the vocabulary places in
    a region and that have a usable box (finite, positive area), strongest first."""
    groundable = {au: p for au, p in evidence.active(threshold).items() if au in AU_REGION and _usable_box(evidence.au_box.get(au))}
    return dict(list(groundable.items())[:top_k])


def _weak_prior_aus(evidence: AUEvidence, prior: tuple[str, ...], limit: int) -> dict[str, float]:
    """The label's prototypical AUs with probability > 0 and a usable box, strongest first, at most ``limit``."""
    candidates = [
        (au, evidence.au_prob[au]) for au in prior if evidence.au_prob.get(au, 0.0) > 0.0 and _usable_box(evidence.au_box.get(au))
    ]
    candidates.sort(key=lambda kv: (-kv[1], kv[0]))
    return dict(candidates[:limit])


def _model_box(box: Box, map_box: BoxMapper) -> Box:
    return integer_box(map_box(tuple(float(v) for v in box)))


def _au_steps(
    evidence: AUEvidence,
    cited: dict[str, float],
    rng: random.Random,
    map_box: BoxMapper,
    options: TemplateOptions,
) -> list[tuple[int, TraceStep]]:
    """``(region index, step)`` for the cited AUs: one per region (``region`` mode) or per AU."""
    if options.box_mode == "region":
        groups: dict[str, list[str]] = {}
        for au in cited:  # strongest first within each region
            groups.setdefault(AU_REGION[au], []).append(au)
        units = list(groups.items())
    else:
        units = [(AU_REGION[au], [au]) for au in cited]
    steps = []
    for region, aus in units:
        observation = ", ".join(rng.choice(AU_PHRASES[au][intensity_level(cited[au], options.threshold)]) for au in aus)
        box = _model_box(union_box([evidence.au_box[au] for au in aus]), map_box)
        steps.append((REGIONS.index(region), TraceStep(region, tuple(aus), observation, box)))
    return steps
