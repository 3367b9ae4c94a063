"""Teacher-trace throughput: the same teacher loop with the ``hf`` engine and with a vLLM server.

    python benchmarks/teacher_throughput.py [--samples 16] [--max-new-tokens 64] [--model DIR] [--device cpu]

Both sides run :func:`tagfer.reasoning.teacher.run_teacher` (format check, label elimination, retries)
over the same synthetic faces, prompts and sampling (temperature ``--temperature``; greedy with 0), with
the same model: ``--model`` (a local VLM directory), else a tiny Qwen2-VL built offline with head_dim 32
(vLLM's CPU attention has no kernel for 16). The ``hf`` side generates ``--batch`` prompts per
``generate``; the ``vllm`` side sends every prompt of a batch at once to a server launched from
``--vllm-python`` (``scripts/setup_vllm.sh``), ``--concurrency`` in flight; server start-up is timed
apart. Reported per side: samples settled per second (traces/s, kept or given up), completions per
second and the kept count; the last line is one JSON object with the ratio vllm/hf.

On a GPU: ``--device cuda --model DIR --vllm-arg=--dtype --vllm-arg=bfloat16`` (the tiny model only
measures correctness; the CPU is for that, the GPU for speed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from tagfer.core.classes import CLASS_NAMES  # noqa: E402
from tagfer.core.config import ModelConfig, TinyModelConfig, VLLMConfig  # noqa: E402
from tagfer.data.face_samples import face_samples  # noqa: E402
from tagfer.models.engine import hf_generator, vllm_endpoint  # noqa: E402
from tagfer.models.generation import suppressed_token_ids  # noqa: E402
from tagfer.models.loader import load_vlm  # noqa: E402
from tagfer.models.openai_endpoint import ChatClient, Sampling, endpoint_generator  # noqa: E402
from tagfer.reasoning.teacher import KEPT, TeacherOptions, TeacherSample, run_teacher  # noqa: E402


def teacher_samples(count: int) -> list[TeacherSample]:
    """Synthetic faces with their true AUs (Top-3 by intensity) and boxes in pixels."""
    out = []
    for s in face_samples(count):
        top = dict(sorted(s["au_prob"].items(), key=lambda kv: -kv[1])[:3])
        boxes = {au: tuple(float(v) for v in s["au_box"][au]) for au in top if au in s["au_box"]}
        out.append(TeacherSample(s["id"], s["image"], CLASS_NAMES[s["label"]], {au: p for au, p in top.items() if au in boxes}, boxes))
    return out


def timed(samples, generate, options) -> dict:
    calls = []

    def counted(images, prompts):
        calls.append(len(prompts))
        return generate(images, prompts)

    start = time.perf_counter()
    outcomes = list(run_teacher(samples, counted, options))
    seconds = time.perf_counter() - start
    return {
        "samples": len(outcomes),
        "kept": sum(o.status == KEPT for o in outcomes),
        "completions": sum(calls),
        "seconds": round(seconds, 2),
        "traces_per_s": round(len(outcomes) / seconds, 3),
        "completions_per_s": round(sum(calls) / seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--model", default="")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vllm-python", default=str(SRC.parent / ".venv-vllm" / "bin" / "python"))
    parser.add_argument(
        "--vllm-arg", action="append", default=None, help="server argument (repeat); default --dtype float32 --max-model-len 2048"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the hf side (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    model_dir = args.model
    if not model_dir:
        from tagfer.models.tiny import build_tiny_model

        model_dir = str(Path(tempfile.mkdtemp()) / "tiny-qwen2-vl")
        build_tiny_model(
            ModelConfig(name_or_path=model_dir, build_tiny=True, tiny=TinyModelConfig(hidden_size=128, intermediate_size=256)), model_dir
        )
    samples = teacher_samples(args.samples)
    options = TeacherOptions(teacher=model_dir, max_format_retries=1, max_label_retries=1, batch_size=args.batch)

    model, processor, _ = load_vlm(ModelConfig(name_or_path=model_dir, family="auto"), for_training=False)
    model.to(args.device)
    hf = timed(samples, hf_generator(model, processor, max_new_tokens=args.max_new_tokens, temperature=args.temperature), options)
    print("hf  ", json.dumps(hf), flush=True)
    del model

    server_args = args.vllm_arg or ["--dtype", "float32", "--max-model-len", "2048"]
    settings = VLLMConfig(python=args.vllm_python, args=server_args, concurrency=args.concurrency)
    start = time.perf_counter()
    with vllm_endpoint(settings, model_dir) as endpoint:
        startup = time.perf_counter() - start
        banned = tuple(suppressed_token_ids(processor))  # as the HF side suppresses them
        sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, banned_token_ids=banned)
        vllm = timed(samples, endpoint_generator(ChatClient(endpoint), sampling), options) | {"server_startup_s": round(startup, 1)}
    print("vllm", json.dumps(vllm), flush=True)
    print(json.dumps({"traces_per_s_ratio_vllm_over_hf": round(vllm["traces_per_s"] / hf["traces_per_s"], 3), "device": args.device}))


if __name__ == "__main__":
    main()
