"""Importer of py-feat output: the CSV of a ``Detector.detect_image(...)`` Fex (``fex.to_csv(path)``).

Columns (one row per face, ``input`` = the image path given to py-feat; a pandas index column may lead)::

    [frame,]FaceRectX,FaceRectY,FaceRectWidth,FaceRectHeight,FaceScore,x_0..x_67,y_0..y_67,
    Pitch,Roll,Yaw,AU01,AU02,AU04,...,AU43,anger,disgust,fear,happiness,sadness,surprise,neutral,input[,frame]

AU columns are probabilities in [0, 1] (the xgb / svm AU models); their set depends on the AU model, so
``au_list`` is read from the file header (the project's AUs among them: AU11, AU28 and AU43 are outside the
vocabulary). An image with no face has one row of NaNs. Several faces → the row with the highest
``FaceScore``. Face box = ``(FaceRectX, FaceRectY, FaceRectX + FaceRectWidth, FaceRectY + FaceRectHeight)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagfer.au.detectors.base import AUDetector, image_size_of
from tagfer.au.detectors.external import NameMatcher, read_csv_rows, row_landmarks, to_float
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.vocabulary import AU_LIST, canonical_au

FACE_COLUMNS = ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")


@dataclass(slots=True)
class PyFeatFace:
    """The best face of one py-feat input: box, score, ``[68, 2]`` landmarks and AU probabilities."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    au_prob: dict[str, float]


def au_columns(header: list[str]) -> dict[str, str]:
    """``{project AU: column}`` for the AU probability columns of a Fex header (``AU01`` → ``AU1``)."""
    found = {}
    for column in header:
        au = canonical_au(column) if column.upper().startswith("AU") and "_" not in column else None
        if au in AU_LIST:
            found[au] = column
    return found


def read_fex(path: Path) -> tuple[dict[str, str], dict[str, PyFeatFace], set[str]]:
    """``({AU: column}, {input: best face}, every input)`` of one Fex CSV (an input without a face has no entry)."""
    header, rows = read_csv_rows(path)
    missing = [c for c in (*FACE_COLUMNS, "input") if c not in header]
    if missing:
        raise ValueError(f"{path}: not a py-feat Fex CSV, missing columns {missing}")
    columns = au_columns(header)
    if not columns:
        raise ValueError(f"{path}: no AU probability columns (AU01, AU02, ...) in the header")
    faces: dict[str, PyFeatFace] = {}
    inputs = {row["input"] for row in rows}
    for row in rows:
        x, y, w, h, score = (to_float(row[c]) for c in FACE_COLUMNS)
        landmarks = row_landmarks(row)
        if landmarks is None or not np.isfinite([x, y, w, h]).all():
            continue
        score = 1.0 if np.isnan(score) else score
        key = row["input"]
        if key in faces and faces[key].score >= score:
            continue
        au_prob = {au: to_float(row[c]) for au, c in columns.items()}
        faces[key] = PyFeatFace((x, y, x + w, y + h), score, landmarks, {au: p for au, p in au_prob.items() if not np.isnan(p)})
    return columns, faces, inputs


class PyFeatImporter(AUDetector):
    """AU evidence from py-feat Fex CSV files matched to records by the ``input`` column's file name.

    Args:
        external: one Fex CSV, or a folder searched recursively for ``*.csv`` (all must share AU columns).
    """

    name = "pyfeat"
    version = "pyfeat-fex-csv-v1"

    def __init__(self, external: str | Path, box_mode: str = "region"):
        super().__init__(box_mode)
        path = Path(external)
        if not path.exists():
            raise FileNotFoundError(f"py-feat output {path} does not exist (expected a Fex CSV or a folder of them)")
        files = [path] if path.is_file() else sorted(path.rglob("*.csv"))
        if not files:
            raise FileNotFoundError(f"no *.csv files under {path} (expected py-feat Fex CSVs)")
        self.faces: dict[str, PyFeatFace] = {}
        inputs: set[str] = set()
        aus: set[str] | None = None
        for file in files:
            columns, faces, file_inputs = read_fex(file)
            inputs |= file_inputs
            if aus is not None and set(columns) != aus:
                raise ValueError(f"{file}: AU columns {sorted(columns)} differ from the other files' {sorted(aus)}")
            aus = set(columns)
            self.faces.update(faces)
        self.au_list = tuple(au for au in AU_LIST if au in aus)
        self._matcher = NameMatcher(self.faces)
        self._inputs = NameMatcher(inputs)  # faces or not: tells "no face" from "not processed"

    def missing(self, records: list[FaceRecord]) -> list[str]:
        return [r.id for r in records if self._inputs.match(r.id) is None]

    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        key = self._matcher.match(record.id)
        if key is None:
            return AUEvidence(face_found=False)
        face = self.faces[key]
        return self.evidence(face.landmarks, image_size_of(image), face.au_prob, face_box=face.box, face_score=face.score)
