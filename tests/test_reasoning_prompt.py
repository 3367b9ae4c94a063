"""Prompts: the task instruction states the whole grammar; the teacher's adds the Top-K evidence."""

from __future__ import annotations

from tagfer.core.prompt import task_prompt, teacher_prompt
from tagfer.core.vocabulary import REGIONS


def test_task_prompt_names_classes_convention_and_every_grammar_form() -> None:
    prompt = task_prompt(("happiness", "fear"), "norm1000", think_tags=True)
    assert "one of: happiness, fear." in prompt and "normalised to 0-1000" in prompt
    for form in (
        "Global analysis:",
        "Verification loop:",
        "Inspect <region> (AUa, AUb)",
        "(none)",
        "<bbox>[x1,y1,x2,y2]</bbox>",
        "Combined AUa + AUb indicate a dominant emotion of",
        "No active AUs indicate",
        "<answer> <label> </answer>",
        "<think>",
    ):
        assert form in prompt
    assert "<think>" not in task_prompt(convention="pixels") and "pixel coordinates" in task_prompt(convention="pixels")


def test_teacher_prompt_lists_evidence_with_integer_boxes_and_the_remaining_candidates() -> None:
    prompt = teacher_prompt(
        {"AU12": 0.914, "AU6": 0.5, "AU9": 0.7}, {"AU12": (10.4, 20.6, 30, 40), "AU6": (1, 2, 3, 4)}, ("happiness", "sadness")
    )
    assert "AU12 (lip corner puller) 0.91 [10,21,30,40]; AU6 (cheek raiser) 0.50 [1,2,3,4]." in prompt
    assert "AU9" not in prompt  # no box: not offered
    assert "one of: happiness, sadness." in prompt and all(region in prompt for region in REGIONS)
    assert "Detected action units (name, probability, box): none." in teacher_prompt({}, {}, ("neutral",))
