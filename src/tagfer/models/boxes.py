"""Box coordinate conventions of the model families, and conversions from/to original-image pixels.

* Qwen2-VL and Qwen3-VL: ``"norm1000"`` — integers 0–1000 relative to the image width and height.
* Qwen2.5-VL: ``"pixels"`` — absolute pixels of the *resized* model input
  (:func:`tagfer.models.resize.model_input_size`, i.e. ``image_grid_thw × patch_size``).

Every conversion is a per-axis scale: with the coordinate extent ``(W, H)`` of the convention
(:func:`coordinate_extent`) and the original image size ``(w, h)``,

    model = pixel · (W / w, H / h, W / w, H / h)        pixel = model · (w / W, h / H, w / W, h / H)

for a box ``(x1, y1, x2, y2)``. Detector boxes (AU cache, original pixels) and predicted boxes meet in
one space through these two functions. Coordinates stay floats; the trace renderer rounds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

Box = tuple[float, float, float, float]
Size = tuple[int, int]  # (width, height)

CONVENTIONS: tuple[str, ...] = ("norm1000", "pixels")
NORM_EXTENT = 1000

#: Each family's box convention (the strings of :mod:`tagfer.core.prompt`).
FAMILY_CONVENTION: dict[str, str] = {"qwen2_vl": "norm1000", "qwen2_5_vl": "pixels", "qwen3_vl": "norm1000"}


def box_convention(family: str) -> str:
    """The box convention of a model family (``"qwen2_5_vl"`` → ``"pixels"``)."""
    if family not in FAMILY_CONVENTION:
        raise ValueError(f"unknown model family {family!r}; expected one of {list(FAMILY_CONVENTION)}")
    return FAMILY_CONVENTION[family]


def coordinate_extent(convention: str, input_size: Size) -> Size:
    """``(W, H)``: the coordinate range of the convention — ``(1000, 1000)`` for norm1000, the resized
    model input ``input_size`` for pixels."""
    if convention == "norm1000":
        return (NORM_EXTENT, NORM_EXTENT)
    if convention == "pixels":
        return (int(input_size[0]), int(input_size[1]))
    raise ValueError(f"unknown box convention {convention!r}; expected one of {list(CONVENTIONS)}")


def box_scale(orig_size: Size, input_size: Size, convention: str) -> tuple[float, float]:
    """``(sx, sy) = (W / w, H / h)``: original pixels → model space (see the module docstring)."""
    w, h = orig_size
    if w <= 0 or h <= 0:
        raise ValueError(f"original image size must be positive, got {w}x{h}")
    extent_w, extent_h = coordinate_extent(convention, input_size)
    return extent_w / w, extent_h / h


def _scaled(boxes: Any, sx: float, sy: float, limit: tuple[float, float] | None) -> Any:
    """``boxes[..., 4] · (sx, sy, sx, sy)``, optionally clipped to ``[0, limit_x] × [0, limit_y]``.

    Keeps the array type: a torch tensor stays on its device and dtype (float), anything else
    becomes a float64 numpy array.
    """
    if isinstance(boxes, torch.Tensor):
        boxes = boxes if boxes.is_floating_point() else boxes.float()
        out = boxes * boxes.new_tensor([sx, sy, sx, sy])
        if limit is not None:
            out = torch.minimum(out.clamp(min=0), out.new_tensor([limit[0], limit[1], limit[0], limit[1]]))
        return out
    array = np.asarray(boxes, dtype=np.float64)
    if array.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape [..., 4] (x1, y1, x2, y2), got {array.shape}")
    out = array * np.array([sx, sy, sx, sy])
    if limit is not None:
        out = np.clip(out, 0.0, [limit[0], limit[1], limit[0], limit[1]])
    return out


def to_model_space_array(boxes: Any, orig_size: Size, input_size: Size, convention: str, *, clip: bool = True) -> Any:
    """Vectorised :func:`to_model_space`: ``boxes`` of shape ``[..., 4]`` (numpy or torch) in original pixels.

    With ``clip`` the result is clipped to the coordinate extent ``[0, W] × [0, H]``.
    """
    sx, sy = box_scale(orig_size, input_size, convention)
    return _scaled(boxes, sx, sy, coordinate_extent(convention, input_size) if clip else None)


def from_model_space_array(boxes: Any, orig_size: Size, input_size: Size, convention: str, *, clip: bool = True) -> Any:
    """Vectorised :func:`from_model_space`: ``[..., 4]`` model-space boxes → original pixels (clipped to the image)."""
    sx, sy = box_scale(orig_size, input_size, convention)
    return _scaled(boxes, 1.0 / sx, 1.0 / sy, tuple(orig_size) if clip else None)


def to_model_space(box: Sequence[float], orig_size: Size, input_size: Size, convention: str, *, clip: bool = True) -> Box:
    """One box from original-image pixels to the convention's space.

    Args:
        box: ``(x1, y1, x2, y2)`` in pixels of the original ``orig_size = (w, h)`` image.
        input_size: ``(width, height)`` of the resized model input (:func:`tagfer.models.resize.model_input_size`).
        convention: ``"norm1000"`` or ``"pixels"``.
        clip: clip to ``[0, W] × [0, H]`` (detector boxes may reach past the image border).
    """
    return tuple(float(v) for v in to_model_space_array(box, orig_size, input_size, convention, clip=clip))


def from_model_space(box: Sequence[float], orig_size: Size, input_size: Size, convention: str, *, clip: bool = True) -> Box:
    """The inverse of :func:`to_model_space`: a model-space box → original-image pixels."""
    return tuple(float(v) for v in from_model_space_array(box, orig_size, input_size, convention, clip=clip))
