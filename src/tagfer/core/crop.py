"""Face-crop geometry: the crop window around a face box, and coordinates into and out of the crop.

Pure functions on boxes ``(x1, y1, x2, y2)`` and points ``[..., 2]`` (x right, y down, image pixels).
The crop window is an *integer* pixel box ``(cx1, cy1, cx2, cy2)`` of the original image, so cropping
is array slicing ``image[cy1:cy2, cx1:cx2]`` and every coordinate maps by one translation:

    crop = original − (cx1, cy1)          original = crop + (cx1, cy1)

Window (:func:`crop_window`) for a face box of width ``w`` and height ``h`` centred at ``(x, y)``:

1. ``square``: both sides become ``max(w, h)``;
2. margin: each side grows by ``margin`` × its length on both ends (side ``s`` → ``s · (1 + 2·margin)``);
3. clamp, per axis: a window that fits in the image is shifted inside it keeping its size (the face
   then sits off-centre near an edge); one longer than the image becomes the whole axis;
4. round outward to whole pixels (floor the start, ceil the end) inside ``[0, W] × [0, H]``, at least
   one pixel wide and high.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]
Window = tuple[int, int, int, int]
Size = tuple[int, int]


def _axis(centre: float, length: float, limit: int) -> tuple[int, int]:
    """``[start, end)`` integer span of ``length`` centred at ``centre``, clamped into ``[0, limit]`` (step 3–4)."""
    if length >= limit:
        return 0, int(limit)
    start = min(max(centre - length / 2.0, 0.0), limit - length)
    low = max(0, math.floor(start))
    high = min(int(limit), math.ceil(start + length))
    if high <= low:
        low, high = (low, low + 1) if low < limit else (limit - 1, limit)
    return int(low), int(high)


def crop_window(face_box: Sequence[float], image_size: Size, *, margin: float, square: bool) -> Window:
    """The integer crop window of ``face_box`` in an image of ``image_size`` = (W, H) (module docstring).

    Raises ``ValueError`` for a negative margin or a box with ``x2 < x1`` or ``y2 < y1``.
    """
    if margin < 0:
        raise ValueError(f"face-crop margin must be ≥ 0, got {margin}")
    x1, y1, x2, y2 = (float(v) for v in face_box)
    if x2 < x1 or y2 < y1:
        raise ValueError(f"face box {tuple(face_box)} has x2 < x1 or y2 < y1")
    width, height = x2 - x1, y2 - y1
    if square:
        width = height = max(width, height)
    grow = 1.0 + 2.0 * margin
    left, right = _axis((x1 + x2) / 2.0, width * grow, int(image_size[0]))
    top, bottom = _axis((y1 + y2) / 2.0, height * grow, int(image_size[1]))
    return left, top, right, bottom


def window_size(window: Window) -> Size:
    """``(width, height)`` of a crop window (the cropped image's size)."""
    return int(window[2] - window[0]), int(window[3] - window[1])


def crop_image(image: np.ndarray, window: Window) -> np.ndarray:
    """The ``[h, w, ...]`` pixels of ``image`` ``[H, W, ...]`` inside ``window`` (a contiguous copy)."""
    x1, y1, x2, y2 = window
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def points_to_crop(points: np.ndarray, window: Window) -> np.ndarray:
    """``points`` ``[..., 2]`` in original pixels → pixels of the crop (points outside stay outside)."""
    return np.asarray(points, dtype=np.float32) - np.asarray(window[:2], dtype=np.float32)


def points_from_crop(points: np.ndarray, window: Window) -> np.ndarray:
    """``points`` ``[..., 2]`` in crop pixels → original pixels (inverse of :func:`points_to_crop`)."""
    return np.asarray(points, dtype=np.float32) + np.asarray(window[:2], dtype=np.float32)


def box_to_crop(box: Sequence[float], window: Window) -> Box | None:
    """``box`` in original pixels → crop pixels, clipped to the crop; None when nothing of it is inside
    (zero width or height after clipping)."""
    width, height = window_size(window)
    x1, y1, x2, y2 = (float(v) for v in box)
    left, top = window[0], window[1]
    clipped = (
        min(max(x1 - left, 0.0), width),
        min(max(y1 - top, 0.0), height),
        min(max(x2 - left, 0.0), width),
        min(max(y2 - top, 0.0), height),
    )
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None
    return clipped


def box_from_crop(box: Sequence[float], window: Window) -> Box:
    """``box`` in crop pixels → original pixels (a translation; no clipping is needed)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + window[0], y1 + window[1], x2 + window[0], y2 + window[1])
