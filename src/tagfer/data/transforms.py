"""Training augmentation with albumentations; AU boxes and landmarks follow every geometric transform.

One ``A.Compose`` call moves the image, the AU boxes (``pascal_voc`` x1,y1,x2,y2 in pixels), the face
box, any extra boxes (e.g. those inside a reasoning trace) and the 68 landmarks together. A horizontal
flip mirrors coordinates (albumentations) *and* swaps the left/right landmark indices (here), so that
landmark 36 stays the outer corner of the subject's right eye. Photometric transforms touch pixels only.

A rotated box's axis-aligned hull (albumentations' ``largest_box``) is larger than the region it boxed.
Where a rotation was applied (:attr:`Augmented.rotated`) and the sample has 68 landmarks, its AU boxes are
therefore recomputed from the transformed landmarks (:func:`landmark_au_boxes`) with the function that
made them, so they stay anatomical.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import numpy as np

from tagfer.core.regions import au_boxes

Box = tuple[float, float, float, float]

#: iBUG-68 index permutation under a left-right mirror: ``mirrored[i] = landmarks[FLIP_68[i]]``.
FLIP_68: np.ndarray = np.array(
    list(range(16, -1, -1))  # jaw 0..16 reversed
    + list(range(26, 16, -1))  # brows 17..21 <-> 26..22
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nose base
    + [45, 44, 43, 42, 47, 46]  # right eye (36..41) <-> left eye (42..47)
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lip
)


@dataclass
class Augmented:
    """The transformed sample: image ``[H, W, 3]`` uint8 and coordinates in its pixels; whether it was
    mirrored and whether it was rotated (an affine with a non-zero angle)."""

    image: np.ndarray
    boxes: dict[str, Box]
    landmarks: np.ndarray | None
    flipped: bool
    rotated: bool


def build_augmentation(cfg, seed: int | None = None, *, geometric: bool = True) -> A.Compose:
    """The training pipeline from :class:`tagfer.core.config.AugmentConfig`, seeded with :func:`reseed`.

    ``geometric=False`` keeps only the photometric part (for samples whose coordinates cannot follow).
    """
    transforms = []
    if geometric:
        transforms += [
            A.HorizontalFlip(p=cfg.horizontal_flip),
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                rotate=(-cfg.max_rotate_deg, cfg.max_rotate_deg),
                border_mode=0,
                p=cfg.shift_scale_rotate,
            ),
        ]
    transforms.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=cfg.color_jitter))
    pipeline = A.Compose(
        transforms,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["box_keys"], clip=True, min_visibility=0.0),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
        save_applied_params=True,
    )
    reseed(pipeline, seed)
    return pipeline


def reseed(pipeline: A.Compose, seed: int | None) -> None:
    """Give ``pipeline`` and all its transforms ONE fresh random stream seeded with ``seed``.

    ``A.Compose(seed=s)`` (``set_random_seed``) seeds every transform with the same ``s`` separately,
    so their first draws coincide (flip, affine and colour jitter would fire together on a freshly
    seeded sample); ``set_random_state`` shares one numpy and one python generator instead. Called per
    sample with the seed its :class:`tagfer.data.sampling.SampleKey` carries.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def apply_augmentation(pipeline: A.Compose, image: np.ndarray, boxes: dict[str, Box], landmarks: np.ndarray | None) -> Augmented:
    """Run ``pipeline`` on an image with named boxes and optional ``[68, 2]`` landmarks.

    Boxes that leave the image entirely are dropped (albumentations' filter); the others are clipped.
    """
    keys = list(boxes)
    box_array = np.asarray([boxes[k] for k in keys], dtype=np.float32).reshape(-1, 4)
    keypoints = np.zeros((0, 2), np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
    out = pipeline(image=image, bboxes=box_array, box_keys=keys, keypoints=keypoints)
    flipped = any(name == "HorizontalFlip" for name, _ in out["applied_transforms"])
    rotated = any(name == "Affine" and params["rotate"] != 0 for name, params in out["applied_transforms"])
    new_landmarks = None
    if landmarks is not None:
        new_landmarks = np.asarray(out["keypoints"], dtype=np.float32).reshape(-1, 2)
        if flipped and len(new_landmarks) == 68:
            new_landmarks = new_landmarks[FLIP_68]
    new_boxes = {k: tuple(float(v) for v in b) for k, b in zip(out["box_keys"], np.asarray(out["bboxes"]))}
    return Augmented(image=out["image"], boxes=new_boxes, landmarks=new_landmarks, flipped=flipped, rotated=rotated)


def landmark_au_boxes(landmarks: np.ndarray | None, aus, image_size: tuple[int, int], box_mode: str) -> dict[str, Box] | None:
    """AU boxes of ``aus`` recomputed from transformed ``[68, 2]`` landmarks; None without 68 landmarks.

    ``au_boxes(landmarks, aus, image_size, box_mode)`` (:func:`tagfer.core.regions.au_boxes`, clipped to
    the ``(width, height)`` image) with ``box_mode`` the AU cache's (``au.box_mode``); a box left with no
    area inside the image (``x2 <= x1`` or ``y2 <= y1``) is dropped, as albumentations drops a box pushed
    out of the image.
    """
    if landmarks is None or np.shape(landmarks) != (68, 2):
        return None
    boxes = au_boxes(landmarks, aus, image_size, box_mode)
    return {au: b for au, b in boxes.items() if b[2] > b[0] and b[3] > b[1]}
