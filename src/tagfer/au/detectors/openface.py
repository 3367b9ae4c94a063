"""Importer of OpenFace 2.x output: per-image CSVs written by ``FaceLandmarkImg -fdir DIR -out_dir OUT -aus``.

Layout of one CSV (one row per face found; the header is written even when none is)::

    face,confidence[,gaze_0_x..gaze_angle_y,eye_lmk_*][,pose_Tx..pose_Rz],x_0..x_67,y_0..y_67
        [,X_0..Z_67][,p_scale,p_rx,p_ry,p_rz,p_tx,p_ty,p_0..p_33],AU01_r..AU45_r,AU01_c..AU45_c

Older builds separate fields with ", " (names then carry a leading space); the video tools
(``FeatureExtraction``) start with ``frame, face_id, timestamp, confidence, success`` and are read the
same way (rows with ``success = 0`` are ignored). Several faces → the row with the highest
``confidence``. Landmarks are image pixels; the face box is their bounding box.

AU probability (the project's AUs that OpenFace reports; AU28 and AU45 are outside the vocabulary)::

    p = (c + min(max(r, 0), 5) / 5) / 2    when both AUxx_c (presence 0/1) and AUxx_r (intensity 0–5) exist
    p = r / 5 (clipped to [0, 1])          when only the intensity exists
    p = c                                  when only the presence exists

so a present AU of any intensity reaches 0.5 and the intensity grades it above that.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from tagfer.au.detectors.base import AUDetector, image_size_of
from tagfer.au.detectors.external import NameMatcher, read_csv_rows, row_landmarks, to_float
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord

#: OpenFace 2.x AUs (intensity ``_r`` for all; presence ``_c`` for all plus AU28) inside the vocabulary.
OPENFACE_AUS: tuple[str, ...] = (
    "AU1",
    "AU2",
    "AU4",
    "AU5",
    "AU6",
    "AU7",
    "AU9",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
)


def openface_column(au: str, kind: str) -> str:
    """``("AU4", "r") → "AU04_r"``."""
    return f"AU{int(au[2:]):02d}_{kind}"


def openface_probability(intensity: float, presence: float) -> float:
    """Module-docstring formula; NaN for an absent value. Returns NaN when both are absent."""
    r = None if np.isnan(intensity) else min(max(intensity, 0.0), 5.0) / 5.0
    c = None if np.isnan(presence) else min(max(presence, 0.0), 1.0)
    if r is not None and c is not None:
        return (c + r) / 2
    if r is not None:
        return r
    return float("nan") if c is None else c


def best_face_row(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """The successful row with the highest ``confidence`` (None when there is none)."""
    usable = [row for row in rows if to_float(row.get("success", "1")) != 0]
    if not usable:
        return None
    return max(usable, key=lambda row: np.nan_to_num(to_float(row.get("confidence")), nan=-1.0))


class OpenFaceImporter(AUDetector):
    """AU evidence from OpenFace 2.x CSV files matched to records by file name.

    Args:
        external: the OpenFace ``-out_dir`` folder (searched recursively for ``*.csv``) or one CSV file.
    """

    name = "openface"
    version = "openface2-csv-v1"
    au_list = OPENFACE_AUS

    def __init__(self, external: str | Path, box_mode: str = "region"):
        super().__init__(box_mode)
        self.external = Path(external)
        if not self.external.exists():
            raise FileNotFoundError(f"OpenFace output {self.external} does not exist (expected FaceLandmarkImg's -out_dir)")

    @cached_property
    def _matcher(self) -> NameMatcher:
        files = [self.external] if self.external.is_file() else sorted(self.external.rglob("*.csv"))
        if not files:
            raise FileNotFoundError(f"no *.csv files under {self.external} (expected FaceLandmarkImg's per-image CSVs)")
        return NameMatcher([f.relative_to(self.external).as_posix() if f != self.external else f.name for f in files])

    def _csv_for(self, record_id: str) -> Path | None:
        key = self._matcher.match(record_id)
        if key is None:
            return None
        return self.external if self.external.is_file() else self.external / key

    def missing(self, records: list[FaceRecord]) -> list[str]:
        return [r.id for r in records if self._csv_for(r.id) is None]

    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        path = self._csv_for(record.id)
        if path is None:
            return AUEvidence(face_found=False)
        header, rows = read_csv_rows(path)
        if rows and not any(name.endswith(("_r", "_c")) and name.startswith("AU") for name in header):
            raise ValueError(f"{path}: no AUxx_r / AUxx_c columns; run FaceLandmarkImg with -aus")
        row = best_face_row(rows)
        landmarks = None if row is None else row_landmarks(row)
        if landmarks is None:
            return AUEvidence(face_found=False)
        au_prob = {}
        for au in self.au_list:
            p = openface_probability(to_float(row.get(openface_column(au, "r"))), to_float(row.get(openface_column(au, "c"))))
            if not np.isnan(p):
                au_prob[au] = p
        score = to_float(row.get("confidence"))
        return self.evidence(landmarks, image_size_of(image), au_prob, face_score=1.0 if np.isnan(score) else score)
