"""``ModelSpace``: where a model's boxes live — its family's convention after its processor's resize."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tagfer.models.boxes import Box, Size, box_convention, from_model_space, to_model_space
from tagfer.models.resize import model_input_size


@dataclass(frozen=True)
class ModelSpace:
    """Box conversions between original-image pixels and a model's coordinate space.

    ``resize`` is a processor, an image processor or :class:`tagfer.models.resize.ResizeParams`; the
    model input size of an image follows from it (:func:`tagfer.models.resize.model_input_size`).
    """

    convention: str
    resize: Any

    @classmethod
    def of(cls, processor: Any, family: str) -> ModelSpace:
        """The space of a loaded processor of ``family``."""
        return cls(box_convention(family), processor)

    def input_size(self, orig_size: Size) -> Size:
        return model_input_size(orig_size[0], orig_size[1], self.resize)

    def to_model(self, box: Box, orig_size: Size) -> Box:
        return to_model_space(box, orig_size, self.input_size(orig_size), self.convention)

    def to_pixels(self, box: Box, orig_size: Size) -> Box:
        return from_model_space(box, orig_size, self.input_size(orig_size), self.convention)
