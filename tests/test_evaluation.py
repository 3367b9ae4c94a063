"""Evaluation: label spaces, report schema and markdown, the shared scoring loop (scripted completions with
known answers and boxes), and the runner on the tiny model (schema, n, confusion shape, accuracy recomputed
from predictions.jsonl, cross-dataset classes, the CLI's last line)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.config import load_config
from tagfer.core.trace import Trace, TraceStep, render_trace
from tagfer.core.vocabulary import AU_REGION
from tagfer.data.label_space import scored_classes, trained_classes, training_classes
from tagfer.metrics import SCORE_NAMES, FaithfulnessCounts
from tagfer.metrics.predictions import PREDICTIONS_FILE, Prediction, read_predictions
from tagfer.metrics.published import PUBLISHED, benchmark_column, published_for
from tagfer.metrics.report import DATASET_KEYS, REPORT_JSON, REPORT_MD, write_report
from tagfer.metrics.scoring import GroundingOptions
from tagfer.pipeline.sets import dataset_keys, evaluate_sets

FOUR = ["happiness", "sadness", "surprise", "anger"]


def _spec(name="synthetic", **fields):
    base = {"name": name, "root": "/nowhere", "split": "test", "classes": None, "num_classes": 8}
    return SimpleNamespace(**{**base, **fields})


def _eval_cfg(tmp_path, configs_dir, datasets: str, *extra):
    return load_config(
        configs_dir / "eval.yaml",
        [f"eval.datasets={datasets}", f"au.cache_dir={tmp_path / 'au'}", f"run_dir={tmp_path / 'run'}", *extra],
    )


def _synthetic(tmp_path, classes: list[str] | None = None, limit: int | None = None) -> str:
    """16 synthetic test faces (2 per class), optionally restricted to ``classes`` or the first ``limit``."""
    restrict = f", classes: [{', '.join(classes)}]" if classes else ""
    restrict += f", limit: {limit}" if limit else ""
    return "{name: synthetic, root: %s, split: test, num_samples: 16%s}" % (tmp_path / "synthetic", restrict)


# ------------------------------------------------------------------------------------- label spaces
def test_each_dataset_is_scored_over_its_own_label_set():
    assert scored_classes(_spec("rafdb"), []) == tuple(c for c in CLASS_NAMES if c != "contempt")
    assert scored_classes(_spec("ferplus"), []) == CLASS_NAMES
    assert scored_classes(_spec("affectnet", num_classes=7), []) == CLASS_NAMES[:7]
    assert scored_classes(_spec("imagefolder"), [6, 1, 1]) == ("happiness", "anger")
    assert scored_classes(_spec("rafdb", classes=["anger", "happiness"]), []) == ("happiness", "anger")


def test_model_classes_come_from_the_export_metadata():
    assert trained_classes({}) == CLASS_NAMES
    assert trained_classes({"classes": ["sadness", "neutral"]}) == ("neutral", "sadness")
    with pytest.raises(ValueError, match="tagfer_export.json"):
        trained_classes({"classes": ["joyful"]})
    data = SimpleNamespace(train=[_spec(classes=["fear"]), _spec(classes=["anger", "fear"])])
    assert training_classes(data) == ("fear", "anger")
    assert training_classes(SimpleNamespace(train=[_spec(classes=["fear"]), _spec("ferplus")])) == CLASS_NAMES
    rafdb_and_fear = SimpleNamespace(train=[_spec("rafdb"), _spec(classes=["fear"])])
    assert training_classes(rafdb_and_fear) == tuple(c for c in CLASS_NAMES if c != "contempt")  # RAF-DB's own 7


def test_dataset_keys_are_unique():
    specs = [_spec("rafdb"), _spec("affectnet", split="val"), _spec("rafdb"), _spec("rafdb")]
    assert dataset_keys(specs) == ["rafdb/test", "affectnet/val", "rafdb/test-2", "rafdb/test-3"]


# ------------------------------------------------------------------------------------------ reports
def test_published_numbers_map_to_the_protocols():
    assert benchmark_column("rafdb", 7) == "RAF-DB"
    assert benchmark_column("affectnet", 7) == "AffectNet-7" and benchmark_column("affectnet", 8) == "AffectNet-8"
    assert benchmark_column("ferplus", 8) == "FERPlus"
    assert benchmark_column("rafdb", 4) is None and benchmark_column("synthetic", 8) is None
    rafdb = published_for("RAF-DB")
    assert [r.accuracy["RAF-DB"] for r in rafdb] == sorted((r.accuracy["RAF-DB"] for r in rafdb), reverse=True)
    assert rafdb[0].method == "FMAE" and len(rafdb) == len(PUBLISHED)
    assert all(0 < v < 100 for r in PUBLISHED for v in r.accuracy.values())


def _entry(classes, accuracy=0.5):
    c = len(classes)
    return {
        "n": 2 * c,
        "classes": list(classes),
        "accuracy": accuracy,
        "mean_class_accuracy": accuracy,
        "macro_f1": None,
        "parse_rate": 1.0,
        "faithfulness": dict.fromkeys(SCORE_NAMES),
        "confusion_matrix": [[2 if i == j else 0 for j in range(c + 1)] for i in range(c)],
    }


def test_report_markdown_puts_real_benchmarks_beside_published_numbers(tmp_path):
    rafdb = scored_classes(_spec("rafdb"), [])
    path = write_report(tmp_path, {"rafdb/test": _entry(rafdb, 0.8125), "synthetic/test": _entry(CLASS_NAMES)}, checkpoint="x")
    report = json.loads(path.read_text())
    assert set(report) == {"datasets", "checkpoint"} and set(report["datasets"]["rafdb/test"]) == set(DATASET_KEYS)
    markdown = (tmp_path / REPORT_MD).read_text()
    assert "rafdb/test beside published RAF-DB results" in markdown
    assert "| **this run** | **81.25** |" in markdown and "| POSTER++ | 92.21 | yes | POSTER V2 README |" in markdown
    assert "synthetic/test beside" not in markdown  # no published protocol for synthetic faces
    with pytest.raises(ValueError, match="lacks"):
        write_report(tmp_path, {"x/test": {"n": 1}})


# --------------------------------------------------------------- the scoring loop, scripted answers
def _scripted_completion(number: int, meta: dict, index: int) -> str:
    """Sample number 4k: right answer, detector boxes; 4k+1: 'contempt' (outside the 4 test classes);
    4k+2: garbage; 4k+3: right answer with a box far from the detector's. ``index``: row in the batch."""
    kind = number % 4
    label = meta["label_name"][index]
    if kind == 2:
        return "no idea what this face shows"
    active = [au for au, p in meta["au_prob"][index].items() if p >= 0.5][:3]
    far = (1.0, 1.0, 3.0, 3.0)
    steps = tuple(TraceStep(AU_REGION[au], (au,), "visible change", far if kind == 3 else meta["au_box"][index][au]) for au in active)
    answer = "contempt" if kind == 1 else label
    return render_trace(Trace("A face.", steps, tuple(active), answer))


