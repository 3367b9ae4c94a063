"""A parametric 68-point face (iBUG-68 order) whose shape is moved by Action Units, and its pose.

Canonical face coordinates: x to the right of the image, y down, origin between the eyes and the
mouth, unit = half the face width (the jaw spans x ∈ [−1, 1]; eyes at y ≈ −0.18, mouth at y ≈ 0.66,
chin at y ≈ 1.12). The subject's right side is the image's left side (x < 0).

Shape model (pure numpy, no randomness here):

* :data:`NEUTRAL_LANDMARKS` ``[68, 2]`` — the neutral face.
* :data:`AU_DISPLACEMENT` — for every AU of the vocabulary the displacement ``(dx, dy)`` of the
  landmarks it moves at full intensity, given for the subject's right half (x < 0) and the midline;
  the left half gets the mirror image (``dx`` negated) through :data:`MIRROR`.
* :func:`deform` — ``L = L0 + Σ_AU w_side · intensity_AU · D_AU`` (linear blend of AU displacement
  fields, ``w_side`` ∈ {0, 1} per side for unilateral AUs), then the lip order is restored
  (inner lower lip never above the inner upper lip; outer lips outside the inner ones).
* :func:`to_image` — the similarity transform ``p_img = centre + scale · R(angle) · p`` that places
  the canonical face in the image (``angle`` in degrees; positive turns the face clockwise on screen,
  since y points down).
"""

from __future__ import annotations

import numpy as np

from tagfer.core.vocabulary import AU_LIST

#: Index of the horizontally mirrored landmark (iBUG-68).
MIRROR: tuple[int, ...] = (
    *range(16, -1, -1),  # jaw 0..16
    26,
    25,
    24,
    23,
    22,
    21,
    20,
    19,
    18,
    17,  # brows 17..26
    27,
    28,
    29,
    30,  # nose bridge
    35,
    34,
    33,
    32,
    31,  # nose base 31..35
    45,
    44,
    43,
    42,
    47,
    46,  # right eye 36..41 (image left)
    39,
    38,
    37,
    36,
    41,
    40,  # left eye 42..47 (image right)
    54,
    53,
    52,
    51,
    50,
    49,
    48,
    59,
    58,
    57,
    56,
    55,  # outer lip 48..59
    64,
    63,
    62,
    61,
    60,
    67,
    66,
    65,  # inner lip 60..67
)


def _jaw_half() -> dict[int, tuple[float, float]]:
    """Jaw points 0..8 (image-left temple to chin): a rounded-square curve."""
    points = {}
    for k in range(9):
        theta = np.pi / 2 * k / 8  # 0 at the temple, π/2 at the chin
        x = -(np.cos(theta) ** 0.8) * (0.98 - 0.06 * np.sin(theta))
        y = -0.2 + 1.32 * np.sin(theta) ** 1.15
        points[k] = (round(float(x), 6), round(float(y), 6))
    return points


#: Subject's-right half (x < 0) and midline of the neutral face; the rest is mirrored.
_NEUTRAL_HALF: dict[int, tuple[float, float]] = {
    **_jaw_half(),
    17: (-0.80, -0.40),
    18: (-0.66, -0.50),
    19: (-0.49, -0.53),
    20: (-0.33, -0.51),
    21: (-0.17, -0.46),
    27: (0.0, -0.32),
    28: (0.0, -0.15),
    29: (0.0, 0.02),
    30: (0.0, 0.20),
    31: (-0.20, 0.33),
    32: (-0.10, 0.36),
    33: (0.0, 0.38),
    36: (-0.62, -0.18),
    37: (-0.50, -0.26),
    38: (-0.34, -0.26),
    39: (-0.22, -0.17),
    40: (-0.34, -0.11),
    41: (-0.50, -0.11),
    48: (-0.38, 0.66),
    49: (-0.24, 0.59),
    50: (-0.09, 0.555),
    51: (0.0, 0.57),
    57: (0.0, 0.785),
    58: (-0.11, 0.78),
    59: (-0.24, 0.74),
    60: (-0.31, 0.66),
    61: (-0.11, 0.645),
    62: (0.0, 0.65),
    66: (0.0, 0.66),
    67: (-0.11, 0.655),
}

