"""The face-crop step: which face box an image is cropped to, and its AU evidence moved into the crop.

One setting, ``data.face_crop`` (:class:`tagfer.core.config.FaceCropConfig`), read once into a
:class:`FaceCrop` and applied the same way wherever an image reaches a model — the training and
evaluation samples of :class:`tagfer.pipeline.datamodule.FERDataset`, the template and teacher trace
builders and ``predict``:

* ``source: auto`` — crop *whole photos* and leave *face crops* alone. Whether a dataset split holds
  whole photos is a fact its reader states (:attr:`tagfer.data.reader_base.ReadResult.whole_photos`):
  AffectNet's 2017 ``csv`` layout, RAF-DB ``original``, ``imagefolder`` and synthetic ``pose: random``
  are whole photos; RAF-DB ``aligned``, FERPlus, AffectNet's ``npy`` release and synthetic
  ``pose: aligned`` are face crops. ``predict`` treats every input as a whole photo. A whole photo is
  cropped to the dataset's face box (:attr:`FaceRecord.face_box`) when the reader gives one, else to
  the detector's face box from the AU cache;
* ``source: dataset`` — every image (whole photo or not): the dataset's box, else the detector's;
* ``source: detector`` — every image: the detector's box (the dataset's is ignored);
* ``source: none`` — never crop.

``margin`` and ``square`` shape the window (:func:`tagfer.core.crop.crop_window`). An image with no box to
crop to (no dataset box and no face found by the detector) is served whole, as before the crop existed;
training drops such no-face images through the AU cache's quality filter as before.

The AU cache stays in original-image pixels; :func:`crop_evidence` moves a cached
:class:`~tagfer.core.evidence.AUEvidence` into the crop when a sample is served.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tagfer.core.crop import Window, box_to_crop, crop_image, crop_window, points_to_crop
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord

SOURCES = ("auto", "dataset", "detector", "none")


@dataclass(frozen=True)
class FaceCrop:
    """The face-crop setting (module docstring). ``for_images(whole_photos)`` resolves ``auto``."""

    source: str = "auto"
    margin: float = 0.2
    square: bool = True

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"face_crop.source={self.source!r}; expected one of {list(SOURCES)}")
        if self.margin < 0:
            raise ValueError(f"face_crop.margin={self.margin}; expected ≥ 0")

    @classmethod
    def from_config(cls, cfg) -> FaceCrop:
        """From a ``data.face_crop`` config node (:class:`tagfer.core.config.FaceCropConfig`)."""
        return cls(source=str(cfg.source), margin=float(cfg.margin), square=bool(cfg.square))

    def for_images(self, whole_photos: bool) -> FaceCrop:
        """The setting for a set of images: ``auto`` becomes ``dataset`` for whole photos, ``none`` for face crops."""
        if self.source != "auto":
            return self
        return replace(self, source="dataset" if whole_photos else "none")

    def window(self, record: FaceRecord | None, evidence: AUEvidence, image_size: tuple[int, int]) -> Window | None:
        """The crop window of one image of ``image_size`` = (W, H) in original pixels, or None (serve it whole).

        ``auto`` must be resolved first (:meth:`for_images`).
        """
        if self.source == "auto":
            raise ValueError("face_crop.source=auto must be resolved with for_images(whole_photos) before use")
        if self.source == "none":
            return None
        detected = evidence.face_box if evidence.face_found else None
        given = record.face_box if (record is not None and self.source == "dataset") else None
        box = given if given is not None else detected
        if box is None:
            return None
        return crop_window(box, image_size, margin=self.margin, square=self.square)


#: The setting that never crops (tests, tools that want the whole image).
NO_CROP = FaceCrop(source="none")


def crop_evidence(evidence: AUEvidence, window: Window) -> AUEvidence:
    """``evidence`` in the pixels of the crop ``window``: landmarks translated, boxes translated and clipped
    to the crop (an AU box left with no area inside the crop is dropped); probabilities unchanged."""
    au_box = {}
    for au, box in evidence.au_box.items():
        moved = box_to_crop(box, window)
        if moved is not None:
            au_box[au] = moved
    return replace(
        evidence,
        face_box=None if evidence.face_box is None else box_to_crop(evidence.face_box, window),
        landmarks=None if evidence.landmarks is None else points_to_crop(evidence.landmarks, window),
        au_prob=dict(evidence.au_prob),
        au_box=au_box,
    )


def apply_face_crop(
    crop: FaceCrop, record: FaceRecord | None, image: np.ndarray, evidence: AUEvidence
) -> tuple[np.ndarray, AUEvidence, Window | None]:
    """``(image, evidence, window)`` as served: cropped to ``crop.window(...)``, or unchanged with window None."""
    height, width = image.shape[:2]
    window = crop.window(record, evidence, (int(width), int(height)))
    if window is None:
        return image, evidence, None
    return crop_image(image, window), crop_evidence(evidence, window), window
