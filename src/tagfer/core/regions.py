"""AU region boxes from 68 facial landmarks (pure functions on numpy arrays).

Landmarks are the iBUG-68 / dlib points, 0-based, as a ``[68, 2]`` float array of ``(x, y)`` pixels
(x right, y down). Boxes are ``(x1, y1, x2, y2)`` pixels of the same image, clipped to
``[0, width] × [0, height]``.

Two box modes:

``box_mode="au"`` — one box per AU, after EAC-Net (Li et al., 2017) and JAA-Net (Shao et al., 2018).
    ``ruler = ‖p39 − p42‖`` (inner eye corners). Each AU has centres: listed landmarks moved vertically
    by an offset (a multiple of ``ruler``, negative = up). Its box is the union of squares of side
    ``ruler`` around the centres:
    ``(min cx − ruler/2, min cy − ruler/2, max cx + ruler/2, max cy + ruler/2)``.

    ====== ===================== =============== ==========================================
    AU     centres               vertical offset source
    ====== ===================== =============== ==========================================
    AU1    21, 22                −ruler/2        EAC-Net / JAA-Net
    AU2    18, 25                −ruler/3        EAC-Net / JAA-Net
    AU4    19, 24                +ruler/3        EAC-Net / JAA-Net
    AU5    37, 44                0               ours (upper lids; not in the EAC-Net table)
    AU6    41, 46                +ruler          EAC-Net / JAA-Net
    AU7    38, 43                0               EAC-Net / JAA-Net
    AU9    32, 34                −ruler/2        JAA-Net (DISFA)
    AU10   61, 63                0               JAA-Net (EAC-Net uses 49, 53)
    AU12   48, 54                0               EAC-Net
    AU14   48, 54                0               EAC-Net
    AU15   48, 54                0               EAC-Net
    AU16   56, 58                0               ours (lower lip; not in the EAC-Net table)
    AU17   56, 58                +ruler/2        EAC-Net
    AU20   48, 54 and both moved 0               EAC-Net ("widened outward"): the corners
           outward by ruler/2                    plus points ruler/2 further out in x
    AU23   51, 57                0               JAA-Net (EAC-Net uses 61, 63)
    AU24   51, 57                0               JAA-Net (EAC-Net uses 61, 63)
    AU25   51, 57                0               EAC-Net
    AU26   56, 58                +ruler/2        EAC-Net
    ====== ===================== =============== ==========================================

``box_mode="region"`` — every AU of one facial region (:data:`tagfer.core.vocabulary.AU_REGION`) shares
    one template box, as in TAG's figure. A template is the bounding box of a landmark group, padded by
    multiples of ``ruler`` (left, top, right, bottom) — see :data:`REGION_TEMPLATES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagfer.core.vocabulary import AU_REGION

Box = tuple[float, float, float, float]

#: AU → (landmark indices, vertical offset in rulers). Negative offsets move up.
AU_CENTRES: dict[str, tuple[tuple[int, ...], float]] = {
    "AU1": ((21, 22), -1 / 2),
    "AU2": ((18, 25), -1 / 3),
    "AU4": ((19, 24), 1 / 3),
    "AU5": ((37, 44), 0.0),
    "AU6": ((41, 46), 1.0),
    "AU7": ((38, 43), 0.0),
    "AU9": ((32, 34), -1 / 2),
    "AU10": ((61, 63), 0.0),
    "AU12": ((48, 54), 0.0),
    "AU14": ((48, 54), 0.0),
    "AU15": ((48, 54), 0.0),
    "AU16": ((56, 58), 0.0),
    "AU17": ((56, 58), 1 / 2),
    "AU20": ((48, 54), 0.0),
    "AU23": ((51, 57), 0.0),
    "AU24": ((51, 57), 0.0),
    "AU25": ((51, 57), 0.0),
    "AU26": ((56, 58), 1 / 2),
}

#: AU20 (lip stretcher) also covers the cheek beside each mouth corner: ruler/2 further out in x.
AU20_WIDEN = 1 / 2


@dataclass(frozen=True)
class RegionTemplate:
    """A region box: the bounding box of ``points`` padded by ``pad`` = (left, top, right, bottom) rulers."""

    points: tuple[int, ...]
    pad: tuple[float, float, float, float]


#: One template per region of :data:`tagfer.core.vocabulary.REGIONS` (tests check the key sets agree).
REGION_TEMPLATES: dict[str, RegionTemplate] = {
    # inner brow halves + nose root; room above for AU1 raising, below for AU4 knitting
    "inner brow": RegionTemplate((19, 20, 21, 22, 23, 24, 27), (1 / 4, 1 / 2, 1 / 4, 1 / 4)),
    # outer brow halves; room above for AU2
    "outer brow": RegionTemplate((17, 18, 19, 24, 25, 26), (1 / 4, 1 / 2, 1 / 4, 1 / 4)),
    # both eyes with their lids
    "eye region": RegionTemplate(tuple(range(36, 48)), (1 / 4, 1 / 3, 1 / 4, 1 / 3)),
    # from the lower lids down to the nose wings, jaw-side points 1/15 bound the width
    "cheeks": RegionTemplate((1, 15, 40, 41, 46, 47, 31, 35), (0.0, 1 / 6, 0.0, 1 / 6)),
    # nose bridge to nostrils
    "nose": RegionTemplate(tuple(range(27, 36)), (1 / 4, 0.0, 1 / 4, 1 / 6)),
    # nostril base to the upper lip
    "upper lip": RegionTemplate((31, 32, 33, 34, 35, 48, 49, 50, 51, 52, 53, 54, 61, 62, 63), (1 / 6, 1 / 6, 1 / 6, 1 / 6)),
    # both mouth corners with the cheek beside them
    "lip corners": RegionTemplate((48, 54, 49, 53, 55, 59, 60, 64), (1 / 2, 1 / 3, 1 / 2, 1 / 3)),
    # the whole mouth, outer and inner lips
    "mouth": RegionTemplate(tuple(range(48, 68)), (1 / 4, 1 / 4, 1 / 4, 1 / 4)),
    # lower lip to the chin tip
    "chin": RegionTemplate((56, 57, 58, 7, 8, 9), (1 / 4, 0.0, 1 / 4, 1 / 6)),
}


def check_landmarks(landmarks) -> np.ndarray:
    """``landmarks`` as a float64 ``[68, 2]`` array; raises ``ValueError`` on another shape or non-finite values."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks as a [68, 2] array, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
    return points


