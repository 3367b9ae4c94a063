"""The evaluation loop over test sets, shared by the VLM evaluator and the vision-only baseline.

For every test set (``eval.datasets``, or ``data.test`` when that list is empty) the loop builds a
:class:`~tagfer.pipeline.datamodule.FERDataModule` serving only that set (its AU cache is built on first use),
asks a *predictor* for a :class:`~tagfer.metrics.predictions.Prediction` per sample of every batch,
scores them with a :class:`~tagfer.metrics.scoring.SetScorer` over the set's classes, and streams
``predictions.jsonl``. What differs between models is only the collate function and the predictor.

The loop runs in one process (no DDP sharding); batches follow the DataLoader order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import OmegaConf
from tqdm.auto import tqdm

from tagfer.data.label_space import scored_classes
from tagfer.metrics.predictions import PREDICTIONS_FILE, Prediction, PredictionWriter, prediction_line
from tagfer.metrics.scoring import GroundingOptions, SetScorer
from tagfer.pipeline.datamodule import FERDataModule

log = logging.getLogger(__name__)

#: A batch (``{"meta": {...per-sample lists...}, ...}``) → one prediction per sample.
Predictor = Callable[[dict], Sequence[Prediction]]


def eval_specs(cfg) -> list:
    """The test sets to evaluate: ``eval.datasets``, or the data group's ``data.test`` when it is empty."""
    specs = list(cfg.eval.datasets) or list(cfg.data.test)
    if not specs:
        raise ValueError("nothing to evaluate: eval.datasets and data.test are both empty")
    return specs


def dataset_keys(specs: Sequence) -> list[str]:
    """Report keys ``<reader>/<split>`` (``rafdb/test``); a repeated key gets ``-2``, ``-3``, ..."""
    keys: list[str] = []
    for spec in specs:
        base = f"{spec.name}/{spec.split}"
        key, copy = base, 1
        while key in keys:
            copy += 1
            key = f"{base}-{copy}"
        keys.append(key)
    return keys


def single_set_module(cfg, spec, *, collate: Callable, batch_size: int) -> FERDataModule:
    """A DataModule whose test split is ``spec`` alone (no training or validation sets), set up."""
    data_cfg = OmegaConf.merge(cfg.data, {"train": [], "val": [], "test": [spec], "eval_batch_size": int(batch_size)})
    datamodule = FERDataModule(data_cfg, cfg.au, eval_collate=collate, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule


def evaluate_sets(
    cfg,
    *,
    collate: Callable,
    predictor: Predictor,
    grounding: GroundingOptions | None,
    batch_size: int,
    out_dir: str | Path,
    progress: bool = True,
) -> dict[str, dict]:
    """Evaluate every test set; writes ``<out_dir>/predictions.jsonl`` and returns the report entries.

    Args:
        collate: the DataLoader collate (its batches carry ``meta`` with ``id``, ``label_name``,
            ``face_found``, and for grounding ``au_prob``/``au_box`` in the completions' box space).
        predictor: batch → predictions.
        grounding: faithfulness options (reasoning model) or None (no reasoning: the baseline).
    """
    entries: dict[str, dict] = {}
    specs = eval_specs(cfg)
    with PredictionWriter(Path(out_dir) / PREDICTIONS_FILE) as writer:
        for key, spec in zip(dataset_keys(specs), specs):
            datamodule = single_set_module(cfg, spec, collate=collate, batch_size=batch_size)
            classes = scored_classes(spec, datamodule.datasets["test"].labels)
            scorer = SetScorer(classes, grounding)
            loader = datamodule.test_dataloader()
            start = time.perf_counter()
            for batch in tqdm(loader, desc=key, unit="batch", disable=not progress):
                _score_batch(batch, predictor(batch), key, scorer, writer)
            seconds = time.perf_counter() - start
            entry = scorer.entry()
            entry["skipped"] = dict(datamodule.skipped.get("test", {}))
            entry["timings"] = {"seconds": round(seconds, 3), "samples_per_s": round(entry["n"] / seconds, 3) if seconds > 0 else None}
            entries[key] = entry
            log.info("%s: %d samples in %.1f s", key, entry["n"], seconds)
    return entries


def _score_batch(batch: dict, predictions: Sequence[Prediction], key: str, scorer: SetScorer, writer: PredictionWriter) -> None:
    meta = batch["meta"]
    labels = meta["label_name"]
    if len(predictions) != len(labels):
        raise ValueError(f"the predictor returned {len(predictions)} predictions for a batch of {len(labels)} samples")
    if scorer.grounding is not None:
        counts = scorer.update_traces([p.trace for p in predictions], labels, meta["au_prob"], meta["au_box"])
    else:
        scorer.update_labels([p.answer for p in predictions], labels)
        counts = [None] * len(predictions)
    for i, prediction in enumerate(predictions):
        writer.write(
            prediction_line(
                sample_id=meta["id"][i],
                dataset=key,
                label=labels[i],
                prediction=prediction,
                face_found=meta["face_found"][i],
                counts=counts[i],
            )
        )
