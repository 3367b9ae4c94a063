"""Shared parts of the importers of external AU detectors' output files (OpenFace, py-feat).

* :func:`read_csv_rows` reads a CSV whose column names may carry spaces (older OpenFace builds write
  ``"face, confidence, ..."`` with ", " separators) into ``{stripped name: stripped text}`` rows.
* :func:`row_landmarks` takes ``x_0..x_67, y_0..y_67`` out of a row.
* :class:`NameMatcher` finds the output that belongs to a dataset record by file name: the record id
  is the image path relative to the dataset root; an output matches when its path (extension dropped)
  ends with the id's path (extension dropped), or — when that finds nothing — when the stems agree and
  only one output has that stem.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(column names, rows)`` of a CSV file with names and values stripped of spaces.

    Raises ``ValueError`` naming the file and line when a row has more fields than the header.
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            return [], []
        rows = []
        for line_number, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) > len(header):
                raise ValueError(f"{path}:{line_number}: {len(fields)} fields but the header has {len(header)} columns")
            rows.append({name: value.strip() for name, value in zip(header, fields)})
    return header, rows


def to_float(text: str | None) -> float:
    """A CSV field as float; empty, missing or unparsable text gives NaN (OpenFace writes ``-nan``)."""
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def landmark_columns() -> list[str]:
    """``x_0..x_67, y_0..y_67`` (OpenFace 2.x and py-feat's 2D landmark columns)."""
    return [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]


def row_landmarks(row: dict[str, str]) -> np.ndarray | None:
    """``[68, 2]`` landmarks from ``x_i``/``y_i`` columns, or None when any of them is missing or NaN."""
    values = np.array([to_float(row.get(name)) for name in landmark_columns()], dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    return np.stack([values[:68], values[68:]], axis=1)


def _parts_without_suffix(text: str) -> tuple[str, ...]:
    """Path components of ``text`` (``/`` or ``\\`` separated) with the last extension dropped, lower case."""
    path = PureWindowsPath(text) if "\\" in text else PurePosixPath(text)
    parts = [p for p in path.parts if p not in ("/", "\\")]
    if not parts:
        return ()
    parts[-1] = PurePosixPath(parts[-1]).stem
    return tuple(p.lower() for p in parts)


class NameMatcher:
    """Maps dataset record ids to external output keys (paths) by file name (see the module docstring)."""

    def __init__(self, keys):
        self._by_stem: dict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
        for key in keys:
            parts = _parts_without_suffix(str(key))
            if parts:
                self._by_stem[parts[-1]].append((key, parts))

    def match(self, record_id: str):
        """The key whose path ends with the record's path, else the only key with its stem, else None.

        Raises ``ValueError`` when several outputs fit equally well (name the ambiguity, never guess).
        """
        wanted = _parts_without_suffix(record_id)
        if not wanted:
            return None
        candidates = self._by_stem.get(wanted[-1], [])
        if len(candidates) <= 1:
            return candidates[0][0] if candidates else None
        best = [key for key, parts in candidates if parts[-len(wanted) :] == wanted]
        if len(best) == 1:
            return best[0]
        names = ", ".join(str(key) for key, _ in candidates[:4])
        raise ValueError(f"record {record_id!r} matches several external outputs ({names}); keep one output per image")
