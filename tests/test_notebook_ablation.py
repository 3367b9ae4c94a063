"""Ablation analysis: run directories (report.json + TensorBoard scalars) → DataFrames and figures, and the
notebook executed headless on small fabricated runs."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from tagfer.core.classes import CLASS_NAMES  # noqa: E402
from tagfer.evaluation import ablation  # noqa: E402
from tagfer.metrics import SCORE_NAMES  # noqa: E402
from tagfer.metrics.report import write_report  # noqa: E402
from tagfer.metrics.scoring import SetScorer  # noqa: E402

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "ablation_analysis.ipynb"
RAFDB = tuple(c for c in CLASS_NAMES if c != "contempt")


def _write_run(run_dir: Path, kind: str, correct: int, scalars: dict[str, list[float]] | None = None) -> None:
    """A run with a rafdb/test report (14 samples, ``correct`` of them right) and optional TensorBoard scalars."""
    scorer = SetScorer(RAFDB, None)
    labels = [RAFDB[i % 7] for i in range(14)]
    predictions = [label if i < correct else None for i, label in enumerate(labels)]
    scorer.update_labels(predictions, labels)
    entry = scorer.entry()
    if kind == "vlm":
        entry["parse_rate"] = 0.9
        entry["faithfulness"] = {name: 0.5 for name in SCORE_NAMES}
    write_report(run_dir, {"rafdb/test": entry}, model={"kind": kind, "classes": list(RAFDB)})
    if scalars:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
        for tag, values in scalars.items():
            for step, value in enumerate(values):
                writer.add_scalar(tag, value, step)
        writer.close()


@pytest.fixture
def runs_root(tmp_path) -> Path:
    """outputs/ with an SFT-only run, a GRPO run (reward, KL and component curves) and a vision baseline."""
    root = tmp_path / "outputs"
    _write_run(root / "sft", "vlm", 7, {"train/loss": [2.0, 1.5]})
    rl = {"reward": [0.1, 0.5, 0.9], "train/kl": [0.0, 0.01, 0.02], "rewards/format/mean": [0.2, 0.6, 1.0], "rewards/format/std": [0.1] * 3}
    _write_run(root / "rl", "vlm", 10, rl)
    _write_run(root / "baseline", "vision_baseline", 12)
    return root


def test_notebook_module_knows_the_report_faithfulness_keys():
    assert ablation.SCORE_NAMES == SCORE_NAMES


def test_runs_become_an_ablation_table(runs_root):
    runs = ablation.load_runs(ablation.find_runs(runs_root))
    assert [r.name for r in runs] == ["baseline", "rl", "sft"]
    table = ablation.ablation_table(runs).set_index("run")
    assert table.loc["rl", "accuracy"] == pytest.approx(10 / 14) and table.loc["baseline", "accuracy"] == pytest.approx(12 / 14)
    assert table.loc["baseline", "parse_rate"] == 1.0 and all(math.isnan(table.loc["baseline", k]) for k in SCORE_NAMES)
    assert table.loc["sft", "mean_iou"] == 0.5 and set(table["dataset"]) == {"rafdb/test"}
    with pytest.raises(FileNotFoundError, match="report.json"):
        ablation.load_run(runs_root)


def test_training_curves_pick_reward_kl_and_components(runs_root):
    runs = ablation.load_runs(ablation.find_runs(runs_root))
    curves = ablation.training_curves(runs)
    assert set(curves["run"]) == {"rl"}  # the SFT run logged only its loss, the baseline nothing
    assert set(curves["curve"]) == {"reward", "kl", "rewards/format"}
    kl = curves[curves["curve"] == "kl"]
    assert kl["tag"].unique().tolist() == ["train/kl"] and kl["value"].tolist() == pytest.approx([0.0, 0.01, 0.02])
    assert ablation.training_curves([r for r in runs if r.name != "rl"]).empty
    assert ablation.plot_training_curves(curves) is not None and ablation.plot_training_curves(curves.iloc[:0]) is None


def test_per_class_recall_and_confusion_matrices(runs_root):
    runs = ablation.load_runs([runs_root / "rl", runs_root / "baseline"])
    recall = ablation.per_class_recall(runs)
    assert len(recall) == 2 * 7 and set(recall["class"]) == set(RAFDB)
    rl = recall[recall["run"] == "rl"].set_index("class")["recall"]
    assert rl.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5])  # 10 of 14: the first 3 classes twice
    (name, dataset, classes, matrix), _ = ablation.confusion_matrices(runs)
    assert (name, dataset) == ("rl", "rafdb/test") and matrix.shape == (7, 8) and matrix[:, -1].sum() == 4
    assert ablation.plot_per_class_recall(recall) is not None
    assert ablation.plot_confusion(name, dataset, classes, matrix) is not None


def test_clashing_run_names_get_their_parent(tmp_path):
    for parent in ("a", "b"):
        _write_run(tmp_path / parent / "eval", "vlm", 3)
    runs = ablation.load_runs(ablation.find_runs(tmp_path))
    assert [r.name for r in runs] == ["a/eval", "b/eval"] and all(r.scalars.empty for r in runs)


def test_an_evaluation_takes_the_curves_of_the_training_run_whose_export_it_scored(tmp_path, monkeypatch):
    _write_run(tmp_path / "runs" / "rl", "vlm", 5, {"reward": [0.1, 0.4]})
    (tmp_path / "runs" / "rl" / "export").mkdir()
    scorer = SetScorer(RAFDB, None)
    scorer.update_labels(["anger"], ["anger"])
    monkeypatch.chdir(tmp_path)  # the checkpoint path is relative, as an evaluation run at the root writes it
    write_report(tmp_path / "eval" / "rl", {"rafdb/test": scorer.entry()}, model={"kind": "vlm"}, checkpoint="runs/rl/export")
    (run,) = ablation.load_runs([tmp_path / "eval" / "rl"])
    assert ablation.training_run_dir(run.report) == Path("runs/rl")
    assert ablation.training_curves([run])["value"].tolist() == pytest.approx([0.1, 0.4])
    assert ablation.locate("eval/rl") == Path("eval/rl") and ablation.locate("notebooks").is_absolute()  # else: the repository's


def _execute(notebook_cwd: Path, parameters: str, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # the kernel spec runs `python`: make it this interpreter
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    cell.source = parameters
    NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(notebook_cwd)}}).execute()
    return notebook


def _text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.notebook
def test_notebook_executes_on_the_runs_under_outputs(runs_root, monkeypatch):
    notebook = _execute(runs_root.parent, "RUN_DIRS = []\nOUTPUTS = None", monkeypatch)
    text = _text(notebook)
    assert "3 run(s):" in text and "vision_baseline" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2 + 3  # curves, per-class recall, one confusion matrix per run
