"""Ground truth of the synthetic faces: their exact landmarks and AU intensities as the "detector"."""

from __future__ import annotations

import numpy as np

from tagfer.au.detectors.base import AUDetector, image_size_of
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.vocabulary import AU_LIST


class SyntheticTruth(AUDetector):
    """``au_prob`` = the generator's ``record.extra["au_intensity"]`` (AU → [0, 1]; absent AUs are 0),
    landmarks and face box = the record's own. Only valid for records of the synthetic reader."""

    name = "synthetic"
    version = "synthetic-truth-v1"
    au_list = AU_LIST

    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        intensity = record.extra.get("au_intensity")
        if intensity is None or record.landmarks is None:
            raise ValueError(
                f"record {record.id!r} of dataset {record.dataset!r} has no synthetic ground truth "
                "(extra['au_intensity'] and landmarks); the 'synthetic' detector only works on the synthetic dataset"
            )
        au_prob = {au: float(intensity.get(au, 0.0)) for au in self.au_list}
        return self.evidence(record.landmarks, image_size_of(image), au_prob, record.face_box, 1.0)
