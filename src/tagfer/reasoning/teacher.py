"""Teacher traces: TAG's data-construction loop with any local VLM as the teacher.

For each sample the teacher sees the image and :func:`tagfer.core.prompt.teacher_prompt` (the task,
the candidate labels and the detector's Top-K AUs with boxes in the teacher's convention) and writes a
trace. Then (TAG, "data" figure):

* **format check** — ``parse_trace(text).valid``; a failure is regenerated with the same prompt. The
  sample is given up after ``max_format_retries`` regenerations (``1 + max_format_retries`` format
  failures in all).
* **label check** — a well-formed trace whose answer is not the label is a wrong prediction: that answer
  is removed from the candidate labels ("label elimination") and the teacher retries with the shorter
  list. The sample is given up after ``max_label_retries`` retries (``1 + max_label_retries`` wrong
  predictions). The true label is never eliminated.
* only **verified** traces (valid format and the right answer) are kept, re-rendered canonically with
  :func:`tagfer.core.trace.render_trace` (same content, normalised spacing and integer boxes).

The loop is batched over samples: each call of ``generate`` gets up to ``batch_size`` prompts, retries of
earlier samples first, then new samples, so memory stays bounded and results stream out as soon as a
sample is settled (not in input order). ``generate(images, prompts) -> list[str]`` is a parameter, so the
loop runs with any model, or with a scripted fake in tests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.prompt import teacher_prompt
from tagfer.core.trace import Box, ParsedTrace, Trace, parse_trace, render_trace
from tagfer.models.engine import GenerateFn

KEPT = "kept"
FORMAT_FAILED = "format_failed"
LABEL_FAILED = "label_failed"


@dataclass
class TeacherSample:
    """What the teacher is asked about one image. ``au_boxes`` are in the teacher's convention."""

    id: str
    image: Any
    label: str
    top_aus: dict[str, float]
    au_boxes: dict[str, Box]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TeacherOptions:
    """The loop's settings (``traces.teacher.*`` and the teacher's box convention)."""

    teacher: str = ""
    classes: tuple[str, ...] = CLASS_NAMES
    convention: str = "pixels"
    think_tags: bool = False
    max_format_retries: int = 3
    max_label_retries: int = 3
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.max_format_retries < 0 or self.max_label_retries < 0:
            raise ValueError("max_format_retries and max_label_retries must be ≥ 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        unknown = [c for c in self.classes if c not in CLASS_NAMES]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; expected names from {list(CLASS_NAMES)}")


@dataclass
class TeacherOutcome:
    """How one sample ended: ``status`` is ``kept``, ``format_failed`` or ``label_failed``."""

    sample: TeacherSample
    status: str = ""
    trace: str | None = None
    attempts: int = 0
    format_failures: int = 0
    wrong_predictions: int = 0
    eliminated: list[str] = field(default_factory=list)
    last_errors: list[str] = field(default_factory=list)

    def provenance(self, teacher: str) -> dict:
        """The JSONL ``provenance`` object of this sample."""
        return {
            "teacher": teacher,
            "status": self.status,
            "attempts": self.attempts,
            "format_failures": self.format_failures,
            "wrong_predictions": self.wrong_predictions,
            "eliminated_labels": list(self.eliminated),
            "top_aus": {au: round(float(p), 4) for au, p in self.sample.top_aus.items()},
        }


def canonical_text(parsed: ParsedTrace, label: str) -> str:
    """The canonical rendering of a valid parsed trace (keeps its ``<think>`` choice)."""
    trace = Trace(parsed.global_analysis or "", tuple(parsed.steps), parsed.conclusion_aus, label)
    return render_trace(trace, think_tags=parsed.has_think)


def run_teacher(samples: Iterable[TeacherSample], generate: GenerateFn, options: TeacherOptions) -> Iterator[TeacherOutcome]:
    """Run the verify / regenerate / eliminate loop; yields one :class:`TeacherOutcome` per sample.

    Raises ``ValueError`` when a sample's label is not among ``options.classes`` or when ``generate``
    returns a different number of completions than prompts.
    """
    pending: deque[tuple[TeacherOutcome, list[str]]] = deque()
    source = iter(samples)
    exhausted = False
    while True:
        batch = [pending.popleft() for _ in range(min(options.batch_size, len(pending)))]
        while len(batch) < options.batch_size and not exhausted:
            sample = next(source, None)
            if sample is None:
                exhausted = True
            else:
                if sample.label not in options.classes:
                    raise ValueError(f"sample {sample.id!r}: label {sample.label!r} is not one of {list(options.classes)}")
                batch.append((TeacherOutcome(sample), list(options.classes)))
        if not batch:
            return
        prompts = [
            teacher_prompt(o.sample.top_aus, o.sample.au_boxes, candidates, options.convention, think_tags=options.think_tags)
            for o, candidates in batch
        ]
        completions = generate([o.sample.image for o, _ in batch], prompts)
        if len(completions) != len(batch):
            raise ValueError(f"generate returned {len(completions)} completions for {len(batch)} prompts")
        for (outcome, candidates), text in zip(batch, completions):
            if _settle(outcome, candidates, text, options):
                yield outcome
            else:
                pending.append((outcome, candidates))


def _settle(outcome: TeacherOutcome, candidates: list[str], text: str, options: TeacherOptions) -> bool:
    """Record one completion; True when the sample is finished (kept or given up)."""
    outcome.attempts += 1
    parsed = parse_trace(text, require_think=options.think_tags)
    if not parsed.valid:
        outcome.format_failures += 1
        outcome.last_errors = parsed.errors[:5]
        if outcome.format_failures > options.max_format_retries:
            outcome.status = FORMAT_FAILED
            return True
        return False
    label = outcome.sample.label
    if parsed.answer != label:
        outcome.wrong_predictions += 1
        outcome.last_errors = [f"predicted {parsed.answer}, label {label}"]
        if parsed.answer in candidates:
            candidates.remove(parsed.answer)
            outcome.eliminated.append(parsed.answer)
        if outcome.wrong_predictions > options.max_label_retries:
            outcome.status = LABEL_FAILED
            return True
        return False
    outcome.status = KEPT
    outcome.trace = canonical_text(parsed, label)
    outcome.last_errors = []
    return True
