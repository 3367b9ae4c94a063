"""The TAG trace grammar: one renderer, one parser.

A trace (TAG's pipeline figure, with the AUs of each step named)::

    Global analysis: The brows are drawn together and the mouth corners pulled down.
    Verification loop:
    Inspect inner brow (AU1, AU4) → inner corners raised and knitted → <bbox>[235,119,345,188]</bbox>
    Inspect lip corners (AU15) → corners pulled downward → <bbox>[181,410,334,511]</bbox>
    Final conclusion: Combined AU1 + AU4 + AU15 indicate a dominant emotion of sadness.
    <answer> sadness </answer>

optionally with the reasoning wrapped: ``<think>Global analysis: … sadness.</think>\\n<answer> … </answer>``.

* A step inspects one region of :data:`tagfer.core.vocabulary.REGIONS` and names the AUs it grounds
  (``none`` when the region shows no active AU, e.g. for neutral faces).
* Boxes are ``[x1,y1,x2,y2]`` integers in the model family's coordinate convention
  (:mod:`tagfer.models.boxes`); the parser accepts decimals but never negative numbers.
* The conclusion names the combined AUs (or ``No active AUs``) and the label; the label must agree
  with the answer.

The renderer writes that canonical form; the parser also accepts what a careful reader would (the
wording of TAG's own figure, ``Inspect mouth region (AU14, AU17) → slight downturn and skin tension →
<bbox>[181,410,334,511]</bbox>``): any case of ``Inspect`` / ``Final conclusion:``; region names in any
case, with ``… region`` / ``… area`` and common synonyms (:data:`REGION_SYNONYMS`: ``cheek``, ``mouth
corners``, ``lips``, …) mapped to :data:`tagfer.core.vocabulary.REGIONS`; an AU code followed by its FACS
name (``AU6 Cheek Raiser``, ``AU12: lip corner puller``); a conclusion in any phrasing that names its AUs
(in any order) and exactly one class (``The combination of AU6 and AU12 indicates happiness.``). It keeps
rejecting what breaks grounding: a step without an AU list, an unknown AU or a FACS name that is not
that AU's, a box that is not four numbers, an answer outside the classes, a conclusion naming no class,
several classes or another class than the answer.

:func:`parse_trace` never raises: any string gives a :class:`ParsedTrace` whose ``errors`` list says
what is wrong. Rewards, metrics, SFT data checks and ``predict`` all use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from tagfer.core.classes import CLASS_NAMES, LABEL_ALIASES, normalize_label
from tagfer.core.vocabulary import AU_NAMES, REGIONS

Box = tuple[float, float, float, float]

ARROW = "→"
#: Texts longer than this are not parsed (an error says so): bounds the parser's cost on hostile input.
MAX_TRACE_CHARS = 20_000
#: Box coordinates above this are rejected (no image is that large, in any convention).
MAX_COORDINATE = 100_000.0

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_STEP = re.compile(
    r"^Inspect (?P<region>[^()\n]{1,60}?) \((?P<aus>[^()\n]{0,200})\) *(?:→|->) *(?P<obs>[^\n]*?) *(?:→|->) *"
    r"<bbox>(?P<box>[^<\n]{0,200})</bbox>$",
    re.IGNORECASE,
)
_BOX = re.compile(r"^\s*\[\s*([^\[\]]*)\]\s*$")
_NUMBER = re.compile(r"^[+-]?(?:\d{1,12}(?:\.\d{0,12})?|\.\d{1,12})$", re.ASCII)  # ASCII digits only
#: An AU list entry: the code, optionally followed by its FACS name (``AU6 Cheek Raiser``, ``AU12: lip corner puller``).
_AU_ENTRY = re.compile(r"^AU\s?(?P<number>\d{1,3})(?:\s*[:\-–]?\s*\(?(?P<name>[A-Za-z][A-Za-z ]{0,40}?)\)?)?$", re.ASCII | re.IGNORECASE)
#: AU codes inside free text (the conclusion).
_AU_MENTION = re.compile(r"\bAU\s?(\d{1,3})\b", re.ASCII | re.IGNORECASE)
_CONCLUSION_PREFIX = "final conclusion:"
_NO_ACTIVE = re.compile(r"\bno (?:active )?(?:AUs?|action units?)\b", re.IGNORECASE)
_WORDS = re.compile(r"[a-z]+")

#: Other names of the regions of :data:`tagfer.core.vocabulary.REGIONS` (lower case, after dropping a
#: leading "the" and a trailing "region" / "area").
REGION_SYNONYMS: dict[str, str] = {
    **{name: name for name in REGIONS},
    "eye": "eye region",
    "eyes": "eye region",
    "eyelids": "eye region",
    "eyelid": "eye region",
    "upper eyelids": "eye region",
    "brow": "inner brow",
    "brows": "inner brow",
    "eyebrows": "inner brow",
    "inner brows": "inner brow",
    "inner eyebrows": "inner brow",
    "glabella": "inner brow",
    "outer brows": "outer brow",
    "outer eyebrows": "outer brow",
    "cheek": "cheeks",
    "nasal": "nose",
    "nose bridge": "nose",
    "upper lips": "upper lip",
    "lip corner": "lip corners",
    "mouth corners": "lip corners",
    "mouth corner": "lip corners",
    "corners of the mouth": "lip corners",
    "lips": "mouth",
    "lip": "mouth",
    "lower lip": "mouth",
    "jaw": "mouth",
    "chin and jaw": "chin",
}


def canonical_region(text: str) -> str | None:
    """A region of :data:`REGIONS` for a name as a trace may write it ("Mouth region", "Cheek"), or None."""
    name = " ".join(text.lower().split())
    if name in REGION_SYNONYMS:
        return REGION_SYNONYMS[name]
    name = name.removeprefix("the ")
    for suffix in (" region", " area"):
        name = name.removesuffix(suffix)
    return REGION_SYNONYMS.get(name)


@dataclass(frozen=True)
class TraceStep:
    """One verification step: a region, the AUs it grounds, what is seen, and the box (or None)."""

    region: str
    aus: tuple[str, ...]
    observation: str
    box: Box | None


@dataclass(frozen=True)
class Trace:
    """The content of a trace, as the template and teacher builders produce it."""

    global_analysis: str
    steps: tuple[TraceStep, ...]
    conclusion_aus: tuple[str, ...]
    label: str


@dataclass
class ParsedTrace:
    """What :func:`parse_trace` read. ``answer`` is a canonical class name or None."""

    answer: str | None = None
    raw_answer: str | None = None
    global_analysis: str | None = None
    steps: list[TraceStep] = field(default_factory=list)
    conclusion_aus: tuple[str, ...] = ()
    conclusion_label: str | None = None
    has_think: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """True when the whole text follows the grammar (no format errors)."""
        return not self.errors

    def cited_boxes(self) -> list[tuple[str, Box]]:
        """``(AU, box)`` for every AU named by a step that has a valid box, in order."""
        return [(au, step.box) for step in self.steps if step.box is not None for au in step.aus]

    def cited_aus(self) -> list[str]:
        """Every AU named in the steps or the conclusion, first mention first, no repeats."""
        seen: dict[str, None] = {}
        for au in [a for step in self.steps for a in step.aus] + list(self.conclusion_aus):
            seen.setdefault(au, None)
        return list(seen)


def format_box(box: Box) -> str:
    """``<bbox>[x1,y1,x2,y2]</bbox>`` with integer coordinates (rounded)."""
    return "<bbox>[" + ",".join(str(int(round(v))) for v in box) + "]</bbox>"


def render_trace(trace: Trace, *, think_tags: bool = False) -> str:
    """The trace text for ``trace`` (see the module docstring); ``parse_trace`` reads it back exactly."""
    lines = [f"Global analysis: {trace.global_analysis.strip()}", "Verification loop:"]
    for step in trace.steps:
        aus = ", ".join(step.aus) if step.aus else "none"
        box = format_box(step.box) if step.box is not None else "<bbox>[]</bbox>"
        lines.append(f"Inspect {step.region} ({aus}) {ARROW} {step.observation.strip()} {ARROW} {box}")
    if trace.conclusion_aus:
        lines.append(f"Final conclusion: Combined {' + '.join(trace.conclusion_aus)} indicate a dominant emotion of {trace.label}.")
    else:
        lines.append(f"Final conclusion: No active AUs indicate a dominant emotion of {trace.label}.")
    reasoning = "\n".join(lines)
    if think_tags:
        reasoning = f"<think>{reasoning}</think>"
    return f"{reasoning}\n<answer> {trace.label} </answer>"


def parse_trace(text: object, *, require_think: bool | None = None) -> ParsedTrace:
    """Parse a model completion. Never raises.

    Args:
        text: anything (non-strings give a ParsedTrace with an error).
        require_think: True → the reasoning must be wrapped in ``<think>…</think>``; False → it must
            not be; None → either.
    """
    parsed = ParsedTrace()
    try:
        _parse_into(parsed, text, require_think)
    except Exception as err:  # noqa: BLE001 — the contract is "never raises"; report instead
        parsed.errors.append(f"parser failure: {type(err).__name__}")
    return parsed


def _parse_into(parsed: ParsedTrace, text: object, require_think: bool | None) -> None:
    errors = parsed.errors
    if not isinstance(text, str):
        errors.append(f"completion is {type(text).__name__}, not text")
        return
    if len(text) > MAX_TRACE_CHARS:
        errors.append(f"completion longer than {MAX_TRACE_CHARS} characters")
        return
    body = text.strip()
    answers = answer_spans(body)
    if len(answers) != 1:
        errors.append("no <answer>…</answer>" if not answers else f"{len(answers)} <answer> tags, expected 1")
    if answers:
        parsed.raw_answer = answers[-1].strip()
        parsed.answer = normalize_label(parsed.raw_answer) if len(answers) == 1 else None
        if parsed.answer is None and len(answers) == 1:
            errors.append(f"answer {parsed.raw_answer[:40]!r} is not exactly one of {list(CLASS_NAMES)}")
    answer_at = body.rfind(ANSWER_OPEN)
    reasoning = body[:answer_at] if answer_at >= 0 else body
    tail = body[body.rfind(ANSWER_CLOSE) + len(ANSWER_CLOSE) :] if answers else ""
    if tail.strip():
        errors.append("text after </answer>")

    reasoning = reasoning.strip()
    if reasoning.startswith("<think>"):
        parsed.has_think = True
        if not reasoning.endswith("</think>"):
            errors.append("<think> is not closed right before <answer>")
        reasoning = reasoning[len("<think>") :].removesuffix("</think>").strip()
    elif "</think>" in reasoning or "<think>" in reasoning:
        errors.append("misplaced <think> tag")
        reasoning = reasoning.replace("<think>", "").replace("</think>", "").strip()
    if require_think is True and not parsed.has_think:
        errors.append("reasoning is not wrapped in <think>…</think>")
    if require_think is False and parsed.has_think:
        errors.append("unexpected <think> tags")

    _parse_reasoning(parsed, reasoning.split("\n"))
    if parsed.answer is not None and parsed.conclusion_label is not None and parsed.conclusion_label != parsed.answer:
        errors.append(f"conclusion says {parsed.conclusion_label}, answer says {parsed.answer}")


def answer_spans(text: str) -> list[str]:
    """The contents of the ``<answer>…</answer>`` pairs of ``text``, left to right, non-overlapping.

    The same pairs as ``re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)`` in linear time: the
    regular expression rescans the rest of the text from every unclosed ``<answer>``, so a degenerate
    completion repeating ``<answer>`` costs quadratic time — 0.6 s per 20,000 characters on a CPU core, paid
    once per reward callback (``benchmarks/parse_trace.py``).
    """
    spans, position = [], 0
    while (start := text.find(ANSWER_OPEN, position)) >= 0:
        end = text.find(ANSWER_CLOSE, start + len(ANSWER_OPEN))
        if end < 0:
            break
        spans.append(text[start + len(ANSWER_OPEN) : end])
        position = end + len(ANSWER_CLOSE)
    return spans


def _parse_reasoning(parsed: ParsedTrace, lines: list[str]) -> None:
    errors = parsed.errors
    lines = [line.strip() for line in lines if line.strip()]
    if not lines or not lines[0].startswith("Global analysis:"):
        errors.append("missing 'Global analysis:' line first")
    else:
        parsed.global_analysis = lines.pop(0)[len("Global analysis:") :].strip()
        if not parsed.global_analysis:
            errors.append("empty global analysis")
    if not lines or lines[0] != "Verification loop:":
        errors.append("missing 'Verification loop:' line")
    else:
        lines.pop(0)
    conclusion = None
    for number, line in enumerate(lines, start=1):
        if line[:8].lower() == "inspect ":
            if conclusion is not None:
                errors.append("a step after the final conclusion")
            parsed.steps.append(_parse_step(line, number, errors))
        elif line[: len(_CONCLUSION_PREFIX)].lower() == _CONCLUSION_PREFIX:
            if conclusion is not None:
                errors.append("several final conclusions")
            conclusion = line
        else:
            errors.append(f"line {number} of the loop is neither a step nor the conclusion: {line[:40]!r}")
    if not parsed.steps:
        errors.append("no verification step")
    if conclusion is None:
        errors.append("missing 'Final conclusion:' line")
        return
    _parse_conclusion(parsed, conclusion[len(_CONCLUSION_PREFIX) :].strip())


def _parse_conclusion(parsed: ParsedTrace, text: str) -> None:
    """The AUs the conclusion names (any order and phrasing, ``No active AUs`` for none) and its one class."""
    errors = parsed.errors
    if len(text) > 400:
        errors.append("final conclusion longer than 400 characters")
        return
    aus: list[str] = []
    for match in _AU_MENTION.finditer(text):
        au = f"AU{int(match.group(1))}"
        if au not in AU_NAMES:
            errors.append(f"conclusion: {match.group(0)!r} is not a known AU")
        elif au not in aus:
            aus.append(au)
    if not aus and not _NO_ACTIVE.search(text):
        errors.append("final conclusion names no AU (write the combined AUs, or 'No active AUs')")
    parsed.conclusion_aus = tuple(aus)
    labels = list(dict.fromkeys(LABEL_ALIASES[w] for w in _WORDS.findall(text.lower()) if w in LABEL_ALIASES))
    if len(labels) == 1:
        parsed.conclusion_label = labels[0]
    elif not labels:
        errors.append(f"final conclusion names no class of {list(CLASS_NAMES)}")
    else:
        errors.append(f"final conclusion names several classes {labels}")


def _parse_step(line: str, number: int, errors: list[str]) -> TraceStep:
    match = _STEP.match(line)
    if match is None:
        errors.append(f"step {number} does not read 'Inspect <region> (<AUs>) → <observation> → <bbox>[x1,y1,x2,y2]</bbox>'")
        return TraceStep(region="", aus=(), observation=line[:200], box=None)
    region = canonical_region(match.group("region"))
    if region is None:
        errors.append(f"step {number}: unknown region {match.group('region').strip()[:40]!r}")
        region = match.group("region").strip()
    aus_text = match.group("aus").strip()
    aus = () if aus_text.lower() == "none" else _parse_au_list(aus_text, f"step {number}", errors)
    observation = match.group("obs").strip()
    if not observation:
        errors.append(f"step {number}: empty observation")
    box = _parse_box(match.group("box"), f"step {number}", errors)
    return TraceStep(region=region, aus=aus, observation=observation, box=box)


def _parse_au_list(text: str, where: str, errors: list[str]) -> tuple[str, ...]:
    """Comma-separated AU codes, each optionally followed by its FACS name (which must be that AU's)."""
    aus: list[str] = []
    for part in text.split(","):
        match = _AU_ENTRY.match(part.strip())
        au = f"AU{int(match.group('number'))}" if match else None
        if au is None or au not in AU_NAMES:
            errors.append(f"{where}: {part.strip()[:20]!r} is not a known AU")
        elif match.group("name") and " ".join(match.group("name").lower().split()) != AU_NAMES[au]:
            errors.append(f"{where}: {part.strip()[:40]!r}: {au} is the {AU_NAMES[au]}")
        elif au in aus:
            errors.append(f"{where}: {au} named twice")
        else:
            aus.append(au)
    return tuple(aus)


def _parse_box(text: str, where: str, errors: list[str]) -> Box | None:
    match = _BOX.match(text)
    parts = [p.strip() for p in match.group(1).split(",")] if match else []
    if len(parts) != 4 or not all(_NUMBER.match(p) for p in parts):
        errors.append(f"{where}: box is not [x1,y1,x2,y2] with 4 numbers")
        return None
    values = tuple(float(p) for p in parts)
    if not all(math.isfinite(v) and 0.0 <= v <= MAX_COORDINATE for v in values):
        errors.append(f"{where}: box coordinates must lie in [0, {MAX_COORDINATE:g}]")
        return None
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        errors.append(f"{where}: box has x2 <= x1 or y2 <= y1")
        return None
    return values
