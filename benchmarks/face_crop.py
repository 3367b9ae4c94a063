"""Does cropping to the face help? SFT on synthetic scenes with small faces, with and without ``data.face_crop``.

The faces are the synthetic benchmark's (AU cache = the generator's ground truth, so "mean IoU" is against
the true AU regions) drawn with ``pose: random`` and ``canvas`` > 1: random pose, scale and position, and
the face ``canvas`` times smaller than the image — whole photos with a small face, like AffectNet's 2017
images or a camera's. Two runs share the data, the AU cache and the tiny Qwen2-VL (vision tower pretrained
on AU maps of face-filling synthetic faces, then frozen) and differ only in ``data.face_crop.source``:

* **face crop** (``auto``): every image is cropped to its face box (± ``margin``) for the traces, SFT
  and evaluation;
* **whole image** (``none``): the model sees the whole scene, as before the crop existed.

Same budget for both (faces, epochs, steps, seed). Each run builds its own template traces (boxes in the
space of the image it serves), trains SFT, and is evaluated on the same test split with the project's
evaluator; the table gives accuracy, mean class accuracy, parse rate, mean IoU of cited boxes against the
true AU regions and hallucination rate. ``--results`` appends it to ``benchmarks/RESULTS.md``.

    python benchmarks/face_crop.py                 # the study (about 25 min on 2 busy CPU cores)
    python benchmarks/face_crop.py --quick         # a smoke run of every stage (minutes)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from learning import stage, table  # benchmarks/learning.py: the same stage configs and table

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {"face_crop": "auto", "whole_image": "none"}
LABELS = {"face_crop": "face crop (`auto`)", "whole_image": "whole image (`none`)"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/face_crop", help="work directory (data, caches, runs)")
    parser.add_argument("--train", type=int, default=1024, help="synthetic training scenes")
    parser.add_argument("--test", type=int, default=192, help="synthetic test scenes")
    parser.add_argument("--image-size", type=int, default=320, help="side of the scenes in pixels (320: a crop reaches model.max_pixels)")
    parser.add_argument("--canvas", type=float, default=3.0, help="the face is drawn this many times smaller")
    parser.add_argument("--sft-epochs", type=int, default=3)
    parser.add_argument("--pretrain-steps", type=int, default=1000, help="vision-tower pretraining steps")
    parser.add_argument("--pretrain-samples", type=int, default=2048, help="vision-tower pretraining faces")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (trainer.num_threads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that every stage runs")
    parser.add_argument("--results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.sft_epochs, args.pretrain_steps, args.pretrain_samples = 32, 16, 1, 10, 64
    return args


def base_config(args):
    """configs/demo.yaml (SFT settings, Top-3 traces) on synthetic scenes, with the study's tower pretraining."""
    from tagfer.core.config import load_config

    out = Path(args.out)
    data = out / "data"
    spec = "{name: synthetic, root: %s, split: %s, num_samples: %d, image_size: %d, pose: random, canvas: %s}"
    overrides = [
        f"data.train=[{spec % (data, 'train', args.train, args.image_size, args.canvas)}]",
        f"data.val=[{spec % (data, 'val', 16, args.image_size, args.canvas)}]",
        f"data.test=[{spec % (data, 'test', args.test, args.image_size, args.canvas)}]",
        f"au.cache_dir={out / 'au_cache'}",
        f"seed={args.seed}",
        f"model.name_or_path={out / 'models' / 'tiny-qwen2-vl'}",
        f"model.tiny.vision_pretrain_steps={args.pretrain_steps}",
        f"model.tiny.vision_pretrain_samples={args.pretrain_samples}",
        f"trainer.num_threads={args.threads}",
        "trainer.enable_progress_bar=false",
        "sft.val_generate_samples=4",
    ]
    if args.quick:
        overrides.append("eval.max_new_tokens=64")
    return load_config(REPO / "configs" / "demo.yaml", overrides)


def run(args) -> dict:
    from tagfer.evaluation.runner import run_evaluation
    from tagfer.models.tiny import ensure_tiny_model
    from tagfer.pipeline.datamodule import FERDataModule
    from tagfer.reasoning.build import build_traces
    from tagfer.training.sft_stage import run_sft

    out = Path(args.out)
    cfg = base_config(args)
    torch.set_num_threads(cfg.trainer.num_threads)
    start = time.perf_counter()  # shared by both runs: the scenes, their AU cache and the tiny model with its tower
    FERDataModule(cfg.data, cfg.au, seed=cfg.seed).prepare_data()
    ensure_tiny_model(cfg.model)
    shared = time.perf_counter() - start
    reports, timings = {}, {}
    for variant, source in VARIANTS.items():
        start = time.perf_counter()
        train = OmegaConf.to_container(cfg.data.train[0])
        train["traces"] = str(out / variant / "traces.jsonl")
        data = {"face_crop": {"source": source}, "train": [train]}
        sft = stage(cfg, "sft", out / variant / "sft", data=data, trainer={"max_epochs": args.sft_epochs, "max_steps": -1})
        export = run_sft(sft, build_traces=build_traces)
        timings[variant] = time.perf_counter() - start
        evaluation = stage(cfg, "eval", out / variant / "eval", data=data, eval={"checkpoint": str(export)})
        reports[variant] = run_evaluation(evaluation, progress=False)
    return {"reports": reports, "timings": timings, "shared_s": shared}


def settings(args) -> str:
    return (
        f"{args.train} training / {args.test} test synthetic scenes ({args.image_size} px, pose random, canvas "
        f"{args.canvas}), tower pretraining {args.pretrain_steps} steps on {args.pretrain_samples} faces, SFT "
        f"{args.sft_epochs} epochs, {args.threads} torch thread(s), seed {args.seed}; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    start = time.perf_counter()
    results = run(args)
    text = table(results, LABELS)
    print(settings(args) + f"; wall {time.perf_counter() - start:.0f} s, of which data + AU cache + tiny model {results['shared_s']:.0f} s")
    print(text)
    if args.results:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as handle:
            handle.write(f"\n## Face crop (benchmarks/face_crop.py)\n\n{settings(args)}.\n\n{text}\n")
    print(json.dumps({variant: report["datasets"] for variant, report in results["reports"].items()}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
