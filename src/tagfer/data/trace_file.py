"""The trace file: JSONL, one verified trace per line, appended durably and resumable.

One line per kept sample::

    {"id": "train/00017.png", "dataset": "synthetic", "split": "train", "label": "happiness",
     "trace": "Global analysis: …\\n<answer> happiness </answer>", "source": "template",
     "convention": "norm1000", "input_size": [112, 112], "orig_size": [112, 112], "think_tags": false,
     "provenance": {…}}

``id`` is the record id (image path relative to the dataset root), ``label`` a canonical class name,
``trace`` text that :func:`tagfer.core.trace.parse_trace` reads with no error and whose answer is
``label``; its boxes are in ``convention`` for a model input of ``input_size`` = (width, height) pixels,
made from an image of ``orig_size``: the image as served, i.e. the face crop when ``crop_box``
(``[x1, y1, x2, y2]`` integer pixels of the original image, :mod:`tagfer.data.face_crop`) is given,
else the original image (``crop_box`` null or absent: files written before the face crop). ``provenance`` says how the trace was made (template:
cited AUs, evidence pattern, policy; teacher: teacher, attempts, format failures, eliminated labels).

Samples that got no trace are appended to a sidecar ``<file>.rejected.jsonl`` (``id``, ``dataset``,
``label``, ``source``, ``reason``, ``provenance``) so a resumed build does not redo them.

:class:`TraceWriter` appends each line with flush + fsync. On restart it reads what is there, drops a
truncated last line (a write killed midway) and reports the ids already written, which the builder
skips. While open it holds the file (:func:`tagfer.core.run_lock.hold`, lock file ``.<name>.lock`` beside it):
a second writer of the same file stops at once naming the holder. :func:`read_traces` is the strict reader the SFT data path uses.
"""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.run_lock import hold
from tagfer.core.trace import parse_trace

SOURCES = ("template", "teacher")
CONVENTIONS = ("norm1000", "pixels")
REQUIRED_FIELDS: dict[str, type] = {
    "id": str,
    "dataset": str,
    "split": str,
    "label": str,
    "trace": str,
    "source": str,
    "convention": str,
    "input_size": list,
    "orig_size": list,
    "think_tags": bool,
    "provenance": dict,
}
REJECTED_FIELDS: dict[str, type] = {
    "id": str,
    "dataset": str,
    "label": str,
    "source": str,
    "reason": str,
    "provenance": dict,
}


class TraceFileError(ValueError):
    """A trace file line is malformed; the message names the file and the line number."""


