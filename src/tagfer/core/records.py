"""``FaceRecord``: one labelled face image as a dataset reader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagfer.core.classes import CLASS_NAMES


@dataclass
class FaceRecord:
    """One image of a dataset.

    Attributes:
        id: the image path relative to the dataset root (unique within a dataset; the AU cache key).
            For FERPlus read from ``fer2013.csv`` the id is the path the FER+ script would write
            (``FER2013Train/fer0000000.png``).
        dataset: reader name ("rafdb", "ferplus", "affectnet", "imagefolder", "synthetic").
        split: "train", "val" or "test".
        label: index into :data:`tagfer.core.classes.CLASS_NAMES`.
        image_path: absolute path of the image file, or None when ``pixels`` holds the image.
        pixels: ``[H, W]`` or ``[H, W, 3]`` uint8 array when the image lives inside a CSV (FER2013).
        soft_label: ``[8]`` target distribution (FERPlus probability / crossentropy / multi_target modes).
        landmarks: ``[68, 2]`` landmarks shipped by the dataset (AffectNet, synthetic), in image pixels.
        face_box: ``(x1, y1, x2, y2)`` shipped by the dataset, in image pixels.
        extra: reader-specific facts (e.g. RAF-DB's 5 manual landmarks, synthetic AU ground truth).
    """

    id: str
    dataset: str
    split: str
    label: int
    image_path: Path | None = None
    pixels: np.ndarray | None = None
    soft_label: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    face_box: tuple[float, float, float, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def label_name(self) -> str:
        return CLASS_NAMES[self.label]
