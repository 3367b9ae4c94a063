"""The wording of template traces: observation phrases per AU and intensity, relaxed-region phrases,
and global-analysis sentences per class and per evidence pattern.

Every phrase is safe inside the trace grammar (:mod:`tagfer.core.trace`): one line, no arrows, no
parentheses, no angle brackets. Phrases are short because the tiny offline model has to generate whole
traces on a CPU; :func:`all_phrases` is also the corpus its tokenizer is trained on.

Intensity levels split the active range ``[threshold, 1]`` into three equal bins (see
:func:`intensity_level`): ``weak``, ``clear``, ``strong``.
"""

from __future__ import annotations

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.trace import Trace, TraceStep, render_trace
from tagfer.core.vocabulary import AU_NAMES, AU_REGION, EXPRESSION_PRIORS, REGIONS

INTENSITIES: tuple[str, ...] = ("weak", "clear", "strong")

#: AU → intensity → wordings of what the step sees.
AU_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "AU1": {
        "weak": ("inner brows lifted slightly", "faint rise of the inner brows"),
        "clear": ("inner brow corners raised", "inner ends of the brows pulled up"),
        "strong": ("inner brows raised high", "inner brow corners drawn sharply upward"),
    },
    "AU2": {
        "weak": ("outer brows lifted slightly", "faint arch of the outer brows"),
        "clear": ("outer brows raised", "outer ends of the brows pulled up"),
        "strong": ("outer brows raised high into arches", "brows arched high at the sides"),
    },
    "AU4": {
        "weak": ("brows drawn together slightly", "slight tension between the brows"),
        "clear": ("brows lowered and knitted", "brows pulled down and together"),
        "strong": ("brows pressed low and tightly knitted", "deep furrow between lowered brows"),
    },
    "AU5": {
        "weak": ("upper lids lifted slightly", "eyes a little wider than at rest"),
        "clear": ("upper lids raised, eyes widened", "eyes opened wide"),
        "strong": ("eyes wide open with white above the iris", "upper lids raised sharply"),
    },
    "AU6": {
        "weak": ("cheeks lifted slightly", "faint crinkling at the eye corners"),
        "clear": ("cheeks raised with crow's feet", "cheeks pushed up under the eyes"),
        "strong": ("cheeks raised high, eyes narrowed", "deep crow's feet and raised cheeks"),
    },
    "AU7": {
        "weak": ("lids tightened slightly", "slight squint of the lower lids"),
        "clear": ("lower lids tightened", "eyelids tensed and narrowed"),
        "strong": ("lids tightly narrowed", "strong squint with tense lower lids"),
    },
    "AU9": {
        "weak": ("faint wrinkling on the nose", "nose slightly wrinkled"),
        "clear": ("nose wrinkled", "wrinkles across the bridge of the nose"),
        "strong": ("nose deeply wrinkled and drawn up", "strong wrinkling along the nose"),
    },
    "AU10": {
        "weak": ("upper lip raised slightly", "faint lift of the upper lip"),
        "clear": ("upper lip raised", "upper lip drawn upward"),
        "strong": ("upper lip pulled high, baring teeth", "upper lip raised sharply"),
    },
    "AU12": {
        "weak": ("lip corners turned up slightly", "hint of a smile at the corners"),
        "clear": ("lip corners pulled up", "corners of the mouth drawn upward into a smile"),
        "strong": ("broad smile with corners pulled high", "lip corners pulled up and back strongly"),
    },
    "AU14": {
        "weak": ("faint dimple at a lip corner", "lip corner tightened slightly"),
        "clear": ("dimple at the lip corner", "lip corner tightened inward"),
        "strong": ("deep dimple at the lip corner", "lip corner pulled in tightly"),
    },
    "AU15": {
        "weak": ("lip corners turned down slightly", "faint downturn at the corners"),
        "clear": ("lip corners pulled down", "corners of the mouth drawn downward"),
        "strong": ("lip corners pulled down sharply", "strong downturn of the mouth corners"),
    },
    "AU16": {
        "weak": ("lower lip lowered slightly", "faint pull on the lower lip"),
        "clear": ("lower lip pulled down", "lower lip drawn down and out"),
        "strong": ("lower lip pulled far down", "lower lip depressed strongly"),
    },
    "AU17": {
        "weak": ("chin raised slightly", "faint tension in the chin"),
        "clear": ("chin pushed up", "chin raised and wrinkled"),
        "strong": ("chin pushed up hard, lower lip pouting", "chin boss strongly raised"),
    },
    "AU20": {
        "weak": ("lips stretched slightly", "faint sideways pull of the lips"),
        "clear": ("lips stretched sideways", "mouth corners pulled outward"),
        "strong": ("lips stretched wide and tense", "strong sideways stretch of the mouth"),
    },
    "AU23": {
        "weak": ("lips tightened slightly", "faint tension in the lips"),
        "clear": ("lips tightened", "lips narrowed and tense"),
        "strong": ("lips tightly narrowed", "lips pressed thin with tension"),
    },
    "AU24": {
        "weak": ("lips pressed slightly", "lips pressed lightly together"),
        "clear": ("lips pressed together", "lips pressed firmly"),
        "strong": ("lips pressed hard together", "lips clamped tightly shut"),
    },
    "AU25": {
        "weak": ("lips parted slightly", "small gap between the lips"),
        "clear": ("lips parted", "lips apart"),
        "strong": ("lips parted wide", "mouth clearly open"),
    },
    "AU26": {
        "weak": ("jaw lowered slightly", "mouth a little open"),
        "clear": ("jaw dropped", "jaw lowered, mouth open"),
        "strong": ("jaw dropped wide open", "mouth hanging wide open"),
    },
}

