"""Draw predicted and detector AU boxes on a face image (TensorBoard, predict PNGs).

Predicted boxes (from the model's trace) are drawn in :data:`PREDICTED_COLOUR`, the detector's boxes of
the same AUs in :data:`DETECTOR_COLOUR`; each box is labelled with its AU names. All boxes are in the
pixels of the image being drawn on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PREDICTED_COLOUR = (255, 64, 64)  # red
DETECTOR_COLOUR = (64, 200, 255)  # cyan

Box = Sequence[float]


def draw_grounding(
    image: np.ndarray | Image.Image,
    predicted: Sequence[tuple[str, Box]],
    detector: Mapping[str, Box],
    *,
    caption: str | None = None,
    scale: int = 1,
) -> np.ndarray:
    """``image`` with boxes drawn; returns an ``[H·scale, W·scale, 3]`` uint8 array.

    Args:
        predicted: ``(label, box)`` pairs, e.g. one per trace step with the step's AUs as label.
        detector: AU → box of the detector (drawn under the predictions).
        caption: text written in the top-left corner (e.g. "pred: happiness / true: happiness").
        scale: integer upscaling before drawing, so labels stay legible on 112-px faces.
    """
    canvas = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    canvas = canvas.convert("RGB")
    if scale != 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for label, box in _merge_same_boxes(detector.items()):
        _box(draw, box, scale, DETECTOR_COLOUR, label, font, anchor="bottom")
    for label, box in predicted:
        _box(draw, box, scale, PREDICTED_COLOUR, label, font, anchor="top")
    if caption:
        draw.rectangle((0, 0, canvas.width, 12), fill=(0, 0, 0))
        draw.text((2, 0), caption, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _merge_same_boxes(items) -> list[tuple[str, Box]]:
    """Region-mode detectors give one box to several AUs: draw it once, labelled with all of them."""
    merged: dict[tuple, list[str]] = {}
    for au, box in items:
        merged.setdefault(tuple(round(float(v), 1) for v in box), []).append(au)
    return [("+".join(aus), box) for box, aus in merged.items()]


def _box(draw: ImageDraw.ImageDraw, box: Box, scale: int, colour, label: str, font, *, anchor: str) -> None:
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    draw.rectangle((x1, y1, x2, y2), outline=colour, width=max(1, scale // 2))
    y = y1 - 10 if anchor == "top" else y2
    draw.text((x1 + 1, max(0.0, y)), label, fill=colour, font=font)
