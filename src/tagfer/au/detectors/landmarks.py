"""Detectors that estimate AUs from 68 landmarks with the landmark-geometry model.

* ``builtin``: face box and landmarks from dlib (:mod:`tagfer.au.detectors.dlib_face`).
* ``dataset_landmarks``: the landmarks (and face box) the dataset ships (AffectNet).

Both report the **landmark-geometry estimate** (:mod:`tagfer.au.geometry`): an estimate from distances
between landmarks, not a trained AU detector; its version string says so (``landmark-geometry-v1``).
"""

from __future__ import annotations

import numpy as np

from tagfer.au.detectors.base import AUDetector, image_size_of
from tagfer.au.detectors.dlib_face import DlibLandmarker, dlib_version
from tagfer.au.geometry import GeometryModel
from tagfer.au.geometry_params import GEOMETRY_MODEL
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord


class BuiltinDetector(AUDetector):
    """dlib face + 68 landmarks, then the landmark-geometry AU estimate (an estimate, not a trained detector).

    Args:
        crop_fallback: fit landmarks on the whole image when dlib finds no face (datasets of face crops);
            such faces get ``face_score = 0``.
    """

    name = "builtin"
    reads_pixels = True

    def __init__(self, box_mode: str = "region", crop_fallback: bool = False, model: GeometryModel = GEOMETRY_MODEL):
        super().__init__(box_mode)
        self.model = model
        self.au_list = model.au_list
        self.landmarker = DlibLandmarker(crop_fallback=crop_fallback)
        self.version = f"{model.version}+dlib-{dlib_version()}" + ("+crop-fallback" if crop_fallback else "")

    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        face = self.landmarker(image)
        if face is None:
            return AUEvidence(face_found=False)
        return self.evidence(face.landmarks, image_size_of(image), self.model.probabilities(face.landmarks), face.box, face.score)


class DatasetLandmarksDetector(AUDetector):
    """The dataset's own 68 landmarks and face box, then the landmark-geometry AU estimate.

    A record without landmarks (or with degenerate ones: both eye centres on one point) is "no face".
    """

    name = "dataset_landmarks"

    def __init__(self, box_mode: str = "region", model: GeometryModel = GEOMETRY_MODEL):
        super().__init__(box_mode)
        self.model = model
        self.au_list = model.au_list
        self.version = f"{model.version}+dataset-landmarks"

    def missing(self, records: list[FaceRecord]) -> list[str]:
        return [r.id for r in records if r.landmarks is None]

    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        if record.landmarks is None:
            return AUEvidence(face_found=False)
        try:
            au_prob = self.model.probabilities(record.landmarks)
        except ValueError:
            return AUEvidence(face_found=False)
        return self.evidence(record.landmarks, image_size_of(image), au_prob, record.face_box, 1.0)
