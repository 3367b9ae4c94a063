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

``--engine vllm``: our rollouts come from a vLLM server launched for the run (``--vllm-python``, the
environment of ``scripts/setup_vllm.sh``; the LoRA adapter pushed after every optimizer step,
:mod:`tagfer.training.engine_rollout`) and TRL's side runs with ``use_vllm=True`` in server mode against
a ``trl vllm-serve`` you start (``--trl-vllm-port``; TRL syncs weights to it over NCCL, so that side
needs a GPU). On the CPU (``--device cpu``) TRL's side cannot run: our vLLM side is compared with our
``hf`` side instead, with the engine/trainer log-prob gap (``engine_logprob_diff_mean|max``).

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
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
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
        "tiny": {
            "hidden_size": 1536,
            "num_layers": 28,
            "num_heads": 16,
            "num_kv_heads": 2,
            "intermediate_size": 8960,
            "vision_depth": 32,
            "vision_hidden_size": 1280,
        },
    },
    "small": {
        "image_size": 224,
        "tiny": {
            "hidden_size": 256,
            "num_layers": 4,
            "num_heads": 4,
            "num_kv_heads": 2,
            "intermediate_size": 1024,
            "vision_depth": 4,
            "vision_hidden_size": 256,
        },
    },
}


def model_cfg(args):
    from tagfer.core.config import LoRAConfig, ModelConfig, TinyModelConfig

    return ModelConfig(
        name_or_path=args.model_dir,
        tiny=TinyModelConfig(family="qwen2_vl", **PRESETS[args.preset]["tiny"]),
        lora=LoRAConfig(r=args.lora_r, alpha=2 * args.lora_r, dropout=0.0),
        train_projector=args.engine != "vllm",  # vLLM's LoRA cannot carry the merger (modules_to_save)
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
    import torch

    from tagfer.models.loader import load_vlm
    from tagfer.models.policy import prepare_policy
    from tagfer.training.grpo_module import GRPOModule
    from tagfer.training.grpo_stage import module_settings
    from tagfer.training.rewards import build_rewards

    torch.manual_seed(0)
    mcfg, rcfg = model_cfg(args), rl_cfg(args)
    model, processor, family = load_vlm(mcfg, for_training=True)
    policy = prepare_policy(model, mcfg)
    samples, collate, _ = samples_and_meta(args, processor, family)
    with ExitStack() as stack:
        engine = stack.enter_context(vllm_engine(args, policy, processor, collate.prompt, rcfg)) if args.engine == "vllm" else None
        module = GRPOModule(
            policy, processor, build_rewards(rcfg.rewards), **module_settings(rcfg), convention="norm1000",
            gradient_clip_val=1.0, engine=engine, importance_sampling_cap=args.tis_cap,
        )  # fmt: skip
        return fit_ours(args, module, samples, collate, version=f"tagfer ({args.engine})")


@contextmanager
def vllm_engine(args, policy, processor, prompt: str, rcfg):
    """Our rollout engine for ``--engine vllm``: a server launched on the base model for the run."""
    from tagfer.core.config import VLLMConfig
    from tagfer.models.engine import vllm_endpoint
    from tagfer.models.generation import eos_token_ids, suppressed_token_ids
    from tagfer.models.openai_endpoint import ChatClient
    from tagfer.training.engine_rollout import LOGPROBS_MODE_ARGS, VLLMRollouts
    from tagfer.training.rollout import RolloutSampling

    cpu = args.device == "cpu"
    server_args = ["--dtype", "float32" if cpu else "bfloat16", "--max-model-len", "4096", *LOGPROBS_MODE_ARGS, *args.vllm_arg]
    vllm_cfg = VLLMConfig(
        python=args.vllm_python, args=server_args, env={"VLLM_CPU_KVCACHE_SPACE": "2"} if cpu else {}, concurrency=args.batch
    )
    with vllm_endpoint(vllm_cfg, args.model_dir, enable_lora=True, max_lora_rank=max(16, args.lora_r)) as settings:
        yield VLLMRollouts(
            ChatClient(dataclasses.replace(settings, model="policy")),
            Path(tempfile.mkdtemp(prefix="grpo-vllm-adapter-")) / "adapter",
            prompt=prompt,
            sampling=RolloutSampling.of(rcfg),
            eos_ids=eos_token_ids(policy, processor),
            banned_token_ids=suppressed_token_ids(processor),
        )


def fit_ours(args, module, samples, collate, *, version: str) -> dict:
    import lightning as L
    import torch

    loader = torch.utils.data.DataLoader(samples, batch_size=args.batch, shuffle=False, collate_fn=collate)
    timer = StepTimer(args.warmup)
    gaps: list[tuple[float, float]] = []

    class Record(L.Callback):
        def on_train_start(self, trainer, pl_module):
            timer.start()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            metrics = trainer.callback_metrics
            timer.step(
                tokens=float(metrics["num_tokens"]),
                generation_s=float(metrics["generation_time_fraction"]) * float(metrics["step_time"]),
            )
            if "train/engine_logprob_diff_mean" in metrics:
                gaps.append((float(metrics["train/engine_logprob_diff_mean"]), float(metrics["train/engine_logprob_diff_max"])))

    trainer = L.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        max_steps=args.warmup + args.steps,
        precision="bf16-mixed" if args.device == "cuda" else "32-true",  # = TRL's bf16=True (autocast)
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Record()],
    )
    trainer.fit(module, loader)
    result = timer.result(args, version=version)
    if gaps:
        result["engine_logprob_diff_mean"] = sum(mean for mean, _ in gaps) / len(gaps)
        result["engine_logprob_diff_max"] = max(largest for _, largest in gaps)
    return result


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
        **trl_vllm_options(args, GRPOConfig.__dataclass_fields__),
    )
    timer = StepTimer(args.warmup)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(mcfg),
    )
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


