"""The project's canonical expression classes and label normalisation.

Every dataset reader maps its own label codes to these eight names (the AffectNet-8 order, so
AffectNet code ``i`` is ``CLASS_NAMES[i]``). Class indices everywhere in the project refer to this tuple.
"""

from __future__ import annotations

import re

CLASS_NAMES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

#: Common spellings that models and datasets use for the canonical names.
LABEL_ALIASES: dict[str, str] = {
    "happy": "happiness",
    "happiness": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "surprised": "surprise",
    "surprise": "surprise",
    "fearful": "fear",
    "afraid": "fear",
    "fear": "fear",
    "disgusted": "disgust",
    "disgust": "disgust",
    "angry": "anger",
    "anger": "anger",
    "contemptuous": "contempt",
    "contempt": "contempt",
    "neutral": "neutral",
    "calm": "neutral",
}

_NON_LETTERS = re.compile(r"[^a-z]+")


def normalize_label(text: str) -> str | None:
    """Map free text to one canonical class name, or ``None``.

    The text is lower-cased and stripped of everything but letters; it must then be exactly one
    known name or alias ("Happy." → "happiness"). Text naming several classes, or none, gives
    ``None``: substring matching would reward answers like "happy or sad".
    """
    if not isinstance(text, str):
        return None
    words = [w for w in _NON_LETTERS.split(text.lower()) if w]
    if len(words) != 1:
        return None
    return LABEL_ALIASES.get(words[0])


def class_subset(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate a list of class names (e.g. AffectNet-7) and return it in canonical order."""
    unknown = [n for n in names if n not in CLASS_INDEX]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; expected a subset of {list(CLASS_NAMES)}")
    return tuple(n for n in CLASS_NAMES if n in set(names))