def test_scoring_loop_counts_what_the_predictions_say(tmp_path, configs_dir):
    cfg = _eval_cfg(tmp_path, configs_dir, f"[{_synthetic(tmp_path, FOUR)}]")

    def collate(samples):
        keys = ("id", "label_name", "face_found", "au_prob", "au_box")
        return {"meta": {k: [s[k] for s in samples] for k in keys}}

    seen = []

    def predictor(batch):
        meta = batch["meta"]
        out = [Prediction.from_completion(_scripted_completion(len(seen) + i, meta, i)) for i in range(len(meta["id"]))]
        seen.extend(meta["id"])
        return out

    entries = evaluate_sets(
        cfg, collate=collate, predictor=predictor, grounding=GroundingOptions(), batch_size=3, out_dir=tmp_path, progress=False
    )
    entry = entries["synthetic/test"]
    lines = read_predictions(tmp_path / PREDICTIONS_FILE)
    assert entry["n"] == len(lines) == len(seen) == 8  # 16 faces, 2 per class, 4 classes kept
    assert entry["classes"] == FOUR and len(entry["confusion_matrix"]) == 4 and len(entry["confusion_matrix"][0]) == 5
    assert entry["accuracy"] == pytest.approx(sum(line["correct"] for line in lines) / 8) == pytest.approx(0.5)
    assert sum(row[-1] for row in entry["confusion_matrix"]) == 4  # garbage and 'contempt' → no-answer column
    assert [line["prediction"] for line in lines[:3]] == [lines[0]["label"], "contempt", None]
    assert entry["parse_rate"] == pytest.approx(sum(line["valid"] for line in lines) / 8) == pytest.approx(0.75)
    total = FaithfulnessCounts()
    for line in lines:
        counts = {k: v for k, v in line["faithfulness"].items() if k in FaithfulnessCounts.__dataclass_fields__ and k != "au_iou"}
        total = total + FaithfulnessCounts(**counts)
    for name, value in total.scores().items():
        assert entry["faithfulness"][name] == pytest.approx(value)
    exact = [line for i, line in enumerate(lines) if i % 4 == 0 and line["faithfulness"]["cited"]]
    assert exact and all(line["faithfulness"]["mean_iou"] > 0.8 for line in exact)  # integer-rounded detector boxes
    assert all(line["faithfulness"]["hallucinated"] == line["faithfulness"]["cited"] for i, line in enumerate(lines) if i % 4 == 3)


