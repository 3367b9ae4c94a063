"""Face-quality filter applied while the AU cache is built (thresholds from ``QualityConfig``).

Measures of one image (stored in the cache, so verdicts can be recomputed for other thresholds):

* ``sharpness`` — variance of the Laplacian of the grey face crop:
  ``var(∇²I)`` with ``∇²I = I(x−1,y) + I(x+1,y) + I(x,y−1) + I(x,y+1) − 4·I(x,y)`` (OpenCV's 3×3 kernel,
  reflected borders), ``I`` the ITU-R 601 grey value of the face box crop (rounded to whole pixels).
  Low values mean blur; the value depends on resolution, so thresholds are per dataset.
* ``face_score`` — the detector's confidence in [0, 1].
* ``face_size`` — the shorter side of the face box, pixels.

Verdicts, first failing check wins: ``ok``, ``no_face``, ``low_score`` (score < min_face_score),
``small_face`` (size < min_face_size), ``blurry`` (sharpness < min_sharpness). With the filter disabled
every image with a face is ``ok``.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Verdict codes as stored in the cache (uint8) and their names.
VERDICTS: tuple[str, ...] = ("ok", "no_face", "low_score", "small_face", "blurry")
VERDICT_CODE: dict[str, int] = {name: code for code, name in enumerate(VERDICTS)}


def face_crop(image: np.ndarray, box) -> np.ndarray:
    """The pixels of ``image`` inside ``box = (x1, y1, x2, y2)`` (rounded, clipped to the image; may be empty)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = min(max(x1, 0), width), min(max(x2, 0), width)
    y1, y2 = min(max(y1, 0), height), min(max(y2, 0), height)
    return image[y1:y2, x1:x2]


def laplacian_sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian of the grey crop of ``box`` (module docstring); 0.0 for an empty crop.

    ``image`` is ``[H, W, 3]`` RGB or ``[H, W]`` grey uint8.
    """
    crop = face_crop(image, box)
    if crop.size == 0 or min(crop.shape[:2]) < 3:
        return 0.0
    grey = crop if crop.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var())


def face_size(box) -> float:
    """Shorter side of ``box`` in pixels."""
    x1, y1, x2, y2 = box
    return float(min(x2 - x1, y2 - y1))


def quality_verdict(face_found: bool, face_score: float, size: float, sharpness: float, config) -> str:
    """The verdict name for one image under ``config`` (a ``QualityConfig``: enabled, min_* thresholds)."""
    if not face_found:
        return "no_face"
    if not config.enabled:
        return "ok"
    if face_score < config.min_face_score:
        return "low_score"
    if size < config.min_face_size:
        return "small_face"
    if sharpness < config.min_sharpness:
        return "blurry"
    return "ok"


def quality_codes(face_found: np.ndarray, face_score: np.ndarray, size: np.ndarray, sharpness: np.ndarray, config) -> np.ndarray:
    """Vectorised :func:`quality_verdict` over ``[N]`` arrays → ``[N]`` uint8 codes of :data:`VERDICTS`."""
    codes = np.full(face_found.shape, VERDICT_CODE["ok"], dtype=np.uint8)
    if config.enabled:
        checks = (
            ("blurry", sharpness < config.min_sharpness),
            ("small_face", size < config.min_face_size),
            ("low_score", face_score < config.min_face_score),
        )
        for name, failed in checks:  # reverse priority: later assignments win
            codes[failed] = VERDICT_CODE[name]
    codes[~face_found] = VERDICT_CODE["no_face"]
    return codes
