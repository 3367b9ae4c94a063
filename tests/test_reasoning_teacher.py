"""The teacher loop with scripted generators: format retries, label elimination and batching, counted exactly."""

from __future__ import annotations

import pytest

from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.reasoning.teacher import (
    FORMAT_FAILED,
    KEPT,
    LABEL_FAILED,
    TeacherOptions,
    TeacherSample,
    run_teacher,
)


def answer_trace(label: str, think: bool = False, arrow: str = "→") -> str:
    text = render_trace(
        Trace("A look.", (TraceStep("mouth", ("AU25",), "lips parted", (1.0, 2.0, 30.0, 40.0)),), ("AU25",), label), think_tags=think
    )
    return text.replace("→", arrow)


GARBAGE = "I think this person is happy."


class Scripted:
    """``generate`` that answers each sample id from its own script, recording every call."""

    def __init__(self, scripts: dict[str, list[str]]):
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls: list[list[str]] = []
        self.prompts: dict[str, list[str]] = {}

    def __call__(self, images, prompts):
        self.calls.append(list(images))
        for sample_id, prompt in zip(images, prompts):
            self.prompts.setdefault(sample_id, []).append(prompt)
        return [self.scripts[sample_id].pop(0) for sample_id in images]


def sample(sample_id: str, label: str) -> TeacherSample:
    # The image slot carries the id so the scripted generator knows whom it answers.
    return TeacherSample(sample_id, sample_id, label, {"AU25": 0.9, "AU12": 0.6}, {"AU25": (1, 2, 30, 40), "AU12": (5, 6, 20, 30)})


def outcomes(samples, generate, **options):
    return {o.sample.id: o for o in run_teacher(samples, generate, TeacherOptions(**options))}


def test_first_try_success_is_kept_and_canonicalised() -> None:
    generate = Scripted({"a": [answer_trace("surprise", arrow="->")]})
    result = outcomes([sample("a", "surprise")], generate)["a"]
    assert result.status == KEPT and result.attempts == 1
    assert result.format_failures == result.wrong_predictions == 0 and result.eliminated == []
    assert result.trace == answer_trace("surprise")  # "->" re-rendered as "→"
    assert parse_trace(result.trace).valid


def test_format_failures_are_regenerated_up_to_the_limit() -> None:
    generate = Scripted({"ok": [GARBAGE, GARBAGE, answer_trace("fear")], "bad": [GARBAGE] * 3})
    result = outcomes([sample("ok", "fear"), sample("bad", "fear")], generate, max_format_retries=2)
    assert (result["ok"].status, result["ok"].attempts, result["ok"].format_failures) == (KEPT, 3, 2)
    assert (result["bad"].status, result["bad"].attempts, result["bad"].format_failures) == (FORMAT_FAILED, 3, 3)
    assert result["bad"].trace is None and result["bad"].last_errors
    assert generate.prompts["ok"][0] == generate.prompts["ok"][1]  # same prompt after a format failure


def test_wrong_predictions_eliminate_labels_and_shrink_the_candidates() -> None:
    generate = Scripted({"a": [answer_trace("happiness"), answer_trace("fear"), answer_trace("sadness")]})
    result = outcomes([sample("a", "sadness")], generate, max_label_retries=3)["a"]
    assert (result.status, result.attempts, result.wrong_predictions) == (KEPT, 3, 2)
    assert result.eliminated == ["happiness", "fear"]
    first, second, third = generate.prompts["a"]
    assert "happiness" in first and "happiness" not in second.split("Detected")[0]
    assert "fear" in second.split("Detected")[0] and "fear" not in third.split("Detected")[0]
    assert result.provenance("t")["eliminated_labels"] == ["happiness", "fear"]


def test_label_retries_are_bounded_and_repeated_wrong_answers_count_once_as_elimination() -> None:
    generate = Scripted({"a": [answer_trace("anger")] * 3})
    result = outcomes([sample("a", "disgust")], generate, max_label_retries=2)["a"]
    assert (result.status, result.attempts, result.wrong_predictions) == (LABEL_FAILED, 3, 3)
    assert result.eliminated == ["anger"]  # already removed: not eliminated twice


