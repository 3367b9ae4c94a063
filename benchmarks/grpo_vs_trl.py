"""GRPO step throughput: this project's GRPOModule vs TRL's GRPOTrainer, side by side on the CPU.

    pip install -e .[bench]          # pins trl (benchmark only; not a runtime dependency)
    python benchmarks/grpo_vs_trl.py [--steps 4] [--batch 2] [--group 8] [--max-new-tokens 32]

Both sides get the same tiny Qwen2-VL checkpoint directory (built once), the same prompts (the task
prompt with the system prompt) and synthetic face images, the same G, prompts per step, max_new_tokens,
temperature, top-p/top-k, beta, loss type (dapo), group reward scaling, learning rate, gradient clipping,
LoRA (:func:`tagfer.models.policy.lora_config`: r, alpha, targets, the merger as modules_to_save) and the
same reward functions (format, answer, au_grounding; TRL calls the project's callbacks). Each side runs
in its own process, one after the other, with the same number of torch threads; after ``--warmup``
steps, ``--steps`` optimizer steps are timed end to end (data loading and collation included).

Reported per side: completions/s (B·G per step), generated tokens/s, seconds per optimizer step, the
same per CPU-second of the process (``time.process_time``: robust to other jobs on a shared machine,
where wall time is not), the fraction of the step spent generating, peak resident memory of the process
(``ru_maxrss``) and its rise during training (peak − RSS when training starts), and on a GPU the peak
GPU memory allocated. The last line is one JSON object with the ratios ours/TRL
(``completions_per_s_ratio`` > 1: we are faster; ``peak_memory_ratio`` < 1: we use less — GPU memory on
a GPU, peak RSS on the CPU; ``completions_per_cpu_s_ratio``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size (MiB) from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Shapes of the random Qwen2-VL the sides share. ``tiny``: the tests' model (hidden 64, 2 layers,
#: vision 64 x 2, 112 px → 16 image tokens): every op is so small that per-op Python overhead is what
#: gets timed. ``small``: hidden 256, 4 layers, vision 256 x 4, 224 px → 64 image tokens: compute
#: dominates as it does for a real checkpoint on a GPU, with the vision tower costing about twice the
#: language model per image token, as in Qwen2-VL-2B (675M-parameter ViT on 4 patches per token).
PRESETS = {
    "tiny": {"image_size": 112, "tiny": {}},
    # Qwen2-VL-2B's shape (vocabulary and vision heads aside: the project tokenizer has 1024 tokens and the
    # tiny builder shares the head count), for a GPU: --device cuda --preset 2b
    "2b": {
        "image_size": 448,
        "tiny": {"hidden_size": 1536, "num_layers": 28, "num_heads": 16, "num_kv_heads": 2, "intermediate_size": 8960,
                 "vision_depth": 32, "vision_hidden_size": 1280},
    },
    "small": {
        "image_size": 224,
        "tiny": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 1024,
                 "vision_depth": 4, "vision_hidden_size": 256},
    },
}


def model_cfg(args):
    from tagfer.core.config import LoRAConfig, ModelConfig, TinyModelConfig

    return ModelConfig(
        name_or_path=args.model_dir,
        tiny=TinyModelConfig(family="qwen2_vl", **PRESETS[args.preset]["tiny"]),
        lora=LoRAConfig(r=args.lora_r, alpha=2 * args.lora_r, dropout=0.0),
        max_pixels=image_size(args) ** 2,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def image_size(args) -> int:
    return args.image_size or PRESETS[args.preset]["image_size"]


def rl_cfg(args):
    from tagfer.core.config import OptimConfig, RewardSpec, RLConfig

    return RLConfig(
        optim=OptimConfig(lr=args.lr, scheduler="constant", warmup_ratio=0.0, weight_decay=0.0),
        num_generations=args.group,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        beta=args.beta,
        loss_type="dapo",
        scale_rewards="group",
        share_image_features=args.share_images,
        **({} if args.micro_batch is None else {"logprob_micro_batch": args.micro_batch}),
        rewards=[RewardSpec(name=name, weight=1.0) for name in ("format", "answer", "au_grounding")],
    )


def samples_and_meta(args, processor, family):
    """The synthetic faces and, per sample id, the reward metadata the collator computes."""
    from tagfer.data.face_samples import face_samples
    from tagfer.models.collate import PromptCollator
    from tagfer.models.space import ModelSpace

    samples = face_samples((args.warmup + args.steps) * args.batch, image_size=image_size(args))
    collate = PromptCollator(processor, ModelSpace.of(processor, family))
    meta = collate.meta(samples)
    by_id = {sample_id: {key: meta[key][i] for key in meta} for i, sample_id in enumerate(meta["id"])}
    return samples, collate, by_id


# ------------------------------------------------------------------------------------------------ ours
def run_ours(args) -> dict:
    import lightning as L
    import torch

    from tagfer.models.loader import load_vlm
    from tagfer.models.policy import prepare_policy
    from tagfer.training.grpo_module import GRPOModule
    from tagfer.training.rewards import build_rewards

    torch.manual_seed(0)
    mcfg, rcfg = model_cfg(args), rl_cfg(args)
    model, processor, family = load_vlm(mcfg, for_training=True)
    policy = prepare_policy(model, mcfg)
    samples, collate, _ = samples_and_meta(args, processor, family)
    module = GRPOModule(policy, processor, rcfg, build_rewards(rcfg.rewards), convention="norm1000", gradient_clip_val=1.0)
    loader = torch.utils.data.DataLoader(samples, batch_size=args.batch, shuffle=False, collate_fn=collate)
    timer = StepTimer(args.warmup)

    class Record(L.Callback):
        def on_train_start(self, trainer, pl_module):
            timer.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            metrics = trainer.callback_metrics
            timer.step(
                tokens=float(metrics["num_tokens"]),
                generation_s=float(metrics["generation_time_fraction"]) * float(metrics["step_time"]),
            )

    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_steps=args.warmup + args.steps,
        precision="bf16-mixed" if args.device == "cuda" else "32-true",  # = TRL's bf16=True (autocast) logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[Record()],
    )
    trainer.fit(module, loader)
    return timer.result(args, version="tagfer")


# ------------------------------------------------------------------------------------------------- TRL
def run_trl(args) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tagfer.core.prompt import SYSTEM_PROMPT
    from tagfer.models.inputs import to_pil
    from tagfer.models.loader import load_vlm
    from tagfer.models.policy import lora_config
    from tagfer.training.rewards import build_rewards

    torch.manual_seed(0)
    mcfg, rcfg = model_cfg(args), rl_cfg(args)
    model, processor, family = load_vlm(mcfg, for_training=True)
    samples, collate, by_id = samples_and_meta(args, processor, family)
    prompt = collate.prompt
    dataset = Dataset.from_dict(
        {
            "prompt": [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}] for _ in samples],
            "image": [to_pil(sample["image"]) for sample in samples],
            "sample_id": [sample["id"] for sample in samples],
        }
    )
    reward_funcs = [trl_reward(callback, by_id) for callback in build_rewards(rcfg.rewards)]
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=args.batch * args.group,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        beta=args.beta,
        loss_type="dapo",
        scale_rewards="group",
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=args.warmup + args.steps,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=args.device == "cpu",
        bf16=args.device == "cuda",  # the model loads in bfloat16 on a GPU (model.dtype auto), as on our side
        dataloader_num_workers=0,
        shuffle_dataset=False,
        seed=0,
        log_completions=False,
        disable_tqdm=True,
    )
    timer = StepTimer(args.warmup)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset, processing_class=processor, peft_config=lora_config(mcfg))
    generate = trainer._generate_single_turn
    generation_s = [0.0]

    def timed_generate(*a, **k):  # instrumentation only: TRL's own generation call, timed
        start = time.perf_counter()
        try:
            return generate(*a, **k)
        finally:
            generation_s[0] += time.perf_counter() - start

    trainer._generate_single_turn = timed_generate

    class Record(TrainerCallback):
        def on_train_begin(self, *a, **k):
            timer.start()

        def on_log(self, _args, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                timer.pending_tokens = logs["completions/mean_length"] * args.batch * args.group

        def on_step_end(self, *a, **k):
            timer.step(tokens=None, generation_s=generation_s[0])
            generation_s[0] = 0.0

    trainer.add_callback(Record())
    trainer.train()
    return timer.result(args, version=trl.__version__)


def trl_reward(callback, by_id: dict):
    """A TRL reward function that scores with the project's callback (same inputs as our side)."""

    def reward(prompts, completions, completion_ids, sample_id, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        meta = [by_id[i] for i in sample_id]
        batch = {
            "label": [m["label_name"] for m in meta],
            "au_prob": [m["au_prob"] for m in meta],
            "au_box": [m["au_box"] for m in meta],
            "image_extent": [m["image_extent"] for m in meta],
            "id": list(sample_id),
            "completion_length": [len(ids) for ids in completion_ids],
        }
        return [None if value is None else float(value) for value in callback(texts, batch)]

    reward.__name__ = callback.name
    return reward


# ---------------------------------------------------------------------------------------------- timing
class StepTimer:
    """Wall time per optimizer step after ``warmup`` steps, tokens and generation time per step."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.count = 0
        self.timed_from = None
        self.tokens: list[float] = []
        self.generation: list[float] = []
        self.pending_tokens = None
        self.rss_start = None

    def start(self) -> None:
        self.rss_start = rss_mb()
        self.timed_from = time.perf_counter()
        self.cpu_from = time.process_time()

    def step(self, *, tokens: float | None, generation_s: float) -> None:
        self.count += 1
        if self.count == self.warmup:
            self.timed_from = time.perf_counter()
            self.cpu_from = time.process_time()
        if self.count > self.warmup:
            self.tokens.append(tokens if tokens is not None else self.pending_tokens)
            self.generation.append(generation_s)

    def result(self, args, *, version: str) -> dict:
        import torch

        elapsed = time.perf_counter() - self.timed_from
        cpu = time.process_time() - self.cpu_from
        steps = len(self.generation)
        tokens = [t for t in self.tokens if t is not None]
        return {
            "version": version,
            "steps": steps,
            "s_per_step": elapsed / steps,
            "completions_per_s": steps * args.batch * args.group / elapsed,
            "completions_per_cpu_s": steps * args.batch * args.group / cpu,
            "cpu_s_per_step": cpu / steps,
            "tokens_per_s": sum(tokens) / elapsed if len(tokens) == steps else float("nan"),
            "generation_fraction": sum(self.generation) / elapsed,
            "peak_rss_mb": peak_rss_mb(),
            "rss_rise_mb": peak_rss_mb() - self.rss_start,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else float("nan"),
        }


# ------------------------------------------------------------------------------------------------ main
def side_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = run_ours(args) if args.side == "ours" else run_trl(args)
    Path(args.result).write_text(json.dumps(result))


def run_side(side: str, args, out_dir: Path) -> dict:
    result = out_dir / f"{side}.json"
    command = [sys.executable, __file__, "--side", side, "--result", str(result)]
    for key in ("steps", "warmup", "batch", "group", "max_new_tokens", "temperature", "beta", "lr", "lora_r", "preset", "image_size", "micro_batch", "threads", "device", "model_dir"):
        if getattr(args, key) is not None:
            command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    command.append("--share-images" if args.share_images else "--no-share-images")
    command.append("--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-5000:]}")
    return json.loads(result.read_text())


def table(ours: dict, theirs: dict) -> str:
    rows = [
        ("completions/s", "completions_per_s", "{:.2f}"),
        ("generated tokens/s", "tokens_per_s", "{:.1f}"),
        ("s / optimizer step", "s_per_step", "{:.2f}"),
        ("completions / CPU-second (process time)", "completions_per_cpu_s", "{:.2f}"),
        ("CPU-s / optimizer step", "cpu_s_per_step", "{:.2f}"),
        ("generation share of step", "generation_fraction", "{:.0%}"),
        ("peak RSS (MiB)", "peak_rss_mb", "{:.0f}"),
        ("RSS rise in training (MiB)", "rss_rise_mb", "{:.0f}"),
        ("peak GPU memory allocated (MiB)", "peak_gpu_mb", "{:.0f}"),
    ]
    lines = [f"| metric | tagfer | TRL {theirs['version']} | ratio (ours/TRL) |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        if ours[key] != ours[key]:  # NaN: not measured on this device
            continue
        lines.append(f"| {label} | {fmt.format(ours[key])} | {fmt.format(theirs[key])} | {ours[key] / theirs[key]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2, help="prompts per optimizer step")
    parser.add_argument("--group", type=int, default=8, help="G: completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small", help="model shape (see PRESETS)")
    parser.add_argument("--image-size", type=int, default=0, help="face images of this size, max_pixels = size² (0: the preset's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                        help="activation checkpointing on both sides (TRL's default is on)")
    parser.add_argument("--model-dir", default=None, help="tiny Qwen2-VL directory (built in a temp dir when omitted)")
    parser.add_argument("--share-images", action=argparse.BooleanOptionalAction, default=True,
                        help="ours: encode each image once per group (rl.share_image_features)")
    parser.add_argument("--micro-batch", type=int, default=None, help="ours: rl.logprob_micro_batch (rows per log-prob pass, 0 = all; default: the config's)")
    parser.add_argument("--levers", action="store_true", help="only our side, once per speed lever switched off")
    parser.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="grpo-vs-trl-") as tmp:
        if args.model_dir is None:
            from tagfer.models.tiny import build_tiny_model

            args.model_dir = str(Path(tmp) / "tiny")
            build_tiny_model(model_cfg(args), Path(args.model_dir))
        if args.levers:
            print(describe(args))
            print(lever_table(args, Path(tmp)))
            return
        ours = run_side("ours", args, Path(tmp))
        theirs = run_side("trl", args, Path(tmp))
    print(describe(args))
    print(table(ours, theirs))
    print(json.dumps({
        "completions_per_s_ratio": round(ours["completions_per_s"] / theirs["completions_per_s"], 3),
        "peak_memory_ratio": round(ours[memory_key(args)] / theirs[memory_key(args)], 3),
        "completions_per_cpu_s_ratio": round(ours["completions_per_cpu_s"] / theirs["completions_per_cpu_s"], 3),
        "trl_version": theirs["version"],
        "generation_fraction": {"tagfer": round(ours["generation_fraction"], 3), "trl": round(theirs["generation_fraction"], 3)},
    }))


#: Our side with one lever changed (``--levers``): label → changes to the arguments.
LEVERS = (
    ("all levers (default)", lambda args: {}),
    ("images encoded G times (--no-share-images)", lambda args: {"share_images": False}),
    ("log-prob passes in chunks of 8 rows (--micro-batch 8)", lambda args: {"micro_batch": 8}),
    ("activation checkpointing off (--no-gradient-checkpointing)", lambda args: {"gradient_checkpointing": False}),
    ("beta=0: no reference pass", lambda args: {"beta": 0.0}),
    ("image side x2 (max_pixels x4)", lambda args: {"image_size": 2 * image_size(args)}),
)


def lever_table(args, out_dir: Path) -> str:
    """Our side once per lever setting: s/step, completions/s, generation share."""
    lines = ["| setting | s / step | CPU-s / step | completions/s | peak RSS (MiB) | generation share |", "|---|---:|---:|---:|---:|---:|"]
    for label, change in LEVERS:
        r = run_side("ours", argparse.Namespace(**{**vars(args), **change(args)}), out_dir)
        lines.append(
            f"| {label} | {r['s_per_step']:.2f} | {r['cpu_s_per_step']:.2f} | {r['completions_per_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['generation_fraction']:.0%} |"
        )
    return "\n".join(lines)


def memory_key(args) -> str:
    """Peak memory compared: GPU memory allocated on a GPU, the process's peak RSS on the CPU."""
    return "peak_gpu_mb" if args.device == "cuda" else "peak_rss_mb"


def describe(args) -> str:
    load = os.getloadavg()
    return (
        f"random Qwen2-VL ({args.preset}), B={args.batch} prompts x G={args.group}, max_new_tokens={args.max_new_tokens}, T={args.temperature}, "
        f"beta={args.beta}, LoRA r={args.lora_r}, gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, {image_size(args)}px, {args.threads} thread(s), {args.steps} timed steps after {args.warmup}; "
        f"{args.device}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
