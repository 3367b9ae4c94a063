"""The detector interface: every AU source (built-in, dataset landmarks, importers, synthetic truth).

A detector turns one image (and its dataset record) into :class:`~tagfer.core.evidence.AUEvidence` in
original-image pixels. All of them end in 68 landmarks, so the AU boxes are always computed the same
way (:func:`tagfer.core.regions.au_boxes`), for every AU of the project's vocabulary
(:data:`~tagfer.core.vocabulary.AU_LIST`) — also those the detector gives no probability for, so a trace
can point at a region whose AUs this detector cannot see. ``au_prob`` covers exactly ``au_list``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.regions import au_boxes, check_landmarks, landmarks_box, scale_box
from tagfer.core.vocabulary import AU_LIST
from tagfer.data.images import DecodedImage

BOX_MODES = ("region", "au")


class AUDetector(ABC):
    """One AU source. Subclasses set ``name`` (registry key), ``version`` and ``au_list``.

    ``version`` changes whenever the output of the detector changes for the same input: a cache built
    by another version is stale. ``au_list`` is the ordered tuple of AUs in ``au_prob``. ``reads_pixels``
    is True for a detector whose landmarks are found in the image handed in (so they are pixels of
    that array), False for one whose landmarks come with the record or from files (original pixels).
    """

    name: str = ""
    version: str = ""
    au_list: tuple[str, ...] = ()
    reads_pixels: bool = False

    def __init__(self, box_mode: str = "region"):
        if box_mode not in BOX_MODES:
            raise ValueError(f"box_mode={box_mode!r}; expected one of {list(BOX_MODES)}")
        self.box_mode = box_mode

    @abstractmethod
    def detect(self, image: np.ndarray, record: FaceRecord) -> AUEvidence:
        """Evidence for ``record`` whose decoded ``image`` is ``[H, W, 3]`` uint8 RGB.

        Never raises for "no face": returns ``AUEvidence(face_found=False)``.
        """

    def detect_decoded(self, decoded: DecodedImage, record: FaceRecord) -> AUEvidence:
        """:meth:`detect` on a possibly reduced decode (``tagfer.data.images.decode_image``), in original pixels.

        For a reduced image with ``(sx, sy) = decoded.scale``, the landmarks and face box of a detector
        that reads pixels are multiplied by ``(sx, sy)`` (other detectors' are original pixels already),
        and the AU boxes are recomputed from the landmarks at ``decoded.original_size``.
        """
        evidence = self.detect(decoded.pixels, record)
        if decoded.size == decoded.original_size or not evidence.face_found or evidence.landmarks is None:
            return evidence
        sx, sy = decoded.scale if self.reads_pixels else (1.0, 1.0)
        landmarks = np.asarray(evidence.landmarks, dtype=np.float64) * np.array([sx, sy])
        face_box = None if evidence.face_box is None else scale_box(evidence.face_box, sx, sy)
        return self.evidence(landmarks, decoded.original_size, evidence.au_prob, face_box, evidence.face_score)

    def missing(self, records: list[FaceRecord]) -> list[str]:
        """Ids of ``records`` this source has no data for (importers: no matching output file)."""
        return []

    def describe(self) -> dict:
        """What the AU cache stores about the detector (``meta.json``)."""
        return {"name": self.name, "version": self.version, "au_list": list(self.au_list)}

    def evidence(
        self,
        landmarks,
        image_size: tuple[int, int],
        au_prob: dict[str, float],
        face_box=None,
        face_score: float = 1.0,
    ) -> AUEvidence:
        """Assemble evidence from landmarks: boxes for every vocabulary AU, ``au_prob`` restricted to ``au_list``.

        ``image_size`` is ``(width, height)``; ``face_box`` defaults to the landmarks' bounding box.
        """
        points = check_landmarks(landmarks)
        box = landmarks_box(points) if face_box is None else tuple(float(v) for v in face_box)
        return AUEvidence(
            face_found=True,
            face_box=box,
            landmarks=points.astype(np.float32),
            au_prob={au: float(np.clip(au_prob[au], 0.0, 1.0)) for au in self.au_list if au in au_prob},
            au_box=au_boxes(points, AU_LIST, image_size, self.box_mode),
            face_score=float(face_score),
        )


def image_size_of(image: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an ``[H, W]`` or ``[H, W, C]`` image array."""
    height, width = np.asarray(image).shape[:2]
    return int(width), int(height)
