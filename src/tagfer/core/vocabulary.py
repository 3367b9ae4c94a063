"""AU vocabulary, facial regions and expression → AU priors (EMFACS).

AU names are written ``"AU<number>"`` without zero padding everywhere in the project (``"AU4"``,
``"AU12"``); :func:`canonical_au` maps detector spellings such as ``"AU04_r"`` or ``"au_4"`` to them.

Each AU belongs to one facial *region*. In ``box_mode="region"`` (TAG's figure: AU4 and AU9 share one
box) every AU of a region gets the region's box; in ``box_mode="au"`` each AU gets its own box from
its EAC-Net / JAA-Net landmark centres (see :mod:`tagfer.core.regions`).
"""

from __future__ import annotations

import re

#: FACS names of every AU the project knows (OpenFace 2.x, py-feat and EMFACS prototypes together).
AU_NAMES: dict[str, str] = {
    "AU1": "inner brow raiser",
    "AU2": "outer brow raiser",
    "AU4": "brow lowerer",
    "AU5": "upper lid raiser",
    "AU6": "cheek raiser",
    "AU7": "lid tightener",
    "AU9": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU16": "lower lip depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU24": "lip pressor",
    "AU25": "lips part",
    "AU26": "jaw drop",
}

#: The project's AU order (array columns of the AU cache use the detector's own list, stored with it).
AU_LIST: tuple[str, ...] = tuple(AU_NAMES)

#: Facial regions, top to bottom; the names appear verbatim in traces ("Inspect inner brow (AU1, AU4) → …").
REGIONS: tuple[str, ...] = (
    "inner brow",
    "outer brow",
    "eye region",
    "cheeks",
    "nose",
    "upper lip",
    "lip corners",
    "mouth",
    "chin",
)

AU_REGION: dict[str, str] = {
    "AU1": "inner brow",
    "AU4": "inner brow",
    "AU2": "outer brow",
    "AU5": "eye region",
    "AU7": "eye region",
    "AU6": "cheeks",
    "AU9": "nose",
    "AU10": "upper lip",
    "AU12": "lip corners",
    "AU14": "lip corners",
    "AU15": "lip corners",
    "AU20": "lip corners",
    "AU16": "mouth",
    "AU23": "mouth",
    "AU24": "mouth",
    "AU25": "mouth",
    "AU26": "mouth",
    "AU17": "chin",
}

#: EMFACS prototypes (Friesen & Ekman); contempt is unilateral R12A + R14A, neutral has none.
EXPRESSION_PRIORS: dict[str, tuple[str, ...]] = {
    "neutral": (),
    "happiness": ("AU6", "AU12"),
    "sadness": ("AU1", "AU4", "AU15"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"),
    "anger": ("AU4", "AU5", "AU7", "AU23"),
    "disgust": ("AU9", "AU15", "AU16"),
    "contempt": ("AU12", "AU14"),
}

#: The wider codebook of Belharbi et al. (FG 2024); used by the label–AU consistency measures as an
#: option (``prior="wide"``). Contempt and neutral are not in that codebook and keep the EMFACS sets.
WIDE_CODEBOOK: dict[str, tuple[str, ...]] = {
    "neutral": (),
    "happiness": ("AU6", "AU12", "AU25"),
    "sadness": ("AU1", "AU4", "AU6", "AU15", "AU17"),
    "surprise": ("AU1", "AU2", "AU5", "AU26"),
    "fear": ("AU1", "AU2", "AU4", "AU5", "AU20", "AU25", "AU26"),
    "anger": ("AU4", "AU5", "AU7", "AU10", "AU17", "AU23", "AU24", "AU25", "AU26"),
    "disgust": ("AU9", "AU16", "AU17", "AU25", "AU26"),
    "contempt": ("AU12", "AU14"),
}

_AU_PATTERN = re.compile(r"^\s*au[_\s-]?0*(\d{1,2})(?:_[rc]|_intensity)?\s*$", re.IGNORECASE | re.ASCII)  # "AU٤" is no AU


def canonical_au(text: str) -> str | None:
    """``"AU04_r"``, ``"au_4"``, ``"AU4"`` → ``"AU4"``; anything that is not an AU name → ``None``.

    AUs outside :data:`AU_NAMES` are returned too (``"AU45"``): detectors may report more than the
    project's vocabulary, and callers decide whether to keep them.
    """
    match = _AU_PATTERN.match(text) if isinstance(text, str) else None
    return f"AU{int(match.group(1))}" if match else None


def expression_prior(label: str, prior: str = "emfacs") -> tuple[str, ...]:
    """The AUs expected for ``label`` under ``prior`` ("emfacs" or "wide")."""
    table = {"emfacs": EXPRESSION_PRIORS, "wide": WIDE_CODEBOOK}.get(prior)
    if table is None:
        raise ValueError(f"unknown AU prior {prior!r}; expected 'emfacs' or 'wide'")
    return table[label]
