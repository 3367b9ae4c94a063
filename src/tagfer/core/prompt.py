"""Prompts: the task instruction the policy sees, and the teacher's instruction with Top-K AU evidence.

Both are plain strings; :mod:`tagfer.models.inputs` puts them into the model family's chat template
together with the image.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.vocabulary import AU_NAMES, REGIONS

SYSTEM_PROMPT = "You are an expert in facial expressions and the Facial Action Coding System."

#: How each box convention is described to the model (see :mod:`tagfer.models.boxes`).
CONVENTION_HINTS = {
    "norm1000": "coordinates normalised to 0-1000",
    "pixels": "pixel coordinates of the image",
}


def task_prompt(classes: Sequence[str] = CLASS_NAMES, convention: str = "pixels", *, think_tags: bool = False) -> str:
    """The instruction for the policy model (SFT, GRPO, evaluation, predict).

    It names the candidate classes, the trace grammar and the box convention, so a real checkpoint
    zero-shot and the fine-tuned model read the same request.
    """
    hint = CONVENTION_HINTS[convention]
    wrap = " Put the reasoning inside <think></think>." if think_tags else ""
    return (
        f"Classify the facial expression as one of: {', '.join(classes)}. "
        "Write 'Global analysis:', then 'Verification loop:' with one line per facial region "
        "'Inspect <region> (AUa, AUb) → <observation> → <bbox>[x1,y1,x2,y2]</bbox>' "
        f"({hint}; '(none)' for a region without active AUs), "
        "then 'Final conclusion: Combined AUa + AUb indicate a dominant emotion of <label>.' "
        "('Final conclusion: No active AUs indicate …' when no AU is active) "
        f"and '<answer> <label> </answer>'.{wrap}"
    )


def teacher_prompt(
    top_aus: dict[str, float],
    au_boxes: dict[str, Sequence[float]],
    candidates: Sequence[str],
    convention: str = "pixels",
    *,
    think_tags: bool = False,
) -> str:
    """The teacher VLM's instruction: the task plus the detector's Top-K AUs with probabilities and boxes.

    ``candidates`` shrinks as labels are eliminated after wrong predictions (TAG's "label elimination").
    Boxes must already be in the teacher's convention (integers).
    """
    evidence = "; ".join(
        f"{au} ({AU_NAMES.get(au, au)}) {p:.2f} [{','.join(str(int(round(v))) for v in au_boxes[au])}]"
        for au, p in top_aus.items()
        if au in au_boxes
    )
    regions = ", ".join(REGIONS)
    return (
        task_prompt(candidates, convention, think_tags=think_tags)
        + f" Detected action units (name, probability, box): {evidence or 'none'}."
        + f" Use only these region names: {regions}. Cite the detected AUs and their boxes."
    )
