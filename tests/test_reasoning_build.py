"""Building trace files: template and teacher sources, rejects, box spaces, resume after a kill, statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from tagfer.core.classes import CLASS_INDEX
from tagfer.core.config import ConfigError, DatasetSpec, TagferConfig
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.trace import Trace, TraceStep, parse_trace, render_trace
from tagfer.core.vocabulary import AU_REGION, REGIONS
from tagfer.data.trace_file import read_traces, rejected_path
from tagfer.models.boxes import to_model_space
from tagfer.models.resize import ResizeParams
from tagfer.models.space import ModelSpace
from tagfer.reasoning.build import build_trace_file, resolve_trace_paths, teacher_to_student

RESIZE = ResizeParams(min_pixels=56 * 56, max_pixels=112 * 112)
STUDENT = ModelSpace("norm1000", RESIZE)
TEACHER = ModelSpace("pixels", ResizeParams(min_pixels=56 * 56, max_pixels=224 * 224))
SIZE = (160, 120)  # width, height of every fake image


def region_boxes() -> dict:
    return {au: (20.0, 5.0 + 12 * REGIONS.index(r), 140.0, 15.0 + 12 * REGIONS.index(r)) for au, r in AU_REGION.items()}


class FakeCache:
    """``lookup`` / ``passed_quality`` like :class:`tagfer.au.cache.AUCache`; can simulate a kill."""

    def __init__(self, evidence: dict, failed=(), kill_after: int | None = None):
        self.evidence = evidence
        self.failed = set(failed)
        self.kill_after = kill_after
        self.lookups = 0

    def lookup(self, record_id):
        self.lookups += 1
        if self.kill_after is not None and self.lookups > self.kill_after:
            raise KeyboardInterrupt("killed")
        return self.evidence.get(record_id)

    def passed_quality(self, record_id):
        return record_id not in self.failed


def record(i: int, label: str) -> FaceRecord:
    pixels = np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8)
    return FaceRecord(id=f"img/{i:03d}.png", dataset="synthetic", split="train", label=CLASS_INDEX[label], pixels=pixels)


LABELS = ["happiness", "sadness", "neutral", "surprise", "happiness", "anger", "neutral", "fear"]
PROBS = {
    "happiness": {"AU6": 0.8, "AU12": 0.9},
    "sadness": {"AU1": 0.7, "AU4": 0.8, "AU15": 0.6},
    "neutral": {},
    "surprise": {"AU1": 0.9, "AU2": 0.9, "AU5": 0.7, "AU26": 0.8},
    "anger": {"AU25": 0.9},  # no prototypical AU: missing-prior policy
    "fear": {"AU1": 0.9},
}


@pytest.fixture
def dataset():
    records = [record(i, label) for i, label in enumerate(LABELS)]
    evidence = {r.id: AUEvidence(au_prob=PROBS[r.label_name], au_box=region_boxes()) for r in records}
    del evidence["img/007.png"]  # not in the AU cache
    evidence["img/006.png"] = AUEvidence(face_found=False)
    return records, evidence


def config(tmp_path, **traces):
    cfg = OmegaConf.structured(TagferConfig)
    cfg.data.train = [DatasetSpec(traces=str(tmp_path / "t.jsonl"))]
    return OmegaConf.merge(cfg, {"traces": traces})


def build(tmp_path, records, cache, cfg, **kwargs):
    spec = cfg.data.train[0]
    return build_trace_file(spec, tmp_path / "t.jsonl", records, cache, cfg, student=STUDENT, progress=False, **kwargs)


def test_template_build_writes_verified_traces_in_the_student_space(tmp_path, dataset) -> None:
    records, evidence = dataset
    report = build(tmp_path, records, FakeCache(evidence, failed={"img/005.png"}), config(tmp_path), source="template")
    traces = read_traces(tmp_path / "t.jsonl")
    assert sorted(traces) == ["img/000.png", "img/001.png", "img/002.png", "img/003.png", "img/004.png"]
    first = traces["img/000.png"]
    assert (first["source"], first["convention"], first["label"], first["split"]) == ("template", "norm1000", "happiness", "train")
    assert first["orig_size"] == list(SIZE) and first["input_size"] == [112, 84]  # smart_resize of 160x120
    expected = to_model_space(region_boxes()["AU6"], SIZE, (112, 84), "norm1000")
    assert parse_trace(first["trace"]).steps[0].box == tuple(float(round(v)) for v in expected)
    assert first["provenance"]["cited"] == {"AU12": 0.9, "AU6": 0.8}

    rejected = [json.loads(line) for line in rejected_path(tmp_path / "t.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rejected} == {
        "img/005.png": "failed_quality",
        "img/006.png": "no_face",
        "img/007.png": "not_in_au_cache",
    }
    assert report.written_now == 8 and report.already_done == 0
    assert report.per_class["happiness"]["kept"] == 2 and report.per_class["neutral"]["dropped"] == 1
    assert report.totals()["kept"] == 5 and report.totals()["dropped"] == 3
    stats = json.loads((tmp_path / "t.stats.json").read_text())
    assert stats["totals"] == {"kept": 5, "dropped": 3, "format_failures": 0, "eliminations": 0}
    assert stats["drop_reasons"] == {"failed_quality": 1, "no_face": 1, "not_in_au_cache": 1}
    assert "happiness" in report.table() and "drop reasons" in report.table()


def test_missing_prior_drop_policy_rejects_with_its_reason(tmp_path, dataset) -> None:
    records, evidence = dataset
    build(tmp_path, records, FakeCache(evidence), config(tmp_path, missing_prior="drop"), source="template")
    rejected = {json.loads(l)["id"]: json.loads(l)["reason"] for l in rejected_path(tmp_path / "t.jsonl").read_text().splitlines()}
    assert rejected["img/005.png"] == "missing_prior"


def test_a_killed_build_resumes_to_the_same_file(tmp_path, dataset) -> None:
    records, evidence = dataset
    cfg = config(tmp_path)
    reference_dir = tmp_path / "ref"
    reference_dir.mkdir()
    build(reference_dir, records, FakeCache(evidence), cfg, source="template")
    reference = (reference_dir / "t.jsonl").read_bytes()

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, records, FakeCache(evidence, kill_after=3), cfg, source="template")
    path = tmp_path / "t.jsonl"
    assert len(read_traces(path)) == 3
    path.write_bytes(path.read_bytes() + reference.splitlines(keepends=True)[3][:40])  # a half-written 4th line
    report = build(tmp_path, records, FakeCache(evidence), cfg, source="template")
    assert report.already_done == 3 and report.written_now == 5
    assert path.read_bytes() == reference  # same lines: wording is seeded per sample, not per run

    again = build(tmp_path, records, FakeCache(evidence), cfg, source="template")
    assert again.written_now == 0 and again.already_done == 8 and again.totals()["kept"] == 6


def teacher_reply(label: str, box) -> str:
    step = TraceStep("lip corners", ("AU12",), "lip corners pulled up", box)
    return render_trace(Trace("A smile.", (step,), ("AU12",), label))


def test_teacher_build_counts_attempts_and_moves_boxes_to_the_student_space(tmp_path, dataset) -> None:
    records, evidence = dataset
    teacher_box = (40.0, 100.0, 180.0, 150.0)  # in the teacher's pixels of a 168x112 input

    def generate(images, prompts):
        replies = []
        for prompt in prompts:
            if "happiness" in prompt.split("Detected")[0]:
                replies.append(teacher_reply("happiness", teacher_box))  # right for 000/004, wrong otherwise
            else:
                replies.append("no format")
        return replies

    cfg = config(tmp_path, teacher={"max_format_retries": 1, "max_label_retries": 2, "batch_size": 3})
    report = build(tmp_path, records, FakeCache(evidence), cfg, source="teacher", teacher=(generate, TEACHER, "fake-vlm"))
    traces = read_traces(tmp_path / "t.jsonl")
    assert sorted(traces) == ["img/000.png", "img/004.png"]
    kept = traces["img/000.png"]
    assert kept["source"] == "teacher" and kept["convention"] == "norm1000"
    assert kept["provenance"]["teacher"] == "fake-vlm" and kept["provenance"]["attempts"] == 1
    assert kept["provenance"]["teacher_convention"] == "pixels" and kept["provenance"]["teacher_input_size"] == [168, 112]
    pixels = TEACHER.to_pixels(teacher_box, SIZE)
    expected = tuple(float(round(v)) for v in STUDENT.to_model(pixels, SIZE))
    assert parse_trace(kept["trace"]).steps[0].box == expected

    rejected = {json.loads(l)["id"]: json.loads(l) for l in rejected_path(tmp_path / "t.jsonl").read_text().splitlines()}
    sad = rejected["img/001.png"]  # answers happiness (eliminated), then fails the format twice
    assert sad["reason"] == "format_failed"
    assert sad["provenance"]["eliminated_labels"] == ["happiness"]
    assert (sad["provenance"]["attempts"], sad["provenance"]["format_failures"], sad["provenance"]["wrong_predictions"]) == (3, 2, 1)
    assert report.per_class["sadness"]["eliminations"] == 1 and report.per_class["sadness"]["format_failures"] == 2
    assert report.per_class["happiness"]["kept"] == 2


def test_teacher_to_student_keeps_content_and_think_tags() -> None:
    from tagfer.reasoning.build import _Sample

    sample = _Sample(record=None, evidence=None, orig_size=SIZE)
    text = render_trace(
        Trace("A smile.", (TraceStep("mouth", ("AU25",), "lips apart", (10.0, 20.0, 60.0, 70.0)),), ("AU25",), "happiness"), think_tags=True
    )
    moved = parse_trace(teacher_to_student(text, sample, TEACHER, TEACHER, True), require_think=True)
    assert moved.valid and moved.steps[0].box == (10.0, 20.0, 60.0, 70.0) and moved.steps[0].observation == "lips apart"


def test_trace_paths_come_from_the_spec_or_traces_out_and_may_not_collide(tmp_path) -> None:
    cfg = OmegaConf.structured(TagferConfig)
    cfg.traces.out = str(tmp_path / "default.jsonl")
    cfg.data.train = [DatasetSpec(name="rafdb", traces=str(tmp_path / "raf.jsonl")), DatasetSpec(name="synthetic")]
    assert [p.name for _, p in resolve_trace_paths(cfg)] == ["raf.jsonl", "default.jsonl"]
    cfg.data.train = [DatasetSpec(name="rafdb"), DatasetSpec(name="synthetic")]
    with pytest.raises(ConfigError, match=r"data.train\[1\] and data.train\[0\]"):
        resolve_trace_paths(cfg)


def test_cli_parses_the_build_command() -> None:
    from tagfer.cli import build_parser

    args = build_parser().parse_args(["traces", "build", "--source", "teacher", "--config", "configs/sft.yaml", "traces.top_k=3"])
    assert (args.source, args.overrides, args.func.__name__) == ("teacher", ["traces.top_k=3"], "_build")


def test_traces_build_command_end_to_end_on_synthetic_faces(tmp_path, tiny_qwen2_vl_dir, configs_dir, capsys) -> None:
    """Real readers, AU cache and tiny-model processor: template traces, then a resumed no-op run, then
    the tiny model as teacher (random weights: only verified traces may reach the file)."""
    from tagfer.cli import main

    def run(source: str, traces: str, limit: int) -> int:
        return main(
            [
                "traces",
                "build",
                "--source",
                source,
                "--config",
                str(configs_dir / "sft.yaml"),
                f"data.train=[{{name: synthetic, root: {tmp_path}/data, split: train, num_samples: 16, limit: {limit}, traces: {tmp_path}/{traces}}}]",
                f"au.cache_dir={tmp_path}/au",
                f"model.name_or_path={tiny_qwen2_vl_dir}",
                "model.build_tiny=false",
                f"traces.teacher.name_or_path={tiny_qwen2_vl_dir}",
                "traces.teacher.max_new_tokens=8",
                "traces.teacher.max_format_retries=1",
                "traces.teacher.max_label_retries=0",
            ]
        )

    assert run("template", "template.jsonl", 16) == 0
    traces = read_traces(tmp_path / "template.jsonl")
    assert len(traces) == 16 and {t["convention"] for t in traces.values()} == {"norm1000"}
    assert "16 new" in capsys.readouterr().out
    assert run("template", "template.jsonl", 16) == 0
    assert "0 new, 16 already done" in capsys.readouterr().out

    assert run("teacher", "teacher.jsonl", 3) == 0
    stats = json.loads((tmp_path / "teacher.stats.json").read_text())
    assert stats["totals"]["kept"] + stats["totals"]["dropped"] == 3
    kept = read_traces(tmp_path / "teacher.jsonl")  # validates every kept line
    assert len(kept) == stats["totals"]["kept"]
    rejected = [json.loads(l) for l in rejected_path(tmp_path / "teacher.jsonl").read_text().splitlines()]
    assert all(r["provenance"]["attempts"] == r["provenance"]["format_failures"] + r["provenance"]["wrong_predictions"] for r in rejected)


def test_a_file_is_not_resumed_with_other_settings(tmp_path, dataset) -> None:
    records, evidence = dataset
    build(tmp_path, records, FakeCache(evidence), config(tmp_path), source="template")
    with pytest.raises(ConfigError, match="was built with .*'think_tags': False.*'think_tags': True"):
        build(tmp_path, records, FakeCache(evidence), config(tmp_path, think_tags=True), source="template")
    with pytest.raises(ConfigError, match="'convention': 'norm1000'.*'convention': 'pixels'"):
        spec = config(tmp_path).data.train[0]
        build_trace_file(
            spec, tmp_path / "t.jsonl", records, FakeCache(evidence), config(tmp_path), source="template", student=TEACHER, progress=False
        )


def test_images_that_no_longer_decode_are_rejected_with_their_reason(tmp_path, dataset) -> None:
    """A cached record whose file header no longer reads is rejected before the teacher; one whose pixels
    no longer decode (truncated after the header) is rejected by the teacher path; the others go on."""
    from PIL import Image

    records, evidence = dataset
    text = tmp_path / "text.png"
    text.write_text("not an image")
    Image.fromarray(np.zeros((SIZE[1], SIZE[0], 3), np.uint8)).save(tmp_path / "full.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    broken = [
        FaceRecord(id=f"img/{name}", dataset="synthetic", split="train", label=CLASS_INDEX["happiness"], image_path=path)
        for name, path in (("text.png", text), ("truncated.png", truncated))
    ]
    evidence.update({r.id: evidence["img/000.png"] for r in broken})

    def generate(images, prompts):
        return [teacher_reply("happiness", (40.0, 100.0, 180.0, 150.0)) for _ in prompts]

    cfg = config(tmp_path, teacher={"max_format_retries": 1, "max_label_retries": 1, "batch_size": 2})
    report = build(tmp_path, [records[0], *broken], FakeCache(evidence), cfg, source="teacher", teacher=(generate, TEACHER, "fake-vlm"))
    assert sorted(read_traces(tmp_path / "t.jsonl")) == ["img/000.png"]
    rejected = {json.loads(l)["id"]: json.loads(l) for l in rejected_path(tmp_path / "t.jsonl").read_text().splitlines()}
    assert {k: v["reason"] for k, v in rejected.items()} == {"img/text.png": "corrupt_image", "img/truncated.png": "corrupt_image"}
    assert f"{text}: cannot read the image header (UnidentifiedImageError" in rejected["img/text.png"]["provenance"]["detail"]
    assert f"{truncated}: cannot decode image" in rejected["img/truncated.png"]["provenance"]["detail"]
    assert report.drop_reasons == {"corrupt_image": 2}