# --------------------------------------------------------------------------- runner, tiny model
@pytest.fixture(scope="module")
def tiny_export(tiny_qwen2_vl_dir, tmp_path_factory):
    """The tiny Qwen2-VL exported as if trained on 5 classes (full weights + tagfer_export.json)."""
    from fixtures_models import tiny_model_cfg
    from tagfer.models.export import export_policy
    from tagfer.models.loader import load_vlm

    model, processor, family = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)
    out = tmp_path_factory.mktemp("export") / "export"
    classes = ["neutral", "happiness", "sadness", "surprise", "contempt"]
    return export_policy(model, processor, out, base_name_or_path=str(tiny_qwen2_vl_dir), family=family, extra_meta={"classes": classes})


def test_runner_writes_the_report_schema_from_its_predictions(tmp_path, configs_dir, tiny_export, capsys):
    from tagfer.cli import main

    datasets = f"[{_synthetic(tmp_path, FOUR)}, {_synthetic(tmp_path, limit=4)}]"
    code = main(
        [
            "evaluate",
            "--config",
            str(configs_dir / "eval.yaml"),
            f"eval.checkpoint={tiny_export}",
            f"eval.datasets={datasets}",
            f"au.cache_dir={tmp_path / 'au'}",
            f"eval.out_dir={tmp_path / 'eval'}",
            "eval.batch_size=4",
            "eval.max_new_tokens=8",
            "trainer.accelerator=cpu",
        ]
    )
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"report: {tmp_path / 'eval' / REPORT_JSON}"
    report = json.loads((tmp_path / "eval" / REPORT_JSON).read_text())
    assert set(report["datasets"]) == {"synthetic/test", "synthetic/test-2"}
    assert report["model"]["classes"] == ["neutral", "happiness", "sadness", "surprise", "contempt"]  # the prompt's
    lines = read_predictions(tmp_path / "eval" / PREDICTIONS_FILE)
    for name, n, classes in (("synthetic/test", 8, FOUR), ("synthetic/test-2", 4, list(CLASS_NAMES))):
        entry = report["datasets"][name]
        assert set(DATASET_KEYS) <= set(entry)
        assert set(entry["faithfulness"]) == set(SCORE_NAMES)
        assert entry["n"] == n and entry["classes"] == classes
        matrix = entry["confusion_matrix"]
        assert len(matrix) == len(classes) and {len(row) for row in matrix} == {len(classes) + 1} and sum(map(sum, matrix)) == n
        mine = [line for line in lines if line["dataset"] == name]
        assert len(mine) == n and all(line["completion"] is not None for line in mine)
        assert entry["accuracy"] == pytest.approx(sum(line["prediction"] == line["label"] for line in mine) / n)
        assert entry["parse_rate"] == pytest.approx(sum(line["valid"] for line in mine) / n)
    assert (tmp_path / "eval" / REPORT_MD).read_text().startswith("# Evaluation report")
    assert (tmp_path / "eval" / "config.yaml").is_file()


def test_inference_prompt_lists_the_trained_classes(tiny_export, tiny_qwen2_vl_dir):
    from fixtures_models import tiny_model_cfg
    from tagfer.evaluation.inference import load_inference_model

    engine = load_inference_model(tiny_model_cfg(tiny_qwen2_vl_dir), checkpoint=str(tiny_export), think_tags=False, accelerator="cpu")
    assert engine.classes == ("neutral", "happiness", "sadness", "surprise", "contempt")
    assert "one of: neutral, happiness, sadness, surprise, contempt." in engine.prompt
    assert engine.collator().prompt == engine.prompt and engine.space.convention == "norm1000"