#: AU → {landmark: (dx, dy)} at intensity 1, for the subject's right half and the midline.
AU_DISPLACEMENT: dict[str, dict[int, tuple[float, float]]] = {
    "AU1": {21: (0.0, -0.2), 20: (0.0, -0.14), 19: (0.0, -0.06), 18: (0.0, -0.015)},
    "AU2": {17: (0.0, -0.16), 18: (0.0, -0.15), 19: (0.0, -0.11), 20: (0.0, -0.06), 21: (0.0, -0.02)},
    "AU4": {17: (0.0, 0.03), 18: (0.01, 0.05), 19: (0.03, 0.07), 20: (0.05, 0.08), 21: (0.07, 0.085), 37: (0.0, 0.015), 38: (0.0, 0.02)},
    "AU5": {37: (0.0, -0.075), 38: (0.0, -0.075), 36: (0.0, -0.01), 39: (0.0, -0.01)},
    "AU6": {40: (0.0, -0.04), 41: (0.0, -0.045), 36: (0.0, -0.01)},
    "AU7": {40: (0.0, -0.045), 41: (0.0, -0.045), 37: (0.0, 0.025), 38: (0.0, 0.025)},
    "AU9": {
        31: (-0.02, -0.06),
        32: (0.0, -0.05),
        33: (0.0, -0.04),
        30: (0.0, -0.02),
        29: (0.0, -0.01),
        49: (0.0, -0.03),
        50: (0.0, -0.04),
        51: (0.0, -0.04),
        61: (0.0, -0.03),
        62: (0.0, -0.03),
        21: (0.02, 0.05),
        20: (0.01, 0.04),
    },
    "AU10": {
        49: (0.0, -0.06),
        50: (0.0, -0.08),
        51: (0.0, -0.08),
        61: (0.0, -0.08),
        62: (0.0, -0.08),
        48: (0.0, -0.02),
        60: (0.0, -0.03),
        31: (0.0, -0.015),
        32: (0.0, -0.01),
    },
    "AU12": {
        48: (-0.07, -0.17),
        60: (-0.065, -0.16),
        49: (-0.025, -0.07),
        59: (-0.035, -0.11),
        58: (-0.01, -0.03),
        57: (0.0, 0.015),
        61: (-0.01, -0.06),
        62: (0.0, -0.03),
        67: (-0.015, -0.04),
        66: (0.0, 0.02),
        50: (0.0, -0.02),
    },
    "AU14": {48: (0.04, -0.05), 60: (0.04, -0.05), 49: (0.015, -0.015), 59: (0.015, -0.02)},
    "AU15": {48: (-0.01, 0.11), 60: (-0.01, 0.10), 49: (0.0, 0.035), 59: (0.0, 0.03), 61: (0.0, 0.02), 67: (0.0, 0.025)},
    "AU16": {57: (0.0, 0.08), 58: (0.0, 0.075), 59: (0.0, 0.05), 66: (0.0, 0.08), 67: (0.0, 0.07)},
    "AU17": {
        57: (0.0, -0.05),
        58: (0.0, -0.045),
        59: (0.0, -0.025),
        66: (0.0, -0.02),
        67: (0.0, -0.015),
        8: (0.0, -0.05),
        7: (0.0, -0.04),
        6: (0.0, -0.02),
    },
    "AU20": {
        48: (-0.11, 0.025),
        60: (-0.10, 0.02),
        49: (-0.05, 0.01),
        59: (-0.05, 0.0),
        58: (-0.02, 0.0),
        61: (-0.04, 0.005),
        67: (-0.04, 0.0),
    },
    "AU23": {
        49: (0.0, 0.02),
        50: (0.0, 0.025),
        51: (0.0, 0.025),
        59: (0.0, -0.03),
        58: (0.0, -0.035),
        57: (0.0, -0.035),
        48: (0.03, 0.0),
        60: (0.02, 0.0),
    },
    "AU24": {
        49: (0.0, 0.025),
        50: (0.0, 0.03),
        51: (0.0, 0.03),
        57: (0.0, -0.04),
        58: (0.0, -0.04),
        59: (0.0, -0.03),
        48: (0.02, 0.0),
        60: (0.015, 0.0),
    },
    "AU25": {66: (0.0, 0.06), 67: (0.0, 0.05), 57: (0.0, 0.05), 58: (0.0, 0.045), 59: (0.0, 0.03), 61: (0.0, -0.01), 62: (0.0, -0.01)},
    "AU26": {
        57: (0.0, 0.26),
        58: (0.0, 0.25),
        59: (0.0, 0.16),
        66: (0.0, 0.25),
        67: (0.0, 0.22),
        48: (0.01, 0.05),
        60: (0.01, 0.05),
        8: (0.0, 0.22),
        7: (0.0, 0.21),
        6: (0.0, 0.17),
        5: (0.0, 0.13),
        4: (0.0, 0.08),
        3: (0.0, 0.03),
    },
}