def trl_vllm_options(args, config_fields) -> dict:
    """TRL's ``use_vllm`` server mode (``--engine vllm``): a ``trl vllm-serve`` on ``--trl-vllm-port``, TIS as
    ours (per-token truncation; ``vllm_importance_sampling_mode`` where this TRL has it)."""
    if args.engine != "vllm":
        return {}
    options = {"use_vllm": True, "vllm_mode": "server", "vllm_server_host": "127.0.0.1", "vllm_server_port": args.trl_vllm_port}
    options["vllm_importance_sampling_correction"] = args.tis_cap is not None
    if args.tis_cap is not None:
        options["vllm_importance_sampling_cap"] = args.tis_cap
        if "vllm_importance_sampling_mode" in config_fields:
            options["vllm_importance_sampling_mode"] = "token_truncate"
    return options


def trl_reward(callback, by_id: dict):
    """A TRL reward function that scores with the project's callback (same inputs as our side)."""
    from tagfer.training.rewards import GRPOBatch

    def reward(prompts, completions, completion_ids, sample_id, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        meta = [by_id[i] for i in sample_id]
        batch = GRPOBatch.of(
            texts,
            label_name=[m["label_name"] for m in meta],
            au_prob=[m["au_prob"] for m in meta],
            au_box=[m["au_box"] for m in meta],
            image_extent=[m["image_extent"] for m in meta],
            id=list(sample_id),
            completion_length=[len(ids) for ids in completion_ids],
        )
        return [None if value is None else float(value) for value in callback(batch)]

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
    for key in (
        "steps",
        "warmup",
        "batch",
        "group",
        "max_new_tokens",
        "temperature",
        "beta",
        "lr",
        "lora_r",
        "preset",
        "image_size",
        "micro_batch",
        "threads",
        "device",
        "model_dir",
        "engine",
        "vllm_python",
        "trl_vllm_port",
        "tis_cap",
    ):
        if getattr(args, key) is not None:
            command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    command += [f"--vllm-arg={value}" for value in args.vllm_arg]
    command.append("--share-images" if args.share_images else "--no-share-images")
    command.append("--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-5000:]}")
    return json.loads(result.read_text())


def table(ours: dict, theirs: dict) -> str:
    """Markdown rows ours vs theirs (``theirs`` is TRL, or our ``hf`` side on the CPU with ``--engine vllm``)."""
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
    name = theirs["version"] if theirs["version"].startswith("tagfer") else f"TRL {theirs['version']}"
    lines = [f"| metric | {ours['version']} | {name} | ratio |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        if ours[key] != ours[key]:  # NaN: not measured on this device
            continue
        lines.append(f"| {label} | {fmt.format(ours[key])} | {fmt.format(theirs[key])} | {ours[key] / theirs[key]:.2f} |")
    for key in ("engine_logprob_diff_mean", "engine_logprob_diff_max"):
        if key in ours:
            lines.append(f"| {key} (vLLM vs policy log-probs) | {ours[key]:.2e} | | |")
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
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="activation checkpointing on both sides (TRL's default is on)",
    )
    parser.add_argument("--model-dir", default=None, help="tiny Qwen2-VL directory (built there when missing; in a temp dir when omitted)")
    parser.add_argument(
        "--share-images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ours: encode each image once per group (rl.share_image_features)",
    )
    parser.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="ours: rl.logprob_micro_batch (rows per log-prob pass, 0 = all; default: the config's)",
    )
    parser.add_argument("--levers", action="store_true", help="only our side, once per speed lever switched off")
    parser.add_argument("--engine", choices=("hf", "vllm"), default="hf", help="rollouts: in-process generate, or vLLM on both sides")
    parser.add_argument(
        "--vllm-python",
        default=str(Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"),
        help="ours, --engine vllm: the vLLM environment's interpreter (scripts/setup_vllm.sh)",
    )
    parser.add_argument("--vllm-arg", action="append", default=[], help="ours, --engine vllm: one more server argument (repeat)")
    parser.add_argument("--trl-vllm-port", type=int, default=8000, help="TRL, --engine vllm: port of the `trl vllm-serve` you started")
    parser.add_argument(
        "--tis-cap", type=float, default=None, help="--engine vllm: truncated importance sampling cap on both sides (default off)"
    )
    parser.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="grpo-vs-trl-") as tmp:
        if args.model_dir is None or not Path(args.model_dir).exists():  # a named directory is kept (a server can load it)
            from tagfer.models.tiny import build_tiny_model

            args.model_dir = args.model_dir or str(Path(tmp) / "tiny")
            build_tiny_model(model_cfg(args), Path(args.model_dir))
        if args.levers:
            print(describe(args))
            print(lever_table(args, Path(tmp)))
            return
        ours = run_side("ours", args, Path(tmp))
        if args.engine == "vllm" and args.device == "cpu":  # TRL's vLLM weight sync is NCCL: compare with our hf side
            print("TRL use_vllm=True needs a GPU (NCCL weight sync to `trl vllm-serve`): comparing with our hf rollouts instead")
            theirs = run_side("ours", argparse.Namespace(**{**vars(args), "engine": "hf"}), Path(tmp))
        else:
            theirs = run_side("trl", args, Path(tmp))
    print(describe(args))
    print(table(ours, theirs))
    print(
        json.dumps(
            {
                "completions_per_s_ratio": round(ours["completions_per_s"] / theirs["completions_per_s"], 3),
                "peak_memory_ratio": round(ours[memory_key(args)] / theirs[memory_key(args)], 3),
                "completions_per_cpu_s_ratio": round(ours["completions_per_cpu_s"] / theirs["completions_per_cpu_s"], 3),
                **({"versus": theirs["version"]} if theirs["version"].startswith("tagfer") else {"trl_version": theirs["version"]}),
                "generation_fraction": {
                    ours["version"]: round(ours["generation_fraction"], 3),
                    theirs["version"]: round(theirs["generation_fraction"], 3),
                },
            }
        )
    )


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
