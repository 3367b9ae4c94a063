"""``predictions.jsonl``: one line per evaluated sample, written atomically.

Each line is a JSON object::

    {"id": "test/images/000003.png",   # record id (image path relative to the dataset root)
     "dataset": "synthetic/test",      # the report's dataset key
     "label": "surprise",              # true class
     "prediction": "fear" | null,      # canonical class answered (null: no parsable answer)
     "correct": false,                 # prediction == label (what accuracy averages)
     "valid": false,                   # the completion follows the trace grammar
     "errors": ["..."],                # the parser's format errors
     "completion": "..." | null,       # generated text (null for the vision-only baseline)
     "truncated": false,               # generation hit max_new_tokens before EOS
     "face_found": true,               # the AU detector found a face
     "faithfulness": {...} | null}     # per-sample counts and scores (FaithfulnessCounts.to_json())

A prediction outside the set's classes is never correct and lands in the report's no-answer column.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tagfer.core.trace import ParsedTrace, parse_trace
from tagfer.metrics import FaithfulnessCounts, to_json_ready

PREDICTIONS_FILE = "predictions.jsonl"


@dataclass
class Prediction:
    """What a model produced for one sample: a class, and for a reasoning model its parsed completion."""

    answer: str | None  # canonical class name, or None (no parsable answer)
    completion: str | None = None
    trace: ParsedTrace | None = None
    truncated: bool = False

    @classmethod
    def from_completion(cls, text: str, *, truncated: bool = False) -> Prediction:
        """Parse a generated completion (:func:`tagfer.core.trace.parse_trace`; never raises)."""
        trace = parse_trace(text)
        return cls(answer=trace.answer, completion=text, trace=trace, truncated=truncated)

    @property
    def valid(self) -> bool:
        """The completion follows the trace grammar (always True without a completion)."""
        return self.trace is None or self.trace.valid

    @property
    def errors(self) -> list[str]:
        return [] if self.trace is None else list(self.trace.errors)


def prediction_line(
    *, sample_id: str, dataset: str, label: str, prediction: Prediction, face_found: bool, counts: FaithfulnessCounts | None
) -> dict:
    """The ``predictions.jsonl`` object of one sample (module docstring)."""
    return to_json_ready(
        {
            "id": sample_id,
            "dataset": dataset,
            "label": label,
            "prediction": prediction.answer,
            "correct": prediction.answer == label,
            "valid": prediction.valid,
            "errors": prediction.errors,
            "completion": prediction.completion,
            "truncated": bool(prediction.truncated),
            "face_found": bool(face_found),
            "faithfulness": None if counts is None else counts.to_json(),
        }
    )


class PredictionWriter:
    """Streams lines into ``<path>.tmp`` and moves the file into place on :meth:`close` (atomic).

    Use as a context manager: an exception leaves any earlier ``predictions.jsonl`` untouched and
    removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._handle = open(self._tmp, "w", encoding="utf-8")

    def write(self, line: dict) -> None:
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> Path:
        self._handle.close()
        os.replace(self._tmp, self.path)
        return self.path

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._handle.close()
            self._tmp.unlink(missing_ok=True)


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """The lines of a ``predictions.jsonl`` file (a bad line raises ``ValueError`` naming file and line)."""
    path = Path(path)
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number}: not JSON ({err})") from None
    return lines
