"""``report.json`` and ``report.md`` of an evaluation — one writer for the VLM evaluator and the baseline.

``report.json``::

    {"datasets": {"rafdb/test": {"n": 3068, "classes": [...], "accuracy": 0.87, "mean_class_accuracy": ...,
                                 "macro_f1": ..., "parse_rate": ...,
                                 "faithfulness": {"au_precision", "au_recall", "mean_iou",
                                                  "hallucination_rate", "consistency"},
                                 "confusion_matrix": [[...C+1 ints...] × C],
                                 "per_class_recall": {class: recall}, "skipped": {reason: count},
                                 "timings": {"seconds", "samples_per_s"}}, ...},
     "model": {"kind": "vlm" | "vision_baseline", "classes": [...the classes it answers with...]},
     "checkpoint": "<what was evaluated>", "config": "<run_dir>/config.yaml",
     "timings": {"total_s": ...}}

Confusion-matrix rows are the true classes in ``classes`` order, columns the predicted classes in the
same order plus a last "no valid answer among ``classes``" column; ``n`` counts every evaluated
sample and ``accuracy`` = correct / n. Undefined scores are null (JSON has no NaN): a faithfulness
score without cited AUs, and every faithfulness score of the vision-only baseline (no reasoning, no
boxes; its parse rate is 1.0).

``report.md`` shows the same numbers as tables, and for the real benchmarks (RAF-DB, FERPlus,
AffectNet-7/8) the run's accuracy beside the published ones (:mod:`tagfer.metrics.published`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tagfer.core.atomic_files import atomic_write_text
from tagfer.metrics import SCORE_NAMES
from tagfer.metrics.published import BENCHMARKS, benchmark_column, published_for

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

#: The keys every dataset entry has (extra keys may follow).
DATASET_KEYS = ("n", "classes", "accuracy", "mean_class_accuracy", "macro_f1", "parse_rate", "faithfulness", "confusion_matrix")


def write_report(out_dir: str | os.PathLike, datasets: dict[str, dict], **extra) -> Path:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns the path of ``report.json``.

    ``datasets`` maps a dataset key (``"rafdb/test"``) to its entry (:meth:`SetScorer.entry` plus
    extras); ``extra`` adds top-level keys (``model``, ``checkpoint``, ``config``, ``timings``).
    """
    for name, entry in datasets.items():
        missing = [key for key in DATASET_KEYS if key not in entry]
        if missing:
            raise ValueError(f"report entry {name!r} lacks {missing}")
    report = {"datasets": datasets, **extra}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / REPORT_JSON
    atomic_write_text(target, json.dumps(report, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out_dir / REPORT_MD, render_markdown(report))
    return target


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _ratio(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]


def render_markdown(report: dict) -> str:
    """The markdown version of a report (module docstring)."""
    model = report.get("model", {})
    lines = ["# Evaluation report", ""]
    if "checkpoint" in report:
        lines.append(f"- checkpoint: `{report['checkpoint']}`")
    if model:
        lines.append(f"- model: {model.get('kind', '?')}, answers with {', '.join(model.get('classes', []))}")
    if model.get("kind") == "vision_baseline":
        lines.append("- vision-only baseline: no reasoning and no boxes, so parse rate is 1 and faithfulness is undefined (–)")
    lines += ["", "Accuracies in %; faithfulness scores in [0, 1] (micro-averaged over cited AUs).", ""]
    header = ["dataset", "n", "accuracy", "mean class acc.", "macro-F1", "parse rate", *SCORE_NAMES]
    rows = []
    for name, entry in report["datasets"].items():
        faith = entry["faithfulness"] or {}
        rows.append(
            [
                name,
                str(entry["n"]),
                _pct(entry["accuracy"]),
                _pct(entry["mean_class_accuracy"]),
                _pct(entry["macro_f1"]),
                _pct(entry["parse_rate"]),
                *(_ratio(faith.get(key)) for key in SCORE_NAMES),
            ]
        )
    lines += _table(header, rows)
    for name, entry in report["datasets"].items():
        lines += ["", *_published_section(name, entry), *_confusion_section(name, entry)]
    return "\n".join(lines) + "\n"


def _published_section(name: str, entry: dict) -> list[str]:
    column = benchmark_column(name.split("/", 1)[0], len(entry["classes"]))
    if column is None:
        return []
    rows = [["**this run**", f"**{_pct(entry['accuracy'])}**", "", f"`{name}`, n={entry['n']}"]]
    rows += [[r.method, f"{r.accuracy[column]:.2f}", "yes" if r.vision_only else "", r.source] for r in published_for(column)]
    return [
        f"## {name} beside published {column} results ({BENCHMARKS[column]})",
        "",
        *_table(["method", "accuracy (%)", "vision only", "source"], rows),
        "",
    ]


def _confusion_section(name: str, entry: dict) -> list[str]:
    classes = entry["classes"]
    header = ["true \\ predicted", *classes, "no answer"]
    rows = [[cls, *(str(v) for v in row)] for cls, row in zip(classes, entry["confusion_matrix"])]
    return [f"### Confusion matrix: {name}", "", *_table(header, rows)]


def print_summary(entries: dict[str, dict], report_path: Path) -> None:
    """One line per test set, then ``report: <path>`` as the very last line (the demo reads it)."""
    for name, entry in entries.items():
        faith = entry["faithfulness"] or {}
        print(
            f"{name}: n={entry['n']} accuracy={_score(entry['accuracy'])} "
            f"mean_class_accuracy={_score(entry['mean_class_accuracy'])} macro_f1={_score(entry['macro_f1'])} "
            f"parse_rate={_score(entry['parse_rate'])} mean_iou={_score(faith.get('mean_iou'))} "
            f"hallucination_rate={_score(faith.get('hallucination_rate'))}"
        )
    print(f"report: {report_path}", flush=True)


def _score(value) -> str:
    return "–" if value is None else f"{value:.4f}"
