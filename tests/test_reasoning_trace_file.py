"""The trace JSONL: durable appends, resume after a killed write, strict reading with file:line errors."""

from __future__ import annotations

import json

import pytest

from tagfer.core.trace import Trace, TraceStep, render_trace
from tagfer.data.trace_file import (
    TraceFileError,
    TraceWriter,
    read_traces,
    rejected_path,
    validate_rejected_record,
)


def record(sample_id: str, label: str = "happiness", **changes) -> dict:
    trace = render_trace(
        Trace("Smiling.", (TraceStep("lip corners", ("AU12",), "lip corners pulled up", (3.0, 4.0, 50.0, 60.0)),), ("AU12",), label)
    )
    data = {
        "id": sample_id,
        "dataset": "synthetic",
        "split": "train",
        "label": label,
        "trace": trace,
        "source": "template",
        "convention": "norm1000",
        "input_size": [112, 112],
        "orig_size": [112, 112],
        "think_tags": False,
        "provenance": {"cited": {"AU12": 0.9}},
    }
    data.update(changes)
    return data


def test_write_then_read_back(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        writer.write(record("a"))
        writer.write(record("b", label="happiness"))
    traces = read_traces(path)
    assert list(traces) == ["a", "b"] and traces["a"] == record("a")
    assert path.read_text().count("\n") == 2


def test_resume_skips_written_ids_and_drops_a_truncated_last_line(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as writer:
        writer.write(record("a"))
        writer.write(record("b"))
    full = path.read_bytes()
    line_c = (json.dumps(record("c"), ensure_ascii=False) + "\n").encode()
    path.write_bytes(full + line_c[: len(line_c) // 2])  # killed in the middle of writing "c"
    with pytest.raises(TraceFileError, match=r"t\.jsonl:3: truncated last line"):
        read_traces(path)
    with TraceWriter(path) as writer:
        assert writer.ids == {"a", "b"} and writer.dropped_truncated
        writer.write(record("c"))
    assert list(read_traces(path)) == ["a", "b", "c"]
    assert path.read_bytes() == full + line_c


def test_a_complete_json_line_without_newline_is_also_redone(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record("a")))  # killed right before the newline
    with TraceWriter(path) as writer:
        assert writer.ids == set() and writer.dropped_truncated
    assert path.read_bytes() == b""


def test_writer_refuses_duplicates_and_invalid_records(tmp_path) -> None:
    with TraceWriter(tmp_path / "t.jsonl") as writer:
        writer.write(record("a"))
        with pytest.raises(TraceFileError, match="already written"):
            writer.write(record("a"))
        with pytest.raises(TraceFileError, match="answers 'happiness', label is 'fear'"):
            writer.write(record("b", label="fear", trace=record("b")["trace"]))
    assert list(read_traces(tmp_path / "t.jsonl")) == ["a"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "t.jsonl:2: not a JSON line"),
        ("[1, 2]", "t.jsonl:2: expected a JSON object"),
        (json.dumps({k: v for k, v in record("x").items() if k != "trace"}), "t.jsonl:2: missing field 'trace'"),
        (json.dumps(record("x", label="joy")), "t.jsonl:2: label 'joy' is not one of"),
        (json.dumps(record("x", source="gpt")), "t.jsonl:2: source 'gpt'"),
        (json.dumps(record("x", convention="norm1")), "t.jsonl:2: convention 'norm1'"),
        (json.dumps(record("x", input_size=[112])), "t.jsonl:2: field 'input_size'"),
        (json.dumps(record("x", orig_size=[0, 5])), "t.jsonl:2: field 'orig_size'"),
        (json.dumps(record("x", think_tags="no")), "t.jsonl:2: field 'think_tags' is str, expected bool"),
        (json.dumps(record("x", trace="<answer> happiness </answer>")), "t.jsonl:2: trace of 'x' does not parse"),
        (json.dumps(record("x", think_tags=True)), "t.jsonl:2: trace of 'x' does not parse"),
        (json.dumps(record("a")), "t.jsonl:2: id 'a' appears twice"),
    ],
)
def test_reader_names_file_and_line(tmp_path, line, message) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + line + "\n" + json.dumps(record("z")) + "\n")
    with pytest.raises(TraceFileError, match=message.replace("[", r"\[").replace("(", r"\(")):
        read_traces(path)
    with pytest.raises(TraceFileError):
        TraceWriter(path)  # a bad line in the middle is not silently resumed over


def test_reader_skips_blank_lines_and_reports_missing_files(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(record("a")) + "\n\n")
    assert list(read_traces(path)) == ["a"]
    with pytest.raises(FileNotFoundError, match="tagfer traces build"):
        read_traces(tmp_path / "missing.jsonl")


def test_rejected_sidecar(tmp_path) -> None:
    path = rejected_path(tmp_path / "t.jsonl")
    assert path.name == "t.rejected.jsonl"
    entry = {"id": "a", "dataset": "synthetic", "label": "fear", "source": "teacher", "reason": "format_failed", "provenance": {}}
    with TraceWriter(path, validate=validate_rejected_record) as writer:
        writer.write(entry)
    with TraceWriter(path, validate=validate_rejected_record) as writer:
        assert writer.records == [entry]


def test_crop_box_is_optional_and_checked() -> None:
    """``crop_box``: absent or null (whole image; files from before the face crop) or 4 ordered integers."""
    from tagfer.data.trace_file import trace_window, validate_trace_record

    assert trace_window(validate_trace_record(record("a"), "f:1")) is None
    assert trace_window(validate_trace_record(record("a", crop_box=None), "f:1")) is None
    assert trace_window(validate_trace_record(record("a", crop_box=[3, 4, 115, 116]), "f:1")) == (3, 4, 115, 116)
    for bad in ([3, 4, 115], [3, 4, 2, 116], [3.5, 4, 115, 116], [-1, 0, 10, 10], "0,0,1,1"):
        with pytest.raises(TraceFileError, match="f:1: field 'crop_box'"):
            validate_trace_record(record("a", crop_box=bad), "f:1")
