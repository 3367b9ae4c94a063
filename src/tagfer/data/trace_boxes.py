"""Move the boxes written inside a reasoning trace together with the image under augmentation.

Trace boxes are in the model family's coordinate space of the image they were written for. To augment
an SFT sample, its trace boxes are brought to image pixels, transformed with the image (same
albumentations call as the AU boxes), brought back to the model's space and written into the trace again
(:func:`tagfer.core.trace.render_trace`, which round-trips the parser exactly).

A template trace's step box is the union of its AUs' boxes (:mod:`tagfer.reasoning.template`); where the
AU boxes were recomputed from transformed landmarks, :func:`template_step_boxes` recomputes the step
boxes from them the same way instead of taking the rotated (inflated) hull of the old box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tagfer.core.regions import union_box
from tagfer.core.trace import Trace, parse_trace, render_trace
from tagfer.core.vocabulary import AU_REGION

Box = tuple[float, float, float, float]
#: ``(box, (width, height)) -> box``: a conversion between model space and pixels for an image of that size.
BoxConversion = Callable[[Box, tuple[int, int]], Box]


def _key(index: int) -> str:
    return f"__trace_{index}__"


def template_step_boxes(trace: str, au_box: dict[str, Box]) -> dict[str, Box | None]:
    """``{"__trace_<step>__": pixel box or None}`` for every boxed step of the template trace ``trace``.

    As :func:`tagfer.reasoning.template.build_template_trace` made it: the union of ``au_box`` over the
    step's AUs, or, for a step citing none, over every AU of its region that has a box
    (:func:`tagfer.reasoning.template.region_box`). None when none of them has a box (out of the image).
    """
    boxes = {}
    for i, step in enumerate(parse_trace(trace).steps):
        if step.box is None:
            continue
        aus = step.aus or tuple(au for au, region in AU_REGION.items() if region == step.region)
        found = [au_box[au] for au in aus if au in au_box]
        boxes[_key(i)] = union_box(found) if found else None
    return boxes


class TraceBoxMapper:
    """Converts a trace's boxes to pixels and back.

    Args:
        to_pixels: model space → pixels of an image of the given (width, height).
        to_model: pixels → model space.
    """

    def __init__(self, to_pixels: BoxConversion, to_model: BoxConversion):
        self.to_pixels = to_pixels
        self.to_model = to_model

    def boxes_in_pixels(self, trace: str, sample_id: str, image_shape) -> dict[str, Box]:
        """``{"__trace_<step>__": pixel box}`` for every step of ``trace`` that has a box.

        A trace that does not parse cleanly is a data error (traces are verified when built).
        """
        parsed = parse_trace(trace)
        if not parsed.valid:
            raise ValueError(f"trace of sample {sample_id!r} does not parse: {parsed.errors[:3]}")
        size = (int(image_shape[1]), int(image_shape[0]))
        return {_key(i): self.to_pixels(step.box, size) for i, step in enumerate(parsed.steps) if step.box is not None}

    def rewrite(self, trace: str, pixel_boxes: dict[str, Box | None], image_shape, sample_id: str = "?") -> str:
        """The same trace with each step's box replaced by ``pixel_boxes`` (converted to model space).

        A step whose box the augmentation pushed entirely out of the image (``None`` or missing) is left
        out: its region is no longer in the picture, so no box in the image grounds it (keeping the
        pre-augmentation coordinates would teach a box on whatever moved there). The conclusion keeps its
        AUs. A trace that would lose every step is an error naming the sample (the augmentation's ranges
        are then too wide for this face).
        """
        parsed = parse_trace(trace)
        size = (int(image_shape[1]), int(image_shape[0]))
        steps = []
        for i, step in enumerate(parsed.steps):
            if step.box is None:
                steps.append(step)
                continue
            box = pixel_boxes.get(_key(i))
            if box is not None:
                steps.append(replace(step, box=self.to_model(box, size)))
        if not steps:
            raise ValueError(f"the augmentation pushed every trace box of sample {sample_id!r} out of the image")
        content = Trace(
            global_analysis=parsed.global_analysis or "",
            steps=tuple(steps),
            conclusion_aus=parsed.conclusion_aus,
            label=parsed.answer,
        )
        return render_trace(content, think_tags=parsed.has_think)
