"""The image size the model actually sees: the Qwen-VL image processor's resize, reproduced exactly.

Qwen-VL image processors resize every image so that both sides are multiples of
``factor = patch_size × merge_size`` (28 for Qwen2/2.5-VL, 32 for Qwen3-VL) and the pixel count lies in
``[min_pixels, max_pixels]``, keeping the aspect ratio as closely as possible. This module calls
transformers' own ``smart_resize`` with the processor's parameters, so the size here is the size behind
``image_grid_thw`` (``grid_w × patch_size``, ``grid_h × patch_size``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize


@dataclass(frozen=True)
class ResizeParams:
    """What the resize depends on: patch and merge sizes and the pixel-count bounds."""

    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @property
    def factor(self) -> int:
        """Both resized sides are multiples of this (one merged token covers factor × factor pixels)."""
        return self.patch_size * self.merge_size


def resize_params(source: Any) -> ResizeParams:
    """:class:`ResizeParams` of a processor, an image processor, a mapping or a ResizeParams.

    A processor contributes its ``image_processor``; an image processor its ``patch_size``,
    ``merge_size`` and ``size`` (``shortest_edge`` = min pixels, ``longest_edge`` = max pixels, as
    transformers stores them).
    """
    if isinstance(source, ResizeParams):
        return source
    if isinstance(source, Mapping):
        return ResizeParams(**{k: int(v) for k, v in source.items()})
    image_processor = getattr(source, "image_processor", source)
    size = getattr(image_processor, "size", None)
    if size is None or not hasattr(image_processor, "patch_size"):
        raise TypeError(
            f"{type(source).__name__} is not a Qwen-VL processor or image processor "
            "(expected patch_size, merge_size and size with shortest_edge/longest_edge)"
        )
    shortest = size["shortest_edge"] if isinstance(size, Mapping) else size.shortest_edge
    longest = size["longest_edge"] if isinstance(size, Mapping) else size.longest_edge
    return ResizeParams(
        patch_size=int(image_processor.patch_size),
        merge_size=int(image_processor.merge_size),
        min_pixels=int(shortest),
        max_pixels=int(longest),
    )


def model_input_size(orig_w: int, orig_h: int, processor_or_params: Any) -> tuple[int, int]:
    """``(width, height)`` of the resized model input for an ``orig_w × orig_h`` image.

    Equals ``(grid_w, grid_h) × patch_size`` of the ``image_grid_thw`` the processor returns.
    """
    if orig_w <= 0 or orig_h <= 0:
        raise ValueError(f"image size must be positive, got {orig_w}x{orig_h}")
    params = resize_params(processor_or_params)
    height, width = smart_resize(int(orig_h), int(orig_w), factor=params.factor, min_pixels=params.min_pixels, max_pixels=params.max_pixels)
    return int(width), int(height)


def num_image_tokens(input_size: tuple[int, int], processor_or_params: Any) -> int:
    """Image placeholder tokens in the prompt for a resized ``(width, height)``: ``(w/factor)·(h/factor)``."""
    params = resize_params(processor_or_params)
    width, height = input_size
    return (width // params.factor) * (height // params.factor)