#: Region → wordings of a region at rest (steps with ``none``: neutral faces, absent prototypes).
RELAXED_PHRASES: dict[str, tuple[str, ...]] = {
    "inner brow": ("inner brows relaxed and level", "no tension between the brows"),
    "outer brow": ("outer brows at rest", "brows level, no arch"),
    "eye region": ("eyes open normally, lids relaxed", "relaxed lids, steady gaze"),
    "cheeks": ("cheeks smooth and relaxed", "no lift in the cheeks"),
    "nose": ("nose smooth, no wrinkles", "relaxed nose"),
    "upper lip": ("upper lip at rest", "upper lip relaxed"),
    "lip corners": ("lip corners level and relaxed", "mouth corners neither up nor down"),
    "mouth": ("lips closed and relaxed", "mouth at rest"),
    "chin": ("chin relaxed", "smooth, relaxed chin"),
}

#: Class → sentences describing the overall impression (first sentence of a global analysis).
CLASS_ANALYSES: dict[str, tuple[str, ...]] = {
    "neutral": ("The face looks calm and relaxed.", "The features are at rest with no marked movement."),
    "happiness": ("The face looks pleased, with a smiling mouth.", "The face shows a warm, smiling expression."),
    "sadness": ("The face looks downcast and heavy.", "The face shows a sorrowful, drooping expression."),
    "surprise": ("The face looks startled, with wide eyes.", "The face shows an open, astonished expression."),
    "fear": ("The face looks tense and alarmed.", "The face shows a frightened, strained expression."),
    "disgust": ("The face looks repelled, with a wrinkled nose.", "The face shows an aversive expression."),
    "anger": ("The face looks hostile and tense.", "The face shows a glaring, tense expression."),
    "contempt": ("The face looks dismissive, with a one-sided mouth.", "The face shows a scornful expression."),
}

#: Evidence pattern → second sentence of a global analysis (see :func:`evidence_pattern`).
PATTERN_ANALYSES: dict[str, tuple[str, ...]] = {
    "typical": ("The active units match the typical pattern.", "The detected units fit this expression well."),
    "partial": ("Part of the typical pattern is present.", "Some expected units are visible, others are faint."),
    "atypical": ("The expected units are faint, so subtler cues decide.", "The typical units are weak here."),
    "slight": ("Only slight movements are present.", "The movements are minor and form no expression."),
    "relaxed": ("No action unit is clearly active.", "The regions checked show no clear movement."),
}
EVIDENCE_PATTERNS: tuple[str, ...] = tuple(PATTERN_ANALYSES)


def intensity_level(probability: float, threshold: float = 0.5) -> str:
    """``weak`` / ``clear`` / ``strong`` for an AU probability.

    The active range ``[threshold, 1]`` is cut into three equal bins of width ``w = (1 - threshold) / 3``:
    ``p < threshold + w`` → weak (this includes sub-threshold AUs cited by the template policy),
    ``p < threshold + 2w`` → clear, else strong.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    width = (1.0 - threshold) / 3.0
    if probability < threshold + width:
        return "weak"
    if probability < threshold + 2 * width:
        return "clear"
    return "strong"


def evidence_pattern(active: set[str], prior: tuple[str, ...]) -> str:
    """Which :data:`PATTERN_ANALYSES` entry describes ``active`` AUs against a label's prototype ``prior``.

    ``relaxed`` when no AU is active; ``slight`` when AUs are active but the label has no prototype
    (neutral); ``typical`` when every prototypical AU of the label is active; ``partial`` when some are;
    ``atypical`` otherwise.
    """
    if not active:
        return "relaxed"
    if not prior:
        return "slight"
    present = [au for au in prior if au in active]
    if len(present) == len(prior):
        return "typical"
    return "partial" if present else "atypical"


def all_phrases() -> list[str]:
    """Every phrase of the bank (observations, relaxed regions, analyses), the region, AU and class names,
    and one rendered trace per class (so the grammar's fixed words, arrows, tags and box digits are in
    it too), in a fixed order without repeats — the tokenizer corpus of the tiny model."""
    texts: list[str] = []
    texts += [p for levels in AU_PHRASES.values() for level in INTENSITIES for p in levels[level]]
    texts += [p for phrases in RELAXED_PHRASES.values() for p in phrases]
    texts += [p for phrases in CLASS_ANALYSES.values() for p in phrases]
    texts += [p for phrases in PATTERN_ANALYSES.values() for p in phrases]
    texts += list(REGIONS) + list(AU_NAMES) + list(AU_NAMES.values()) + list(CLASS_NAMES)
    texts += [render_trace(_example_trace(label), think_tags=think) for label in CLASS_NAMES for think in (False, True)]
    return list(dict.fromkeys(texts))


def _example_trace(label: str) -> Trace:
    """A fixed, grammar-complete trace for ``label`` (prototype AUs, strong wording, made-up boxes)."""
    prior = EXPRESSION_PRIORS[label]
    regions = list(dict.fromkeys(AU_REGION[au] for au in prior)) or ["inner brow", "mouth"]
    steps = []
    for index, region in enumerate(regions):
        aus = tuple(au for au in prior if AU_REGION[au] == region)
        observation = AU_PHRASES[aus[0]]["strong"][0] if aus else RELAXED_PHRASES[region][0]
        top = 40 + 60 * index
        steps.append(TraceStep(region, aus, observation, (120.0 + index, float(top), 395.0 - index, top + 87.0)))
    pattern = "typical" if prior else "relaxed"
    analysis = f"{CLASS_ANALYSES[label][0]} {PATTERN_ANALYSES[pattern][0]}"
    return Trace(analysis, tuple(steps), prior, label)
