"""Ablation analysis: run directories → pandas DataFrames and matplotlib figures.

The logic behind ``notebooks/ablation_analysis.ipynb`` (kept here so it is unit-tested and the notebook
stays a few calls). A *run* is a directory with a ``report.json`` (``tagfer evaluate`` or the baseline
stage) and, optionally, TensorBoard event files anywhere below it (``<run_dir>/tb``); an evaluation
directory without them takes those of the training run whose export it scored (:func:`training_run_dir`).
Typical runs: SFT only, GRPO without the AU reward, full TAG, the vision-only baseline.

* :func:`ablation_table` — one row per (run, test set): accuracy, mean class accuracy, macro-F1, parse
  rate and the five faithfulness scores (NaN where undefined, e.g. every faithfulness score of the
  vision-only baseline).
* :func:`training_curves` — the GRPO scalars ``reward``, ``kl`` and ``rewards/<name>/mean`` (also when
  logged under a prefix such as ``train/reward``); an empty frame when a run has none.
* :func:`per_class_recall` and :func:`confusion_matrices` — from the reports.

Needs the ``notebook`` extra (pandas, matplotlib).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import tagfer

#: The report's faithfulness keys (``tagfer.metrics.SCORE_NAMES``, which a test keeps equal): spelled out
#: so the notebook does not import torch and torchmetrics (seconds of start-up) to read JSON files.
SCORE_NAMES = ("au_precision", "au_recall", "mean_iou", "hallucination_rate", "consistency")
SCALAR_COLUMNS = ("tag", "step", "value")
CURVE_TAGS = ("reward", "kl")
_REWARD_COMPONENT = re.compile(r"(?:^|/)rewards/(?P<name>[^/]+)/mean$")


@dataclass
class Run:
    """One run: its name, directory, ``report.json`` content and TensorBoard scalars (tag, step, value)."""

    name: str
    path: Path
    report: dict
    scalars: pd.DataFrame


def locate(path: str | Path) -> Path:
    """``path`` as given when it exists (or is absolute), else from the repository root: paths written by
    commands run at the root (``outputs/...``) still resolve in a notebook running in notebooks/."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return Path(tagfer.__file__).resolve().parents[2] / path


def default_outputs() -> Path:
    """``./outputs`` when it exists, else the repository's ``outputs/`` (a notebook runs in notebooks/)."""
    return locate("outputs")


def find_runs(root: str | Path | None = None) -> list[Path]:
    """Every directory under ``root`` (default :func:`default_outputs`; :func:`locate`) holding a ``report.json``, sorted."""
    root = locate(root) if root is not None else default_outputs()
    return sorted(path.parent for path in root.rglob("report.json"))


def read_scalars(run_dir: str | Path) -> pd.DataFrame:
    """All scalars of the TensorBoard event files below ``run_dir``: columns ``tag``, ``step``, ``value``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for folder in sorted({p.parent for p in Path(run_dir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every event
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            rows += [(tag, event.step, event.value) for event in accumulator.Scalars(tag)]
    return pd.DataFrame(rows, columns=list(SCALAR_COLUMNS))


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read ``<path>/report.json`` (required) and the run's TensorBoard scalars."""
    path = Path(path)
    report_path = path / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{path}: no report.json (run `tagfer evaluate` or the baseline stage first)")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{report_path}: not valid JSON ({err})") from None
    if not isinstance(report.get("datasets"), dict):
        raise ValueError(f"{report_path}: expected a 'datasets' mapping")
    scalars = read_scalars(path)
    trained = training_run_dir(report)
    if scalars.empty and trained is not None:
        scalars = read_scalars(trained)
    return Run(name=name or path.name, path=path, report=report, scalars=scalars)


def training_run_dir(report: dict) -> Path | None:
    """The training run an evaluation scored: ``<run_dir>`` of the report's ``checkpoint`` when that is
    ``<run_dir>/export`` and exists (relative paths: from the working directory), else None."""
    checkpoint = report.get("checkpoint")
    if not checkpoint or Path(checkpoint).name != "export" or not locate(checkpoint).is_dir():
        return None
    return locate(checkpoint).parent


def load_runs(paths) -> list[Run]:
    """Runs named by their directory name (the parent folder is added where two names clash)."""
    paths = [locate(p) for p in paths]
    names = [p.name for p in paths]
    clashes = {n for n in names if names.count(n) > 1}
    return [load_run(p, f"{p.parent.name}/{p.name}" if p.name in clashes else p.name) for p in paths]