def ruler(landmarks) -> float:
    """EAC-Net's scale: the distance between the inner eye corners, ``‖p39 − p42‖`` (pixels)."""
    points = check_landmarks(landmarks)
    return float(np.linalg.norm(points[39] - points[42]))


def clip_box(box, width: float, height: float) -> Box:
    """``box`` clipped to ``[0, width] × [0, height]`` (a box fully outside collapses onto the border)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def union_box(boxes: list[Box]) -> Box:
    """The smallest box containing every box of ``boxes`` (non-empty)."""
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def scale_box(box, sx: float, sy: float) -> Box:
    """``(x1·sx, y1·sy, x2·sx, y2·sy)``: ``box`` in the pixels of an image resized by ``(sx, sy)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def au_centres(landmarks, au: str) -> np.ndarray:
    """The ``[k, 2]`` centres of ``au`` (table above): landmark points shifted by ``offset · ruler`` in y."""
    if au not in AU_CENTRES:
        raise KeyError(f"no EAC-Net/JAA-Net centres for {au!r}; known: {', '.join(AU_CENTRES)}")
    points = check_landmarks(landmarks)
    indices, offset = AU_CENTRES[au]
    scale = ruler(points)
    centres = points[list(indices)] + np.array([0.0, offset * scale])
    if au == "AU20":
        outward = np.array([[-AU20_WIDEN * scale, 0.0], [AU20_WIDEN * scale, 0.0]])
        centres = np.concatenate([centres, centres + outward])
    return centres


def au_box(landmarks, au: str, image_size: tuple[int, int]) -> Box:
    """Box of ``au`` in ``box_mode="au"``: union of squares of side ``ruler`` around its centres, clipped.

    ``image_size`` is ``(width, height)``.
    """
    centres = au_centres(landmarks, au)
    half = ruler(landmarks) / 2
    x1, y1 = centres.min(axis=0) - half
    x2, y2 = centres.max(axis=0) + half
    return clip_box((x1, y1, x2, y2), *image_size)


def region_box(landmarks, region: str, image_size: tuple[int, int]) -> Box:
    """Template box of ``region``: bbox of its landmark group padded by (left, top, right, bottom)·ruler, clipped."""
    if region not in REGION_TEMPLATES:
        raise KeyError(f"unknown region {region!r}; known: {', '.join(REGION_TEMPLATES)}")
    points = check_landmarks(landmarks)
    template = REGION_TEMPLATES[region]
    group = points[list(template.points)]
    scale = ruler(points)
    left, top, right, bottom = (p * scale for p in template.pad)
    x1, y1 = group.min(axis=0)
    x2, y2 = group.max(axis=0)
    return clip_box((x1 - left, y1 - top, x2 + right, y2 + bottom), *image_size)


def au_boxes(landmarks, aus, image_size: tuple[int, int], box_mode: str = "region") -> dict[str, Box]:
    """Boxes for ``aus`` in ``box_mode`` ("region": the AU's region template; "au": its own box).

    AUs without a known region / centres are left out (e.g. AU45 from OpenFace).
    """
    if box_mode == "au":
        return {au: au_box(landmarks, au, image_size) for au in aus if au in AU_CENTRES}
    if box_mode == "region":
        cache: dict[str, Box] = {}
        boxes = {}
        for au in aus:
            region = AU_REGION.get(au)
            if region is None:
                continue
            if region not in cache:
                cache[region] = region_box(landmarks, region, image_size)
            boxes[au] = cache[region]
        return boxes
    raise ValueError(f"box_mode={box_mode!r}; expected 'region' or 'au'")


def landmarks_box(landmarks) -> Box:
    """The tight bounding box ``(min x, min y, max x, max y)`` of the 68 points (a face box fallback)."""
    points = check_landmarks(landmarks)
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return (float(x1), float(y1), float(x2), float(y2))
