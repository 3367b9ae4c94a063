"""``stage: eval`` — ``python src/evaluate.py --config configs/eval.yaml eval.checkpoint=DIR`` (``tagfer evaluate``).

1. hold the output directory (``eval.out_dir``, else ``run_dir``; :func:`tagfer.core.run_lock.hold_run_dir`),
   seed, save the resolved config into it;
2. load the exported model (``eval.checkpoint``, else ``model.init_from``, else ``model.name_or_path``),
   with the classes it was trained on (export metadata; all 8 when none are recorded);
3. for every test set (``eval.datasets``, or ``data.test`` when empty): batched greedy generation
   (``eval.batch_size``, ``eval.max_new_tokens``) with a prompt listing the model's classes, parsing,
   and scoring over the test set's own classes (:mod:`tagfer.data.label_space`) with the
   torchmetrics metrics of :mod:`tagfer.metrics` — accuracy, mean class accuracy, macro-F1, parse rate and
   grounding faithfulness against the AU detector's boxes (``au.threshold``, ``eval.iou_threshold``,
   ``eval.prior``);
4. write ``predictions.jsonl``, ``report.json`` and ``report.md`` (:mod:`tagfer.metrics.report`),
   print a summary and, as the last line, ``report: <path of report.json>``.

With ``engine.backend=hf`` evaluation runs in a single process on one device (CUDA when available unless
``trainer.accelerator=cpu``); it is not sharded across DDP ranks. With ``engine.backend=vllm`` the
prompts go, greedy and ``engine.vllm.concurrency`` at a time, to a vLLM server of the exported model
(launched for the run, or ``engine.vllm.url``), which batches them itself and spreads them over its GPUs
with its own tensor/data parallelism (``engine.vllm.args``: ``--tensor-parallel-size``,
``--data-parallel-size``); prompts, parsing and metrics are the same.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from tagfer.core.config import save_config
from tagfer.core.run_lock import hold_run_dir
from tagfer.evaluation.inference import endpoint_predictor, load_inference_model, served_model
from tagfer.metrics.report import print_summary, write_report
from tagfer.metrics.scoring import GroundingOptions
from tagfer.models.engine import vllm_endpoint
from tagfer.models.openai_endpoint import ChatClient
from tagfer.pipeline.sets import evaluate_sets

log = logging.getLogger(__name__)


@contextmanager
def vllm_predictor(cfg, source: str, prompt: str, processor, max_new_tokens: int):
    """The predictor of ``engine.backend=vllm``: a vLLM server for ``source`` (``engine.vllm``: launched
    for the evaluation, or its ``url``), an exported adapter loaded on it at run time."""
    model_dir, adapter, rank = served_model(source)
    vllm_cfg = OmegaConf.to_object(cfg.engine.vllm)
    with vllm_endpoint(vllm_cfg, model_dir, enable_lora=adapter is not None, max_lora_rank=max(rank, 16)) as settings:
        client = ChatClient(settings)
        if adapter is not None:
            client.post("/load_lora_adapter", {"lora_name": "evaluated", "lora_path": str(Path(adapter).resolve())})
            client = ChatClient(dataclasses.replace(settings, model="evaluated"))
        yield endpoint_predictor(client, prompt, processor, max_new_tokens=max_new_tokens)


def run_evaluation(cfg, *, progress: bool = True) -> dict:
    """Evaluate and write the report; returns the report (the content of ``report.json``) with one more
    key, ``report_path``: the path of ``report.json``."""
    out_dir = Path(cfg.eval.out_dir or cfg.run_dir)
    with hold_run_dir(out_dir):  # a second evaluation into out_dir stops at once, naming this one
        return _evaluate(cfg, out_dir, progress)


def _evaluate(cfg, out_dir: Path, progress: bool) -> dict:
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    config_path = save_config(cfg, out_dir)
    engine = load_inference_model(
        cfg.model,
        checkpoint=cfg.eval.checkpoint,
        think_tags=cfg.traces.think_tags,
        accelerator=cfg.trainer.accelerator,
        weights=cfg.engine.backend != "vllm",  # the server generates: no second copy of the weights here
    )
    log.info("evaluating %s (%s, classes %s) on %s", engine.source, engine.family, ", ".join(engine.classes), engine.device)
    max_new_tokens = int(cfg.eval.max_new_tokens)
    with ExitStack() as stack:
        if cfg.engine.backend == "vllm":
            predictor = stack.enter_context(vllm_predictor(cfg, engine.source, engine.prompt, engine.processor, max_new_tokens))
        else:
            predictor = lambda batch: engine.predict(batch["inputs"], max_new_tokens=max_new_tokens)  # noqa: E731
        entries = evaluate_sets(
            cfg,
            collate=engine.collator(),
            predictor=predictor,
            grounding=GroundingOptions.from_config(cfg),
            batch_size=cfg.eval.batch_size,
            out_dir=out_dir,
            progress=progress,
        )
    extra = {
        "model": {"kind": "vlm", "family": engine.family, "classes": list(engine.classes), "think_tags": engine.think_tags},
        "checkpoint": engine.source,
        "config": str(config_path),
        "timings": {"total_s": round(time.perf_counter() - start, 3)},
    }
    report_path = write_report(out_dir, entries, **extra)
    print_summary(entries, report_path)
    return {"datasets": entries, **extra, "report_path": str(report_path)}
