"""FER+ vote → label rules (Barsoum et al., 2016, "Training deep networks for facial expression
recognition with crowd-sourced label distribution"), as pure functions on one row of 10 votes.

Vote columns (:data:`VOTE_COLUMNS`): neutral, happiness, surprise, sadness, anger, disgust, fear,
contempt, unknown, NF (not a face). Every mode first zeroes each count of 1 vote (outlier removal),
giving ``v`` with total ``T = Σ v``. Then, with ``kept`` the votes a mode retains:

* ``majority`` — the top column ``i* = argmax v`` if ``v[i*] > 0.5·T``, else unknown.
* ``probability`` / ``crossentropy`` — take the top vote levels in turn (all columns tied at a level
  together) while ``Σ kept < 0.75·T`` and fewer than 3 columns are kept. At a level where unknown/NF
  is among the tied columns, keep the tied emotions and stop; unknown/NF itself is kept only when
  nothing else is. Unknown when ``Σ kept ≤ 0.5·T`` or more than 3 columns were kept (a tie can
  overshoot).
* ``multi_target`` — every column with ``v[i] ≥ 0.3·T``; unknown when ``Σ kept ≤ 0.5·T``.

A row is dropped (``None``) when the result is unknown, or when its largest kept column is unknown or
NF. Otherwise the label is the largest kept emotion column (first on ties) and the soft target over
the 8 emotions is ``kept[:8] / Σ kept[:8]`` for probability / crossentropy, and the uniform
distribution over the kept emotions for multi_target (FER+ treats every retained emotion as equally
correct). Majority has no soft target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES

VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
EMOTION_COLUMNS = 8  # the first 8 vote columns are emotions
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
SOFT_MODES = ("probability", "crossentropy", "multi_target")
#: Canonical class index of each emotion vote column.
COLUMN_TO_CLASS: tuple[int, ...] = tuple(CLASS_INDEX[name] for name in VOTE_COLUMNS[:EMOTION_COLUMNS])


def kept_votes(votes: Sequence[float], mode: str) -> np.ndarray | None:
    """``[10]`` votes retained by ``mode`` (see the module docstring), or ``None`` for unknown.

    Args:
        votes: 10 vote counts in :data:`VOTE_COLUMNS` order.
        mode: one of :data:`LABEL_MODES`.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode {mode!r}; expected one of {list(LABEL_MODES)}")
    v = np.asarray(votes, dtype=np.float64)
    if v.shape != (len(VOTE_COLUMNS),):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} votes, got shape {v.shape}")
    v = np.where(v <= 1.0, 0.0, v)
    total = v.sum()
    kept = np.zeros_like(v)
    if mode == "majority":
        top = int(np.argmax(v))
        if v[top] <= 0.5 * total:
            return None
        kept[top] = v[top]
        return kept
    if mode == "multi_target":
        kept = np.where(v >= 0.3 * total, v, 0.0)
        return None if kept.sum() <= 0.5 * total else kept
    remaining = v.copy()
    count = 0
    while kept.sum() < 0.75 * total and count < 3:
        level = remaining.max()
        tied = np.flatnonzero(remaining == level)  # ascending: emotion columns first
        emotions = tied[tied < EMOTION_COLUMNS]
        kept[emotions] = level
        remaining[emotions] = 0.0
        count += emotions.size
        if emotions.size < tied.size:  # unknown or NF at this level: stop
            if count == 0:
                kept[tied[0]] = level
                count = 1
            break
    if kept.sum() <= 0.5 * total or count > 3:
        return None
    return kept


def label_from_votes(votes: Sequence[float], mode: str) -> tuple[int, np.ndarray | None] | None:
    """``(canonical label index, soft target [8] float32 | None)`` for one vote row, or ``None`` (dropped).

    The soft target is in :data:`tagfer.core.classes.CLASS_NAMES` order; it is ``None`` in majority mode.
    """
    kept = kept_votes(votes, mode)
    if kept is None or int(np.argmax(kept)) >= EMOTION_COLUMNS:
        return None
    emotions = kept[:EMOTION_COLUMNS]
    label = COLUMN_TO_CLASS[int(np.argmax(emotions))]
    if mode not in SOFT_MODES:
        return label, None
    weights = (emotions > 0).astype(np.float64) if mode == "multi_target" else emotions
    soft = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    soft[list(COLUMN_TO_CLASS)] = weights / weights.sum()
    return label, soft
