"""Face box + 68 landmarks with dlib (HOG face detector + ``shape_predictor_68_face_landmarks.dat``).

The predictor file ships inside the ``face-recognition-models`` pip package. That package imports
``pkg_resources`` (gone from current setuptools), so it is never imported: its folder is located with
``importlib.util.find_spec``. dlib itself comes from the ``dlib-bin`` wheel (the ``face`` extra).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install 'tagfer[face]'  (dlib-bin and face-recognition-models)"


def predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside the installed ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"face_recognition_models is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "models" / PREDICTOR_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{PREDICTOR_FILE} not found under {list(spec.submodule_search_locations)}; {INSTALL_HINT}")


def dlib_version() -> str:
    import dlib

    return dlib.__version__


def upsample_times(min_side: int, target: int = 160, max_times: int = 2) -> int:
    """How often dlib should double the image so its shorter side reaches ``target`` pixels.

    ``n = clip(ceil(log2(target / min_side)), 0, max_times)``: the HOG detector finds faces of about
    80×80 pixels and more, so small dataset crops (FER2013's 48×48, RAF-DB's 100×100) are upsampled.
    """
    if min_side <= 0:
        raise ValueError(f"image side must be positive, got {min_side}")
    return int(min(max(math.ceil(math.log2(target / min_side)), 0), max_times))


@dataclass
class DlibFace:
    """One face found by dlib: box ``(x1, y1, x2, y2)``, ``[68, 2]`` landmarks, score in [0, 1]."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float


@lru_cache(maxsize=1)
def dlib_models():
    """``(dlib, face detector, 68-point shape predictor)``, loaded once per process (the predictor file is
    ~100 MB: seconds to read, and an AU cache build creates a detector per split)."""
    try:
        import dlib
    except ImportError as err:
        raise ModuleNotFoundError(f"dlib is not installed; {INSTALL_HINT}") from err
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


class DlibLandmarker:
    """dlib's HOG frontal face detector and 68-point shape predictor, loaded on first use.

    Args:
        pad: when the image itself yields no face, a replicated border of ``pad × max(H, W)`` is added on
            every side and detection runs again, so tightly cropped faces (aligned dataset crops) get
            the margin the HOG detector was trained with.
        crop_fallback: when no face is detected, treat the whole image as the face rectangle and still
            fit the 68 landmarks (score 0). For datasets of face crops (RAF-DB aligned, FER2013) where the
            HOG detector misses some faces.
    """

    def __init__(self, pad: float = 0.25, crop_fallback: bool = False):
        self.pad = pad
        self.crop_fallback = crop_fallback

    @property
    def _models(self):
        return dlib_models()

    def __call__(self, image: np.ndarray) -> DlibFace | None:
        """The highest-scoring face in an ``[H, W, 3]`` RGB (or ``[H, W]`` grey) uint8 image, or None."""
        dlib, detector, predictor = self._models
        grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        height, width = grey.shape
        upsample = upsample_times(min(height, width))
        border = 0
        rects, scores, _ = detector.run(grey, upsample, 0.0)
        if not rects and self.pad > 0:
            border = int(round(self.pad * max(height, width)))
            grey = cv2.copyMakeBorder(grey, border, border, border, border, cv2.BORDER_REPLICATE)
            rects, scores, _ = detector.run(grey, upsample, 0.0)
        if rects:
            best = int(np.argmax(scores))
            rect, score = rects[best], 1.0 / (1.0 + math.exp(-float(scores[best])))
        elif self.crop_fallback:
            rect, score = dlib.rectangle(border, border, border + width - 1, border + height - 1), 0.0
        else:
            return None
        shape = predictor(grey, rect)
        points = np.array([(p.x - border, p.y - border) for p in shape.parts()], dtype=np.float64)
        box = (
            float(max(rect.left() - border, 0)),
            float(max(rect.top() - border, 0)),
            float(min(rect.right() + 1 - border, width)),
            float(min(rect.bottom() + 1 - border, height)),
        )
        return DlibFace(box=box, landmarks=points, score=score)