def rejected_path(path: str | os.PathLike) -> Path:
    """The sidecar of ``path`` listing the samples that got no trace."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".rejected.jsonl")


def _check_fields(data: dict, fields: dict, where: str) -> None:
    for key, kind in fields.items():
        if key not in data:
            raise TraceFileError(f"{where}: missing field {key!r}")
        if not isinstance(data[key], kind):
            raise TraceFileError(f"{where}: field {key!r} is {type(data[key]).__name__}, expected {kind.__name__}")


def _check_size(value: list, key: str, where: str) -> None:
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise TraceFileError(f"{where}: field {key!r} is {value!r}, expected [width, height] positive integers")


def trace_window(data: dict) -> tuple[int, int, int, int] | None:
    """The ``crop_box`` of a (validated) trace record as a tuple, None when the trace is for the whole image."""
    box = data.get("crop_box")
    return None if box is None else tuple(int(v) for v in box)


def _check_crop_box(value: object, where: str) -> None:
    if value is None:
        return
    if not (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and value[2] > value[0]
        and value[3] > value[1]
    ):
        raise TraceFileError(f"{where}: field 'crop_box' is {value!r}, expected null or [x1, y1, x2, y2] integers with x2 > x1, y2 > y1")


def validate_trace_record(data: object, where: str) -> dict:
    """Check one trace-file object against the schema (module docstring); returns it.

    Raises :class:`TraceFileError` prefixed with ``where`` (``file:line``).
    """
    if not isinstance(data, dict):
        raise TraceFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    _check_fields(data, REQUIRED_FIELDS, where)
    if data["label"] not in CLASS_NAMES:
        raise TraceFileError(f"{where}: label {data['label']!r} is not one of {list(CLASS_NAMES)}")
    if data["source"] not in SOURCES:
        raise TraceFileError(f"{where}: source {data['source']!r} is not one of {list(SOURCES)}")
    if data["convention"] not in CONVENTIONS:
        raise TraceFileError(f"{where}: convention {data['convention']!r} is not one of {list(CONVENTIONS)}")
    _check_size(data["input_size"], "input_size", where)
    _check_size(data["orig_size"], "orig_size", where)
    _check_crop_box(data.get("crop_box"), where)
    parsed = parse_trace(data["trace"], require_think=data["think_tags"])
    if not parsed.valid:
        raise TraceFileError(f"{where}: trace of {data['id']!r} does not parse: {'; '.join(parsed.errors[:3])}")
    if parsed.answer != data["label"]:
        raise TraceFileError(f"{where}: trace of {data['id']!r} answers {parsed.answer!r}, label is {data['label']!r}")
    return data


def validate_rejected_record(data: object, where: str) -> dict:
    """Check one ``.rejected.jsonl`` object; returns it. Raises :class:`TraceFileError`."""
    if not isinstance(data, dict):
        raise TraceFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    _check_fields(data, REJECTED_FIELDS, where)
    return data


def _read_lines(path: Path, validate) -> tuple[list[dict], int, bool]:
    """Parse and validate every complete line of ``path``.

    Returns ``(records, byte length of the complete lines, truncated?)``. Lines end with ``"\\n"``
    (``json.dumps`` escapes newlines inside strings), so bytes after the last newline are a write that
    was killed midway: reported as truncated, never parsed. Blank lines are skipped. Any other
    unreadable line, or a duplicate id, raises :class:`TraceFileError` naming the file and line.
    """
    raw = path.read_bytes()
    complete, newline, tail = raw.rpartition(b"\n")
    records: list[dict] = []
    seen: set[str] = set()
    for number, line in enumerate(complete.split(b"\n") if newline else [], start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TraceFileError(f"{where}: not a JSON line ({err})") from None
        record = validate(data, where)
        if record["id"] in seen:
            raise TraceFileError(f"{where}: id {record['id']!r} appears twice")
        seen.add(record["id"])
        records.append(record)
    return records, len(complete) + len(newline), bool(tail)


def read_traces(path: str | os.PathLike) -> dict[str, dict]:
    """All records of a trace file, by id, each validated (schema, trace parses, answer = label).

    Raises :class:`TraceFileError` naming the file and line on any problem, including a truncated last
    line (the build was interrupted: rerun ``tagfer traces build`` to resume it), and
    ``FileNotFoundError`` when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file {path} does not exist; build it with `tagfer traces build`")
    records, _, truncated = _read_lines(path, validate_trace_record)
    if truncated:
        lines = path.read_bytes().count(b"\n") + 1
        raise TraceFileError(f"{path}:{lines}: truncated last line (interrupted build); rerun `tagfer traces build` to resume")
    return {record["id"]: record for record in records}


class TraceWriter:
    """Durable, resumable JSONL appender.

    Opening reads the existing file (if any) with ``validate``, truncates an incomplete last line, and
    exposes ``records`` (what is already there) and ``ids``. :meth:`write` appends one validated object
    per line with flush + fsync. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, validate=validate_trace_record):
        self.path = Path(path)
        self.validate = validate
        self.records: list[dict] = []
        self.dropped_truncated = False
        with ExitStack() as opening:
            opening.enter_context(hold(self.path, "trace file", directory=False))  # before reading: no one else appends
            if self.path.exists():
                self.records, offset, self.dropped_truncated = _read_lines(self.path, validate)
                if self.dropped_truncated:
                    os.truncate(self.path, offset)
            self._file = opening.enter_context(open(self.path, "a", encoding="utf-8"))
            self._open = opening.pop_all()  # closed by close(): the file, then the hold
        self.ids: set[str] = {r["id"] for r in self.records}

    def write(self, record: dict) -> None:
        """Validate and append ``record``; raises :class:`TraceFileError` on a bad or duplicate record."""
        self.validate(record, f"{self.path}:<new record>")
        if record["id"] in self.ids:
            raise TraceFileError(f"{self.path}: id {record['id']!r} is already written")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.ids.add(record["id"])
        self.records.append(record)

    def close(self) -> None:
        self._open.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