SIDES = ("right", "left")  # the subject's sides: right = image left (x < 0)


def _mirrored(half: dict[int, tuple[float, float]]) -> np.ndarray:
    """``[68, 2]`` array from a half table: each point and its mirror (``dx`` negated)."""
    full = np.zeros((68, 2), dtype=np.float64)
    for index, (x, y) in half.items():
        full[index] = (x, y)
        full[MIRROR[index]] = (-x, y)
    return full


NEUTRAL_LANDMARKS: np.ndarray = _mirrored(_NEUTRAL_HALF)
_SIDE_OF_POINT = np.sign(NEUTRAL_LANDMARKS[:, 0])  # −1 subject's right, +1 left, 0 midline
_DISPLACEMENT_FIELDS: dict[str, np.ndarray] = {au: _mirrored(AU_DISPLACEMENT[au]) for au in AU_LIST}

_INNER_UPPER_LOWER = ((61, 67), (62, 66), (63, 65))
_OUTER_INNER_UPPER = ((49, 61), (50, 61), (51, 62), (52, 63), (53, 63))
_OUTER_INNER_LOWER = ((59, 67), (58, 67), (57, 66), (56, 65), (55, 65))


def side_weights(side: str | None) -> np.ndarray:
    """``[68]`` weights of an AU acting on one side of the face (``None``: both sides, all ones).

    ``side="right"`` moves the subject's right half (image left) fully, midline points by half.
    """
    if side is None:
        return np.ones(68)
    if side not in SIDES:
        raise ValueError(f"side={side!r}; expected one of {list(SIDES)} or None")
    sign = -1.0 if side == "right" else 1.0
    return np.where(_SIDE_OF_POINT == sign, 1.0, np.where(_SIDE_OF_POINT == 0, 0.5, 0.0))


def deform(au_intensity: dict[str, float], au_side: dict[str, str] | None = None) -> np.ndarray:
    """Canonical ``[68, 2]`` landmarks of the face showing ``au_intensity`` (AU → [0, 1]).

    ``L = L0 + Σ_AU intensity_AU · w_side(AU) ⊙ D_AU`` with ``D_AU`` the displacement field of the AU
    and ``w_side`` from :func:`side_weights` (``au_side`` names unilateral AUs). Afterwards the inner
    lower lip is kept at or below the inner upper lip and the outer lip contour outside the inner one,
    so the mouth polygons never fold over. Unknown AU names raise ``KeyError``.
    """
    au_side = au_side or {}
    points = NEUTRAL_LANDMARKS.copy()
    for au, intensity in au_intensity.items():
        if intensity:
            weights = side_weights(au_side.get(au))[:, None]
            points += float(intensity) * weights * _DISPLACEMENT_FIELDS[au]
    for upper, lower in _INNER_UPPER_LOWER:
        points[lower, 1] = max(points[lower, 1], points[upper, 1])
    for outer, inner in _OUTER_INNER_UPPER:
        points[outer, 1] = min(points[outer, 1], points[inner, 1] - 0.02)
    for outer, inner in _OUTER_INNER_LOWER:
        points[outer, 1] = max(points[outer, 1], points[inner, 1] + 0.03)
    return points


def rotation(angle_deg: float) -> np.ndarray:
    """``[2, 2]`` rotation matrix for image coordinates (y down): positive angles turn clockwise on screen."""
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def to_image(points: np.ndarray, scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """``[N, 2]`` canonical points → image pixels: ``centre + scale · R(angle) · p``."""
    return np.asarray(centre, dtype=np.float64) + scale * np.asarray(points, dtype=np.float64) @ rotation(angle_deg).T
