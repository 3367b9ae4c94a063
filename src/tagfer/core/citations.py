"""What counts as a grounded citation: the one definition the AU-grounding reward and the faithfulness metric share.

A trace *cites* the distinct AUs it names in its steps or its conclusion
(:meth:`tagfer.core.trace.ParsedTrace.cited_aus`). Against a *reference* — the AUs the detector
finds active, each with its box ``(x1, y1, x2, y2)`` in the completion's coordinate space — each cited
AU ``a`` scores::

    g(a) = IoU(first box the trace gives a, reference[a])   when a is in the reference and the trace boxes it
    g(a) = 0                                                 otherwise: an inactive AU, an AU without a valid
                                                             box, a reference box without area

* **First box**: a trace's claim about an AU is the first step that boxes it. Repeating the AU in more
  steps, with better or worse boxes, changes nothing (a best-of-many rule would pay for spraying boxes).
* **As written**: boxes are not clipped to the image; a box reaching outside it has a larger union,
  hence a lower IoU.
* IoU is :func:`torchvision.ops.box_iou` in float64; a non-finite result (overflowing coordinates) is 0.

The reward (:class:`tagfer.training.rewards.grounding.AUGroundingReward`) sums ``g`` into its precision,
recall or F1; the metric (:mod:`tagfer.metrics.grounding`) sums it into ``mean_iou`` and calls a
citation with ``g(a) < iou_threshold`` a hallucination.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torchvision.ops import box_iou

from tagfer.core.trace import Box, ParsedTrace


def first_boxes(parsed: ParsedTrace) -> dict[str, Box]:
    """``{AU: the box of the first step that names the AU with a valid box}``."""
    boxes: dict[str, Box] = {}
    for au, box in parsed.cited_boxes():
        boxes.setdefault(au, box)
    return boxes


def citation_ious(parsed: ParsedTrace, reference: Mapping[str, Box]) -> dict[str, float]:
    """``{a: g(a)}`` for every distinct AU the trace cites, first mention first (module docstring).

    Args:
        parsed: a parsed completion.
        reference: the active AUs, each with its detector box (4 finite numbers, same space as the trace).

    Returns:
        one entry per cited AU, values in ``[0, 1]``.
    """
    scores = dict.fromkeys(parsed.cited_aus(), 0.0)
    boxes = first_boxes(parsed)
    matched = [au for au in scores if au in boxes and au in reference]
    if matched:
        cited = torch.tensor([boxes[au] for au in matched], dtype=torch.float64)
        refs = torch.tensor([tuple(reference[au]) for au in matched], dtype=torch.float64)
        has_area = (refs[:, 2] > refs[:, 0]) & (refs[:, 3] > refs[:, 1])
        ious = torch.nan_to_num(box_iou(cited, refs).diagonal(), nan=0.0, posinf=0.0, neginf=0.0)
        ious = torch.where(has_area, ious, torch.zeros_like(ious)).clamp(0.0, 1.0)
        scores.update(zip(matched, ious.tolist()))
    return scores
