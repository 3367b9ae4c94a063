"""AU detectors behind one interface (:class:`AUDetector`), created by registry name.

============== ======================================================================================
name           source of landmarks and AU probabilities
============== ======================================================================================
builtin        dlib face + 68 landmarks; landmark-geometry AU estimate (not a trained AU detector)
dataset_landmarks  the dataset's 68 landmarks (AffectNet); landmark-geometry AU estimate
openface       OpenFace 2.x ``FaceLandmarkImg -aus`` per-image CSVs (``external``: the output folder)
pyfeat         py-feat ``Detector`` Fex CSVs (``external``: a CSV or a folder of them)
synthetic      ground truth of the synthetic faces (landmarks + ``extra["au_intensity"]``)
============== ======================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from tagfer.au.detectors.base import BOX_MODES, AUDetector
from tagfer.core.config import DETECTOR_NAMES, EXTERNAL_DETECTORS


@dataclass(frozen=True)
class DetectorSpec:
    """Everything needed to create a detector (picklable: worker processes build their own)."""

    name: str
    box_mode: str = "region"
    external: str | None = None
    crop_fallback: bool = False

    def __post_init__(self):
        if self.name not in DETECTOR_NAMES:
            raise ValueError(f"unknown AU detector {self.name!r}; expected one of {list(DETECTOR_NAMES)}")
        if self.box_mode not in BOX_MODES:
            raise ValueError(f"box_mode={self.box_mode!r}; expected one of {list(BOX_MODES)}")
        if self.name in EXTERNAL_DETECTORS and not self.external:
            raise ValueError(
                f"the {self.name!r} detector imports another tool's output files: give their location "
                "(--external PATH on the command line, au.external_dir in a config)"
            )

    def create(self) -> AUDetector:
        """A new detector instance (heavy models load lazily, on first ``detect``)."""
        if self.name == "builtin":
            from tagfer.au.detectors.landmarks import BuiltinDetector

            return BuiltinDetector(self.box_mode, crop_fallback=self.crop_fallback)
        if self.name == "dataset_landmarks":
            from tagfer.au.detectors.landmarks import DatasetLandmarksDetector

            return DatasetLandmarksDetector(self.box_mode)
        if self.name == "openface":
            from tagfer.au.detectors.openface import OpenFaceImporter

            return OpenFaceImporter(self.external, self.box_mode)
        if self.name == "pyfeat":
            from tagfer.au.detectors.pyfeat import PyFeatImporter

            return PyFeatImporter(self.external, self.box_mode)
        from tagfer.au.detectors.synthetic import SyntheticTruth

        return SyntheticTruth(self.box_mode)


def create_detector(name: str, *, box_mode: str = "region", external: str | None = None, crop_fallback: bool = False) -> AUDetector:
    """The detector registered as ``name`` (see the module table)."""
    return DetectorSpec(name, box_mode, external, crop_fallback).create()


__all__ = ["AUDetector", "DETECTOR_NAMES", "DetectorSpec", "create_detector"]