def ablation_table(runs: list[Run]) -> pd.DataFrame:
    """One row per (run, test set) with the report's scores (NaN where a score is undefined)."""
    rows = []
    for run in runs:
        kind = run.report.get("model", {}).get("kind")
        for dataset, entry in run.report["datasets"].items():
            faithfulness = entry.get("faithfulness") or {}
            row = {"run": run.name, "kind": kind, "dataset": dataset, "n": entry["n"]}
            for key in ("accuracy", "mean_class_accuracy", "macro_f1", "parse_rate"):
                row[key] = entry.get(key)
            row.update({key: faithfulness.get(key) for key in SCORE_NAMES})
            rows.append(row)
    columns = ["run", "kind", "dataset", "n", "accuracy", "mean_class_accuracy", "macro_f1", "parse_rate", *SCORE_NAMES]
    frame = pd.DataFrame(rows, columns=columns)
    numeric = columns[4:]
    frame[numeric] = frame[numeric].astype(float)  # None → NaN
    return frame


def _curve_name(tag: str) -> str | None:
    """``reward`` / ``kl`` / ``rewards/<name>`` for a matching tag (prefixes such as ``train/`` allowed)."""
    match = _REWARD_COMPONENT.search(tag)
    if match:
        return f"rewards/{match['name']}"
    for name in CURVE_TAGS:
        if tag == name or tag.endswith("/" + name):
            return name
    return None


def training_curves(runs: list[Run]) -> pd.DataFrame:
    """GRPO curves of every run: columns ``run``, ``curve`` (``reward``, ``kl``, ``rewards/<name>``),
    ``tag`` (as logged), ``step``, ``value``; empty when no run logged them."""
    frames = []
    for run in runs:
        if run.scalars.empty:
            continue
        curves = run.scalars.assign(curve=run.scalars["tag"].map(_curve_name)).dropna(subset=["curve"])
        frames.append(curves.assign(run=run.name))
    columns = ["run", "curve", "tag", "step", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].sort_values(["run", "curve", "step"], ignore_index=True)


def per_class_recall(runs: list[Run]) -> pd.DataFrame:
    """Columns ``run``, ``dataset``, ``class``, ``recall`` (NaN for a class without test samples)."""
    rows = [
        (run.name, dataset, cls, np.nan if recall is None else recall)
        for run in runs
        for dataset, entry in run.report["datasets"].items()
        for cls, recall in (entry.get("per_class_recall") or {}).items()
    ]
    return pd.DataFrame(rows, columns=["run", "dataset", "class", "recall"])


def confusion_matrices(runs: list[Run]) -> list[tuple[str, str, list[str], np.ndarray]]:
    """``(run, dataset, classes, [C, C+1] counts)`` for every report entry (last column: no answer)."""
    return [
        (run.name, dataset, list(entry["classes"]), np.asarray(entry["confusion_matrix"], dtype=np.int64))
        for run in runs
        for dataset, entry in run.report["datasets"].items()
    ]


# ------------------------------------------------------------------------------------------- figures
def plot_training_curves(curves: pd.DataFrame):
    """One panel per curve name, one line per run; None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if curves.empty:
        return None
    order = {name: i for i, name in enumerate(CURVE_TAGS)}  # reward, kl, then the components by name
    names = sorted(curves["curve"].unique(), key=lambda n: (order.get(n, len(order)), n))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        for run, part in curves[curves["curve"] == name].groupby("run"):
            ax.plot(part["step"], part["value"], label=run)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_per_class_recall(recall: pd.DataFrame):
    """Grouped bars (classes × runs), one panel per test set; None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if recall.empty:
        return None
    datasets = list(dict.fromkeys(recall["dataset"]))
    fig, axes = plt.subplots(len(datasets), 1, figsize=(9, 3 * len(datasets)), squeeze=False)
    for ax, dataset in zip(axes[:, 0], datasets):
        table = recall[recall["dataset"] == dataset].pivot(index="class", columns="run", values="recall")
        table = table.reindex(list(dict.fromkeys(recall.loc[recall["dataset"] == dataset, "class"])))
        table.plot.bar(ax=ax, rot=0)
        ax.set_title(f"per-class recall: {dataset}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def plot_confusion(run: str, dataset: str, classes: list[str], matrix: np.ndarray, ax=None):
    """Row-normalised confusion matrix with counts written in the cells; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.6 * matrix.shape[1], 1 + 0.6 * matrix.shape[0]))
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(matrix.shape[1]), [*classes, "no answer"], rotation=45, ha="right")
    ax.set_yticks(range(matrix.shape[0]), classes)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{run} — {dataset}")
    return ax