def test_mixed_failures_are_counted_separately() -> None:
    script = [GARBAGE, answer_trace("anger"), GARBAGE, answer_trace("contempt"), answer_trace("disgust")]
    result = outcomes([sample("a", "disgust")], Scripted({"a": script}), max_format_retries=2, max_label_retries=2)["a"]
    assert (result.status, result.attempts, result.format_failures, result.wrong_predictions) == (KEPT, 5, 2, 2)
    assert result.eliminated == ["anger", "contempt"]


def test_zero_retries_gives_one_attempt() -> None:
    result = outcomes([sample("a", "fear")], Scripted({"a": [GARBAGE]}), max_format_retries=0)["a"]
    assert (result.status, result.attempts) == (FORMAT_FAILED, 1)


def test_think_tags_are_required_when_configured() -> None:
    generate = Scripted({"a": [answer_trace("fear"), answer_trace("fear", think=True)]})
    result = outcomes([sample("a", "fear")], generate, think_tags=True)["a"]
    assert (result.status, result.format_failures) == (KEPT, 1)
    assert result.trace.startswith("<think>")
    assert "<think>" in generate.prompts["a"][0]


def test_batches_are_filled_with_retries_first_then_new_samples() -> None:
    scripts = {
        "a": [GARBAGE, answer_trace("fear")],
        "b": [answer_trace("fear")],
        "c": [answer_trace("fear")],
        "d": [answer_trace("fear")],
    }
    generate = Scripted(scripts)
    results = list(run_teacher([sample(k, "fear") for k in "abcd"], generate, TeacherOptions(batch_size=2)))
    assert generate.calls == [["a", "b"], ["a", "c"], ["d"]]
    assert [r.sample.id for r in results] == ["b", "a", "c", "d"]  # streamed as settled
    assert all(r.status == KEPT for r in results)


def test_prompt_carries_the_top_k_evidence_and_convention() -> None:
    generate = Scripted({"a": [answer_trace("fear")]})
    outcomes([sample("a", "fear")], generate, convention="norm1000")
    prompt = generate.prompts["a"][0]
    assert "AU25 (lips part) 0.90 [1,2,30,40]" in prompt and "normalised to 0-1000" in prompt


def test_errors_unknown_label_and_wrong_completion_count() -> None:
    with pytest.raises(ValueError, match="not one of"):
        list(run_teacher([sample("a", "contempt")], Scripted({}), TeacherOptions(classes=("happiness", "fear"))))
    with pytest.raises(ValueError, match="completions"):
        list(run_teacher([sample("a", "fear")], lambda images, prompts: [], TeacherOptions()))
    with pytest.raises(ValueError):
        TeacherOptions(batch_size=0)


def test_tiny_model_as_teacher_counts_attempts_and_keeps_only_verified_traces(tiny_qwen2_vl_dir) -> None:
    import numpy as np

    from fixtures_models import tiny_model_cfg
    from tagfer.models.engine import hf_generator
    from tagfer.models.loader import load_vlm

    model, processor, _ = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)
    calls: list[int] = []
    tiny = hf_generator(model, processor, max_new_tokens=12, temperature=1.0)

    def generate(images, prompts):
        calls.append(len(prompts))
        return tiny(images, prompts)

    image = np.full((64, 80, 3), 128, dtype=np.uint8)
    samples = [TeacherSample(str(i), image, "happiness", {"AU12": 0.9}, {"AU12": (1, 2, 30, 40)}) for i in range(3)]
    options = TeacherOptions(teacher="tiny", max_format_retries=1, max_label_retries=1, batch_size=2)
    results = list(run_teacher(samples, generate, options))
    assert sorted(r.sample.id for r in results) == ["0", "1", "2"]
    assert sum(calls) == sum(r.attempts for r in results)  # every generated completion is accounted for
    for r in results:
        assert r.attempts == r.format_failures + r.wrong_predictions + (r.status == KEPT)
        assert r.attempts <= 1 + options.max_format_retries + options.max_label_retries
        if r.status == KEPT:
            assert parse_trace(r.trace).valid and parse_trace(r.trace).answer == "happiness"
        else:
            assert r.trace is None and r.status in (FORMAT_FAILED, LABEL_FAILED)
