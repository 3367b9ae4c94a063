"""``tagfer traces build``: write the verified trace file of every training dataset.

For each :class:`tagfer.core.config.DatasetSpec` of ``data.train`` the output is ``spec.traces`` (or
``traces.out`` when the spec names none; two specs may not share a file). Every record of the split is
joined with its AU cache entry and gets a trace from

* ``--source template``: :func:`tagfer.reasoning.template.build_template_trace` (no model needed);
* ``--source teacher``: :func:`tagfer.reasoning.teacher.run_teacher` with the local VLM
  ``traces.teacher.name_or_path`` (in process, or served by vLLM with ``engine.backend=vllm``) or an
  OpenAI-compatible ``traces.teacher.endpoint`` (:func:`loaded_teacher`).

Every image is first cropped to its face exactly as the DataModule will serve it (``data.face_crop``,
:mod:`tagfer.data.face_crop`): the AU evidence is moved into the crop, the teacher sees the crop, and
each line records the crop window (``crop_box``, original pixels) and the crop's size (``orig_size``).
Boxes in the file are always in the coordinate space of the *student* (``model``: its family's
convention after its processor's resize of the served image), whatever wrote them: a teacher's boxes
are brought from the teacher's space through the served image's pixels into the student's. Lines are appended durably and a
rerun resumes (:mod:`tagfer.data.trace_file`); samples that got no trace go to the
``.rejected.jsonl`` sidecar with their reason; statistics over the whole file are printed and written
to ``<file>.stats.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagfer.core.atomic_files import atomic_write_text
from tagfer.core.classes import CLASS_NAMES
from tagfer.core.config import ConfigError
from tagfer.core.crop import Window, crop_image, window_size
from tagfer.core.trace import Trace, TraceStep, parse_trace
from tagfer.data.face_crop import NO_CROP, FaceCrop, crop_evidence
from tagfer.data.images import CorruptImageError, image_size, load_image
from tagfer.data.trace_file import (
    TraceWriter,
    rejected_path,
    validate_rejected_record,
)
from tagfer.models.boxes import Size
from tagfer.models.space import ModelSpace
from tagfer.pipeline.splits import SplitReader
from tagfer.reasoning.teacher import KEPT, GenerateFn, TeacherOptions, TeacherSample, run_teacher
from tagfer.reasoning.template import (
    TemplateOptions,
    TemplateSkip,
    build_template_trace,
    check_round_trip,
    groundable_top_k,
    integer_box,
    sample_rng,
)

log = logging.getLogger(__name__)

__all__ = ["BuildReport", "build_command", "build_trace_file", "build_traces", "resolve_trace_paths"]


# ------------------------------------------------------------------------------------ model spaces
def student_space(model_cfg: Any) -> ModelSpace:
    """The space of ``model.name_or_path`` from its processor alone (no weights are loaded).

    The tiny model is built there first when the directory is missing and ``model.build_tiny`` is set.
    """
    from transformers import AutoProcessor

    from tagfer.models.families import read_model_type, resolve_family
    from tagfer.models.loader import set_pixel_bounds
    from tagfer.models.tiny import ensure_tiny_model

    path = Path(model_cfg.name_or_path)
    if model_cfg.build_tiny:
        ensure_tiny_model(model_cfg)
    elif not path.exists():
        raise ConfigError(f"model.name_or_path={str(path)!r} does not exist (set model.build_tiny=true for the tiny model)")
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    set_pixel_bounds(processor, model_cfg.min_pixels, model_cfg.max_pixels)
    return ModelSpace.of(processor, resolve_family(model_cfg.family, read_model_type(path)))


# ------------------------------------------------------------------------------------------ paths
def resolve_trace_paths(cfg: Any) -> list[tuple[Any, Path]]:
    """``(spec, trace file)`` for every spec of ``data.train``: ``spec.traces`` or else ``traces.out``.

    Raises :class:`ConfigError` when two specs would write the same file.
    """
    targets = []
    owners: dict[Path, int] = {}
    for index, spec in enumerate(cfg.data.train):
        path = Path(spec.traces or cfg.traces.out)
        if path in owners:
            raise ConfigError(
                f"data.train[{index}] and data.train[{owners[path]}] would both write traces to {path}; "
                "give each dataset its own `traces:` path"
            )
        owners[path] = index
        targets.append((spec, path))
    return targets


# ---------------------------------------------------------------------------------------- reports
STAT_KEYS = ("kept", "dropped", "format_failures", "eliminations")


@dataclass
class BuildReport:
    """Statistics of one trace file (its kept and rejected lines, all runs together)."""

    path: Path
    source: str
    written_now: int = 0
    already_done: int = 0
    per_class: dict[str, Counter] = field(default_factory=lambda: {c: Counter() for c in CLASS_NAMES})
    drop_reasons: Counter = field(default_factory=Counter)

    def add(self, label: str, kept: bool, provenance: dict, reason: str | None = None) -> None:
        counts = self.per_class[label]
        counts["kept" if kept else "dropped"] += 1
        counts["format_failures"] += int(provenance.get("format_failures", 0))
        counts["eliminations"] += len(provenance.get("eliminated_labels", ()))
        if reason is not None:
            self.drop_reasons[reason] += 1

    def totals(self) -> Counter:
        return sum(self.per_class.values(), Counter())

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "source": self.source,
            "written_now": self.written_now,
            "already_done": self.already_done,
            "totals": {k: self.totals()[k] for k in STAT_KEYS},
            "per_class": {c: {k: n[k] for k in STAT_KEYS} for c, n in self.per_class.items() if sum(n.values())},
            "drop_reasons": dict(self.drop_reasons),
        }

    def table(self) -> str:
        """A plain-text table: one row per class with samples, then the total and the drop reasons."""
        header = f"{'class':<10}" + "".join(f"{k:>16}" for k in STAT_KEYS)
        rows = [header]
        for name, counts in [*self.per_class.items(), ("total", self.totals())]:
            if sum(counts.values()) or name == "total":
                rows.append(f"{name:<10}" + "".join(f"{counts[k]:>16}" for k in STAT_KEYS))
        reasons = ", ".join(f"{r}: {n}" for r, n in self.drop_reasons.most_common()) or "none"
        rows.append(f"drop reasons: {reasons}")
        return f"{self.path} ({self.source}; {self.written_now} new, {self.already_done} already done)\n" + "\n".join(rows)


def _write_stats(report: BuildReport) -> Path:
    target = report.path.with_name(report.path.name.removesuffix(".jsonl") + ".stats.json")
    return atomic_write_text(target, json.dumps(report.to_json(), indent=2))


# -------------------------------------------------------------------------------------- the build
@dataclass
class _Sample:
    """A record ready for a trace: its evidence and size as served (in the face crop when ``window`` is set)."""

    record: Any
    evidence: Any
    orig_size: Size
    window: Window | None = None


class _Build:
    """Writes one trace file: resumes, rejects, converts boxes, counts."""

    def __init__(self, spec: Any, path: Path, source: str, space: ModelSpace, cfg: Any, crop: FaceCrop):
        self.spec = spec
        self.crop = crop
        self.source = source
        self.space = space
        self.cfg = cfg
        self.kept = TraceWriter(path)
        self.rejected = TraceWriter(rejected_path(path), validate=validate_rejected_record)
        self.report = BuildReport(path, source, already_done=len(self.kept.ids | self.rejected.ids))
        self._check_resumable(path)
        if self.kept.dropped_truncated or self.rejected.dropped_truncated:
            log.warning("%s: dropped a truncated last line (interrupted build); that sample is redone", path)

    def _check_resumable(self, path: Path) -> None:
        """A file is only resumed by a build with its source, box convention and think-tag setting."""
        wanted = {"source": self.source, "convention": self.space.convention, "think_tags": bool(self.cfg.traces.think_tags)}
        for entry in self.kept.records[:1]:
            found = {key: entry[key] for key in wanted}
            if found != wanted:
                self.kept.close()
                self.rejected.close()
                raise ConfigError(
                    f"{path} was built with {found}, this build would write {wanted}; "
                    "delete the file (and its .rejected.jsonl) or set another traces path"
                )

    def done(self, record_id: str) -> bool:
        return record_id in self.kept.ids or record_id in self.rejected.ids

    def samples(self, records: list, cache: Any, progress: Callable[[], None]) -> Iterator[_Sample]:
        """Records not yet done that have evidence, pass the quality filter and whose image header reads;
        the others are rejected (``not_in_au_cache``, ``failed_quality``, ``corrupt_image`` with its reason)."""
        for record in records:
            if self.done(record.id):
                continue
            evidence = cache.lookup(record.id)
            if evidence is None:
                self.reject(record, "not_in_au_cache", {})
            elif not cache.passed_quality(record.id):
                self.reject(record, "failed_quality", {})
            else:
                try:
                    sample = self._served(record, evidence)
                except CorruptImageError as err:
                    self.reject(record, "corrupt_image", {"detail": str(err)})
                else:
                    yield sample
                    continue
            progress()

    def _served(self, record: Any, evidence: Any) -> _Sample:
        """The sample as the DataModule serves it: evidence and size in the face crop, if any."""
        size = image_size(record)
        window = self.crop.window(record, evidence, size)
        if window is None:
            return _Sample(record, evidence, size)
        return _Sample(record, crop_evidence(evidence, window), window_size(window), window)

    def keep(self, sample: _Sample, text: str, provenance: dict) -> None:
        record = sample.record
        self.kept.write(
            {
                "id": record.id,
                "dataset": record.dataset,
                "split": record.split,
                "label": record.label_name,
                "trace": text,
                "source": self.source,
                "convention": self.space.convention,
                "input_size": list(self.space.input_size(sample.orig_size)),
                "orig_size": list(sample.orig_size),
                "crop_box": None if sample.window is None else list(sample.window),
                "think_tags": bool(self.cfg.traces.think_tags),
                "provenance": provenance,
            }
        )
        self.report.written_now += 1

    def reject(self, record: Any, reason: str, provenance: dict) -> None:
        entry = {
            "id": record.id,
            "dataset": record.dataset,
            "label": record.label_name,
            "source": self.source,
            "reason": reason,
            "provenance": provenance,
        }
        self.rejected.write(entry)
        self.report.written_now += 1

    def finish(self) -> BuildReport:
        self.kept.close()
        self.rejected.close()
        for entry in self.kept.records:
            self.report.add(entry["label"], True, entry["provenance"])
        for entry in self.rejected.records:
            self.report.add(entry["label"], False, entry["provenance"], entry["reason"])
        return self.report


def template_options(cfg: Any) -> TemplateOptions:
    """:class:`TemplateOptions` from ``au.threshold``, ``au.box_mode`` and ``traces.*``."""
    return TemplateOptions(
        threshold=float(cfg.au.threshold),
        top_k=int(cfg.traces.top_k),
        box_mode=str(cfg.au.box_mode),
        missing_prior=str(cfg.traces.missing_prior),
        think_tags=bool(cfg.traces.think_tags),
    )


def _template(build: _Build, samples: Iterator[_Sample], progress: Callable[[], None]) -> None:
    options = template_options(build.cfg)
    for sample in samples:
        record = sample.record
        rng = sample_rng(build.cfg.traces.seed, f"{record.dataset}/{record.id}")
        try:
            built = build_template_trace(
                sample.evidence,
                record.label_name,
                rng,
                lambda box: build.space.to_model(box, sample.orig_size),  # noqa: B023 (called in this iteration)
                options,
            )
        except TemplateSkip as skip:
            build.reject(record, skip.reason, {"detail": str(skip)})
        else:
            build.keep(sample, built.text, built.provenance)
        progress()


def teacher_to_student(text: str, sample: _Sample, teacher: ModelSpace, student: ModelSpace, think_tags: bool) -> str:
    """A verified teacher trace with every box moved from the teacher's space to the student's."""
    parsed = parse_trace(text, require_think=think_tags)
    steps = tuple(
        TraceStep(
            s.region,
            s.aus,
            s.observation,
            None if s.box is None else integer_box(student.to_model(teacher.to_pixels(s.box, sample.orig_size), sample.orig_size)),
        )
        for s in parsed.steps
    )
    trace = Trace(parsed.global_analysis or "", steps, parsed.conclusion_aus, parsed.answer or "")
    return check_round_trip(trace, think_tags=think_tags)


def _teacher(
    build: _Build,
    samples: Iterator[_Sample],
    progress: Callable[[], None],
    generate: GenerateFn,
    teacher_space: ModelSpace,
    teacher_name: str,
) -> None:
    cfg = build.cfg
    options = TeacherOptions(
        teacher=teacher_name,
        classes=tuple(build.spec.classes) if build.spec.classes else CLASS_NAMES,
        convention=teacher_space.convention,
        think_tags=bool(cfg.traces.think_tags),
        max_format_retries=int(cfg.traces.teacher.max_format_retries),
        max_label_retries=int(cfg.traces.teacher.max_label_retries),
        batch_size=int(cfg.traces.teacher.batch_size),
    )

    def requests() -> Iterator[TeacherSample]:
        for sample in samples:
            try:
                image = load_image(sample.record)
            except CorruptImageError as err:  # the file changed or broke since its AU-cache entry
                build.reject(sample.record, "corrupt_image", {"detail": str(err)})
                progress()
                continue
            top = groundable_top_k(sample.evidence, int(cfg.traces.top_k), float(cfg.au.threshold))
            boxes = {au: integer_box(teacher_space.to_model(sample.evidence.au_box[au], sample.orig_size)) for au in top}
            if sample.window is not None:
                image = crop_image(image, sample.window)
            yield TeacherSample(sample.record.id, image, sample.record.label_name, top, boxes, {"sample": sample})

    for outcome in run_teacher(requests(), generate, options):
        sample = outcome.sample.meta["sample"]
        provenance = outcome.provenance(teacher_name) | {
            "teacher_convention": teacher_space.convention,
            "teacher_input_size": list(teacher_space.input_size(sample.orig_size)),
        }
        if outcome.status == KEPT:
            text = teacher_to_student(outcome.trace, sample, teacher_space, build.space, options.think_tags)
            build.keep(sample, text, provenance)
        else:
            build.reject(sample.record, outcome.status, provenance | {"last_errors": outcome.last_errors})
        progress()


def _teacher_processor_space(cfg: Any, path: str) -> tuple[Any, ModelSpace]:
    """The processor of the teacher at ``path`` and its box space (no weights are loaded)."""
    from transformers import AutoProcessor

    from tagfer.models.families import read_model_type, resolve_family
    from tagfer.models.loader import set_pixel_bounds

    if not path:
        raise ConfigError(
            "traces.teacher.endpoint needs traces.teacher.name_or_path: a directory with the teacher's processor (its box space)"
        )
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    set_pixel_bounds(processor, cfg.model.min_pixels, cfg.model.max_pixels)
    return processor, ModelSpace.of(processor, resolve_family("auto", read_model_type(path)))


@contextmanager
def loaded_teacher(cfg: Any) -> Iterator[tuple[GenerateFn, ModelSpace, str]]:
    """``(generate, teacher space, name)`` of ``traces.teacher`` for the ``with`` block.

    * ``traces.teacher.endpoint`` set: an OpenAI-compatible endpoint serving ``traces.teacher.model``
      (default ``name_or_path``, whose processor gives the box space), key from ``api_key_env``;
    * else ``engine.backend=vllm``: a vLLM server for ``name_or_path`` (``engine.vllm``: launched for the
      block, or ``engine.vllm.url``), with the teacher's ``concurrency``/timeout/retries;
    * else the local VLM ``name_or_path`` in process (the student's pixel bounds).
    """
    from omegaconf import OmegaConf

    from tagfer.models.engine import api_key_from_env, hf_generator, vllm_endpoint
    from tagfer.models.generation import suppressed_token_ids
    from tagfer.models.loader import load_vlm
    from tagfer.models.openai_endpoint import ChatClient, EndpointSettings, Sampling, endpoint_generator

    teacher = cfg.traces.teacher

    def client(settings: EndpointSettings, processor: Any) -> GenerateFn:
        banned = tuple(suppressed_token_ids(processor))  # the vision placeholders, as the HF path
        sampling = Sampling(max_new_tokens=int(teacher.max_new_tokens), temperature=float(teacher.temperature), banned_token_ids=banned)
        tuned = dataclasses.replace(
            settings,
            timeout_s=float(teacher.request_timeout_s),
            max_retries=int(teacher.max_retries),
            backoff_s=float(teacher.backoff_s),
            concurrency=int(teacher.concurrency),
            extensions=bool(teacher.extensions),
        )
        return endpoint_generator(ChatClient(tuned), sampling)

    if teacher.endpoint:
        name = str(teacher.model or teacher.name_or_path)
        settings = EndpointSettings(str(teacher.endpoint), name, api_key_from_env(str(teacher.api_key_env), "traces.teacher.api_key_env"))
        processor, space = _teacher_processor_space(cfg, str(teacher.name_or_path))
        yield client(settings, processor), space, name
        return
    if not teacher.name_or_path:
        raise ConfigError("traces.source=teacher needs traces.teacher.name_or_path (a local VLM directory) or traces.teacher.endpoint")
    if cfg.engine.backend == "vllm":
        processor, space = _teacher_processor_space(cfg, str(teacher.name_or_path))
        with vllm_endpoint(OmegaConf.to_object(cfg.engine.vllm), str(teacher.name_or_path)) as settings:
            yield client(settings, processor), space, str(teacher.name_or_path)
        return
    model_cfg = OmegaConf.merge(cfg.model, {"name_or_path": teacher.name_or_path, "build_tiny": False, "init_from": None, "family": "auto"})
    model, processor, family = load_vlm(model_cfg, for_training=False)
    generate = hf_generator(model, processor, max_new_tokens=teacher.max_new_tokens, temperature=teacher.temperature)
    yield generate, ModelSpace.of(processor, family), str(teacher.name_or_path)


def build_trace_file(
    spec: Any,
    path: Path,
    records: list,
    cache: Any,
    cfg: Any,
    *,
    source: str,
    student: ModelSpace,
    teacher: tuple[GenerateFn, ModelSpace, str] | None = None,
    crop: FaceCrop = NO_CROP,
    progress: bool = True,
) -> BuildReport:
    """Build (or resume) one trace file from ``records`` and their AU ``cache`` (``lookup(id)`` →
    :class:`AUEvidence` or None, ``passed_quality(id)``); writes ``<file>.stats.json`` and returns the report.

    ``crop`` is the face-crop setting resolved for these records (:meth:`FaceCrop.for_images`); the
    default serves whole images."""
    from tqdm.auto import tqdm

    if source == "teacher" and teacher is None:
        raise ValueError("source='teacher' needs teacher=(generate, teacher space, name)")
    build = _Build(spec, path, source, student, cfg, crop)
    todo = sum(not build.done(r.id) for r in records)
    try:
        with tqdm(total=todo, desc=f"traces {spec.name}/{spec.split}", disable=not progress, unit="img") as bar:
            samples = build.samples(records, cache, bar.update)
            if source == "template":
                _template(build, samples, bar.update)
            else:
                _teacher(build, samples, bar.update, *teacher)
    finally:
        report = build.finish()
    _write_stats(report)
    return report


def build_traces(
    cfg: Any,
    *,
    source: str | None = None,
    teacher: tuple[GenerateFn, ModelSpace, str] | None = None,
    student: ModelSpace | None = None,
    progress: bool = True,
    splits: SplitReader | None = None,
) -> list[BuildReport]:
    """Build (or resume) the trace file of every ``data.train`` spec; returns one report per file.

    Args:
        cfg: the run configuration (``data``, ``au``, ``traces``, ``model``).
        source: ``"template"`` or ``"teacher"`` (default ``traces.source``).
        teacher: ``(generate, teacher space, name)``; default :func:`loaded_teacher` (teacher source only).
        student: the student's box space; default :func:`student_space` of ``model``.
        progress: show a tqdm bar per file.
        splits: the run's split reader (the training DataModule's, so that a split is read once per run);
            default: a new one.
    """
    source = source or cfg.traces.source
    if source not in ("template", "teacher"):
        raise ConfigError(f"traces.source={source!r}; expected 'template' or 'teacher'")
    targets = resolve_trace_paths(cfg)
    student = student or student_space(cfg.model)
    face_crop = FaceCrop.from_config(cfg.data.face_crop)
    splits = splits or SplitReader(cfg.au, progress=progress)
    with ExitStack() as stack:
        if source == "teacher" and teacher is None:
            teacher = stack.enter_context(loaded_teacher(cfg))
        reports = []
        for spec, path in targets:
            result = splits.read(spec, strict=cfg.data.strict)
            cache = splits.au_cache(spec)
            crop = face_crop.for_images(result.whole_photos)
            reports.append(
                build_trace_file(
                    spec, path, result.records, cache, cfg, source=source, student=student, teacher=teacher, crop=crop, progress=progress
                )
            )
    return reports


def build_command(args: Any) -> int:
    """The ``tagfer traces build`` handler: load the config, build, print the statistics."""
    from tagfer.core.config import load_config

    cfg = load_config(args.config, args.overrides)
    for report in build_traces(cfg, source=args.source):
        print(report.table())
    return 0
