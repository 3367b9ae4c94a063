"""``au_grounding``: do the boxes the trace cites match the AU detector's boxes?"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torchvision.ops import box_iou, clip_boxes_to_image

from tagfer.reasoning.trace import Box, parse_trace
from tagfer.training.rewards.au_sets import active_aus
from tagfer.training.rewards.base import RewardCallback
from tagfer.training.rewards.params import choice, number, positive_int

NORMALIZATIONS = ("cited", "max")


def parse_extent(value: object) -> tuple[float, float]:
    """``(W, H)``: two positive finite numbers, or a ValueError saying what arrived."""
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)
    ):
        return float(value[0]), float(value[1])
    raise ValueError(f"batch['image_extent'] entry {value!r} is not (W, H) with two positive numbers")


def reference_box(au: str, box: object) -> Box:
    """A detector box: 4 finite numbers ``(x1, y1, x2, y2)``, or a ValueError naming the AU."""
    if isinstance(box, Sequence) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box
    ):
        return tuple(float(v) for v in box)
    raise ValueError(f"batch['au_box'][{au!r}] = {box!r} is not (x1, y1, x2, y2) with 4 finite numbers")


def matched_ious(
    pairs: Sequence[tuple[str, Box]], reference: Mapping[str, Box], extent: tuple[float, float]
) -> dict[str, float]:
    """One-to-one matching of cited ``(AU, box)`` pairs to the reference box of the same AU.

    Boxes are clipped to ``[0, W] × [0, H]`` first (a box outside the image becomes empty and has
    IoU 0); IoU is :func:`torchvision.ops.box_iou` (0 where both boxes are empty). Each reference AU
    is matched to at most one cited pair, the one with the highest IoU; pairs naming an AU outside
    ``reference`` match nothing. Returns ``{AU: IoU}`` for the matched reference AUs.
    """
    candidates = [(index, au) for index, (au, _) in enumerate(pairs) if au in reference]
    if not candidates:
        return {}
    width, height = extent
    ref_aus = list(reference)
    cited = clip_boxes_to_image(torch.tensor([box for _, box in pairs], dtype=torch.float64), (height, width))
    refs = clip_boxes_to_image(torch.tensor([reference[au] for au in ref_aus], dtype=torch.float64), (height, width))
    iou = torch.nan_to_num(box_iou(cited, refs), nan=0.0)
    column = {au: j for j, au in enumerate(ref_aus)}
    best: dict[str, float] = {}
    for index, au in candidates:
        best[au] = max(best.get(au, 0.0), float(iou[index, column[au]]))
    return best


class AUGroundingReward(RewardCallback):
    """IoU of the cited AU boxes with the detector's boxes for the same AUs (TAG's AU-grounding reward).

    Reference set ``R``: AUs with ``au_prob ≥ threshold`` (the ``top_k`` strongest when set) that have
    a box in ``au_box``. Cited items: every ``(AU, box)`` pair of a step (one per AU the step names;
    repeats count again), plus every AU named in a step or the conclusion without any valid box.
    ``IoU_a`` is the one-to-one matched IoU of :func:`matched_ious` (cited-but-inactive AUs,
    duplicates beyond the best and unboxed AUs score 0)::

        precision = Σ_a IoU_a / n_cited                       (normalize: cited, default)
                  = Σ_a IoU_a / max(n_cited, |R|)             (normalize: max, Visual-RFT style)
        recall    = Σ_a IoU_a / |R|                            (0 when R is empty)
        reward    = (1 − recall_weight) · precision + recall_weight · recall

    Special cases: no step that parses → 0; nothing cited → 1 when ``R`` is empty (a face with no
    active AU, correctly grounded with ``(none)`` steps), else 0. Adding a cited item that does not
    improve a match (a copy, an inactive AU, a box without AU support) never raises the reward.

    Params: ``threshold`` (default 0.5), ``recall_weight`` in [0, 1] (default 0), ``normalize``
    (``cited`` | ``max``), ``top_k`` (null: every active AU). Needs ``au_prob``, ``au_box`` (model
    coordinate space) and ``image_extent``. Range: [0, 1].
    """

    name = "au_grounding"
    value_range = (0.0, 1.0)
    required_keys = ("au_prob", "au_box", "image_extent")

    def __init__(
        self,
        weight: float = 1.0,
        *,
        threshold: float = 0.5,
        recall_weight: float = 0.0,
        normalize: str = "cited",
        top_k: int | None = None,
    ) -> None:
        super().__init__(weight)
        self.threshold = number(self.name, "threshold", threshold, 0.0, 1.0)
        self.recall_weight = number(self.name, "recall_weight", recall_weight, 0.0, 1.0)
        self.normalize = choice(self.name, "normalize", normalize, NORMALIZATIONS)
        self.top_k = positive_int(self.name, "top_k", top_k, optional=True)

    def score(self, completion: str, au_prob: Mapping[str, float], au_box: Mapping[str, Box], image_extent) -> float:
        extent = parse_extent(image_extent)
        parsed = parse_trace(completion)
        if not any(step.region for step in parsed.steps):
            return 0.0
        reference = {
            au: reference_box(au, au_box[au]) for au in active_aus(au_prob, self.threshold, self.top_k) if au in au_box
        }
        pairs = parsed.cited_boxes()
        boxed = {au for au, _ in pairs}
        n_cited = len(pairs) + sum(1 for au in parsed.cited_aus() if au not in boxed)
        if n_cited == 0:
            return 0.0 if reference else 1.0
        total = sum(matched_ious(pairs, reference, extent).values())
        precision = total / (n_cited if self.normalize == "cited" else max(n_cited, len(reference)))
        recall = total / len(reference) if reference else 0.0
        return (1.0 - self.recall_weight) * precision + self.recall_weight * recall
