"""Structured configuration: dataclass schema + OmegaConf, ``defaults:`` composition, validation.

A run is described by one YAML file (``configs/rl.yaml``) that lists what it composes::

    defaults:
      - base               # configs/base.yaml merged at the root
      - data: synthetic    # configs/data/synthetic.yaml merged under the key ``data``
      - model: tiny_qwen2_vl
      - _self_             # this file's own keys (last unless listed elsewhere)
    stage: rl

then command-line overrides in OmegaConf dotlist form (``rl.beta=0.0 data.batch_size=4``). A group can be
swapped from the command line too (``data=rafdb`` picks ``configs/data/rafdb.yaml``).

Everything is checked against the dataclasses below before any work starts: an unknown key names the key
and the closest valid one, a wrong type names the key, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tagfer.core.atomic_files import atomic_write_text

STAGES = ("sft", "rl", "eval", "baseline", "demo")
#: AU detectors (:mod:`tagfer.au.detectors`); the external ones import another tool's output files.
DETECTOR_NAMES = ("builtin", "dataset_landmarks", "openface", "pyfeat", "synthetic")
EXTERNAL_DETECTORS = ("openface", "pyfeat")
#: GRPO loss aggregations and advantage scalings (:mod:`tagfer.training.grpo` implements each; the GRPO
#: objective and this file's load-time check both read these lists).
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
REWARD_SCALES = ("group", "batch", "none")

#: Enumerated string options, checked when a config is loaded (key path → allowed values).
CHOICES: dict[str, tuple[str, ...]] = {
    "stage": STAGES,
    "au.detector": DETECTOR_NAMES,
    "au.box_mode": ("region", "au"),
    "traces.source": ("template", "teacher"),
    "traces.missing_prior": ("inspect", "weak", "drop"),
    "model.family": ("auto", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"),
    "model.tiny.family": ("qwen2_vl", "qwen2_5_vl"),
    "model.finetune": ("lora", "full"),
    "model.dtype": ("auto", "float32", "bfloat16", "float16"),
    "sft.optim.scheduler": ("cosine", "linear", "constant"),
    "rl.optim.scheduler": ("cosine", "linear", "constant"),
    "baseline.optim.scheduler": ("cosine", "linear", "constant"),
    "rl.loss_type": LOSS_TYPES,
    "rl.scale_rewards": REWARD_SCALES,
    "trainer.strategy": ("auto", "ddp", "ddp_spawn", "fsdp"),
    "eval.prior": ("emfacs", "wide"),
    "data.face_crop.source": ("auto", "dataset", "detector", "none"),
    "engine.backend": ("hf", "vllm"),
}
DATASET_NAMES = ("rafdb", "ferplus", "affectnet", "imagefolder", "synthetic")
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """A configuration problem, with the key (and file) at fault and what was expected."""


# --------------------------------------------------------------------------------------------- data
@dataclass
class DatasetSpec:
    """One dataset split to read. Reader-specific fields are ignored by the other readers."""

    name: str = "synthetic"  # rafdb | ferplus | affectnet | imagefolder | synthetic
    root: str = "outputs/data/synthetic"
    split: str = "train"  # train | val | test
    au_cache: str | None = None  # AU cache directory (default: <au.cache_dir>/<name>-<detector>)
    traces: str | None = None  # trace JSONL (SFT); None for RL / evaluation
    classes: list[str] | None = None  # keep only these canonical classes (cross-dataset, AffectNet-7)
    limit: int | None = None  # first N records after filtering (debugging, quick evaluation)
    # RAF-DB
    image_variant: str = "aligned"  # aligned | original
    # FERPlus
    layout: str = "auto"  # ferplus: auto | csv | folders; affectnet: auto | csv | npy
    label_mode: str = "majority"  # majority | probability | crossentropy | multi_target (train split only)
    # AffectNet
    num_classes: int = 8  # 7 or 8
    # synthetic
    num_samples: int = 512
    image_size: int = 112
    seed: int = 0
    pose: str = "random"  # random (pose, scale, position) | aligned (like aligned crops of real datasets)
    canvas: float = 1.0  # random pose: the face is drawn canvas× smaller anywhere in the image (a scene); ≥ 1


@dataclass
class AugmentConfig:
    """albumentations on training images; boxes and landmarks follow every geometric transform."""

    enabled: bool = True
    horizontal_flip: float = 0.5
    shift_scale_rotate: float = 0.3
    max_rotate_deg: float = 10.0
    color_jitter: float = 0.3


@dataclass
class FaceCropConfig:
    """Crop each image to its face before a model sees it (tagfer.data.face_crop; README "Datasets").

    ``auto`` crops whole photos (AffectNet csv, RAF-DB original, imagefolder, synthetic pose random,
    predict) and leaves face crops alone; ``dataset`` crops every image to the dataset's face box, else
    the detector's; ``detector`` always to the detector's; ``none`` never crops.
    """

    source: str = "auto"  # auto | dataset | detector | none
    margin: float = 0.2  # each side grows by margin × its length on both ends
    square: bool = True  # square window (the longer side of the face box)


@dataclass
class DataConfig:
    train: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec(split="train")])
    val: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec(split="val", num_samples=64)])
    test: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec(split="test", num_samples=128)])
    batch_size: int = 8
    eval_batch_size: int = 16
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    balanced_sampling: bool = False
    strict: bool = False  # corrupt images: raise instead of skip-and-count
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    face_crop: FaceCropConfig = field(default_factory=FaceCropConfig)


# ----------------------------------------------------------------------------------------------- AU
@dataclass
class QualityConfig:
    """Face-quality filter applied while the AU cache is built (dropped images are listed)."""

    enabled: bool = True
    min_sharpness: float = 0.0  # variance of the Laplacian of the grey face crop
    min_face_score: float = 0.0
    min_face_size: int = 0  # pixels, shorter side of the face box


@dataclass
class AUConfig:
    detector: str = "synthetic"  # builtin | dataset_landmarks | openface | pyfeat | synthetic
    external_dir: str | None = None  # OpenFace / py-feat output directory or CSV file
    crop_fallback: bool = False  # builtin: fit landmarks on the whole image when dlib finds no face (face crops)
    cache_dir: str = "outputs/au_cache"
    box_mode: str = "region"  # region (shared region templates, TAG's figure) | au (one box per AU)
    threshold: float = 0.5  # an AU is active when its probability ≥ threshold
    top_k: int = 5
    workers: int = 0
    shard_size: int = 256
    # Detection decodes larger images reduced to at most this many pixels (JPEG: in the decoder) and scales
    # landmarks and boxes back to the original pixels (tagfer.data.images.decode_image); null: full size.
    detect_max_pixels: int | None = 4_194_304  # 2048 × 2048
    quality: QualityConfig = field(default_factory=QualityConfig)


# ------------------------------------------------------------------------------------------ traces
@dataclass
class TeacherConfig:
    name_or_path: str = ""  # local VLM directory (with an endpoint: the teacher's processor, for its box space)
    max_format_retries: int = 3
    max_label_retries: int = 3
    max_new_tokens: int = 512
    temperature: float = 0.7
    batch_size: int = 4
    # An OpenAI-compatible endpoint instead of the local model (a vLLM server, a hosted API): its /v1 root.
    endpoint: str = ""
    model: str = ""  # served model name (default: name_or_path)
    api_key_env: str = ""  # environment variable holding the endpoint's API key ("" = none)
    concurrency: int = 8  # requests in flight
    request_timeout_s: float = 300.0
    max_retries: int = 5  # per request, on HTTP 429/5xx, dropped connections and timeouts
    backoff_s: float = 1.0  # first retry delay, doubled per retry (capped at 60 s)
    extensions: bool = True  # send vLLM's top_k/repetition_penalty/return_token_ids (false: a hosted API that rejects them)


@dataclass
class TraceConfig:
    source: str = "template"  # template | teacher
    out: str = "outputs/traces/synthetic-train.jsonl"
    think_tags: bool = False  # wrap the reasoning in <think>…</think>
    top_k: int = 5
    seed: int = 0
    missing_prior: str = "inspect"  # label without its prototypical AUs: inspect | weak | drop (reasoning.template)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)


# ------------------------------------------------------------------------------------------ engine
@dataclass
class VLLMConfig:
    """A vLLM server: one the project launches from ``python`` (scripts/setup_vllm.sh), or ``url``."""

    url: str = ""  # a server already running (its /v1 root); empty: launch one per run
    api_key_env: str = ""  # environment variable holding ``url``'s API key (a launched server gets a fresh key)
    python: str = ".venv-vllm/bin/python"  # interpreter of the vLLM environment
    host: str = "127.0.0.1"  # listen address of a launched server (loopback only by default)
    port: int = 0  # 0: a free port
    args: list[str] = field(default_factory=lambda: ["--dtype", "float32", "--max-model-len", "2048", "--max-num-seqs", "16"])
    env: dict[str, str] = field(default_factory=lambda: {"VLLM_CPU_KVCACHE_SPACE": "1"})
    startup_timeout_s: float = 900.0
    request_timeout_s: float = 300.0
    max_retries: int = 3
    concurrency: int = 16


@dataclass
class EngineConfig:
    backend: str = "hf"  # hf (in-process transformers generate) | vllm (a vLLM server)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


# ------------------------------------------------------------------------------------------- model
@dataclass
class LoRAConfig:
    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


@dataclass
class TinyModelConfig:
    """Shape of the tiny offline model built when ``model.name_or_path`` does not exist yet."""

    family: str = "qwen2_vl"  # qwen2_vl | qwen2_5_vl
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vocab_size: int = 1024
    seed: int = 0
    # Pretrain the vision tower on AU maps of synthetic faces (0 steps: keep it random); see models/tiny_vision.py
    vision_pretrain_samples: int = 0
    vision_pretrain_steps: int = 0


@dataclass
class ModelConfig:
    name_or_path: str = "outputs/models/tiny-qwen2-vl"
    build_tiny: bool = False  # build the tiny offline model at name_or_path when it is missing
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    family: str = "auto"  # auto (from the checkpoint's model_type) | qwen2_vl | qwen2_5_vl | qwen3_vl
    finetune: str = "lora"  # lora | full
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    freeze_vision: bool = True
    train_projector: bool = True
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # auto (bf16 where supported, else fp32) | float32 | bfloat16 | float16
    attn_implementation: str | None = None  # e.g. sdpa | flash_attention_2
    min_pixels: int = 3136  # 56*56
    max_pixels: int = 12544  # 112*112; real checkpoints: e.g. 512*512
    init_from: str | None = None  # an exported SFT directory (model or adapter + processor)


# ------------------------------------------------------------------------------------ optimisation
@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.03


@dataclass
class SFTConfig:
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_length: int = 1024  # prompt + trace tokens; never cuts the vision span
    val_generate_samples: int = 16  # validation generates on this many samples
    max_new_tokens: int = 256
    log_images: int = 4  # images with boxes sent to TensorBoard per validation
    max_consecutive_skips: int = 10  # non-finite loss/gradient steps in a row before the run stops


@dataclass
class RewardSpec:
    """One reward callback: a registered name, a weight and keyword options for its constructor."""

    name: str = "format"
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RLConfig:
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, scheduler="cosine", warmup_ratio=0.0))
    batch_size: int = 2  # B: prompts per rollout batch (B·G completions per step)
    num_generations: int = 8  # G
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    beta: float = 0.04  # KL coefficient (0 skips the reference pass)
    epsilon_low: float = 0.2
    epsilon_high: float | None = None  # None: = epsilon_low; DAPO uses 0.28
    loss_type: str = "dapo"  # grpo | bnpo | dr_grpo | dapo
    scale_rewards: str = "group"  # group | batch | none
    num_iterations: int = 1  # μ: optimizer steps per rollout batch
    gradient_accumulation_steps: int = 1  # rollout batches per optimizer step (only with num_iterations = 1)
    logprob_micro_batch: int = 0  # rows per log-prob forward/backward (0 = all B·G rows at once)
    kl_clamp: float = 20.0  # |ref − logp| clamp before exp in the k3 KL
    max_consecutive_skips: int = 10  # non-finite steps in a row before the run stops
    share_image_features: bool = True  # encode each image once per group (False: the plain path, G encodings)
    # engine.backend vllm: truncated importance sampling (TRL's TIS) of the policy loss, per token
    # w = min(exp(logp_old − logp_vllm), cap); null: off
    vllm_importance_sampling_cap: float | None = None
    rewards: list[RewardSpec] = field(
        default_factory=lambda: [
            RewardSpec(name="format", weight=1.0),
            RewardSpec(name="answer", weight=1.0),
            RewardSpec(name="au_grounding", weight=1.0),
        ]
    )
    log_completions: int = 4


# ------------------------------------------------------------------------------------------ trainer
@dataclass
class CheckpointConfig:
    every_n_train_steps: int = 50
    save_last: bool = True
    save_top_k: int = 1
    monitor: str | None = None
    mode: str = "max"


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp
    precision: str = "32-true"
    max_epochs: int = 1
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    log_every_n_steps: int = 1
    val_check_interval: float | None = None
    check_val_every_n_epoch: int | None = 1
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    num_sanity_val_steps: int = 0
    deterministic: bool = False
    enable_progress_bar: bool = True
    # torch intra-op threads per process (torch.set_num_threads); null keeps torch's default (one per core).
    # For tiny models on few cores 1 is fastest: thread hand-offs cost more than the small matmuls they split.
    num_threads: int | None = None
    resume: str | None = "auto"  # auto (last.ckpt of run_dir if any) | a checkpoint path | null
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# --------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalConfig:
    checkpoint: str | None = None  # exported model/adapter directory (default: model.name_or_path)
    # test sets, each scored over its own classes (cross-dataset: list several); empty: the data group's data.test
    datasets: list[DatasetSpec] = field(default_factory=list)
    batch_size: int = 16
    max_new_tokens: int = 256
    iou_threshold: float = 0.5  # a cited box under this IoU counts as hallucinated
    prior: str = "emfacs"  # emfacs | wide: the label–AU consistency prior
    out_dir: str | None = None  # default: <run_dir>


@dataclass
class BaselineConfig:
    """Vision-only timm classifier (the "no reasoning" row of ablation tables)."""

    model_name: str = "resnet18"
    pretrained: bool = False  # no hub access here: random init unless a local checkpoint is given
    checkpoint_path: str | None = None
    image_size: int = 112
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, scheduler="cosine", warmup_ratio=0.0))


@dataclass
class DemoConfig:
    """What ``tagfer demo`` / ``configs/demo.yaml`` runs end to end."""

    sft_epochs: int = 3
    rl_steps: int = 20
    stages: list[str] = field(default_factory=lambda: ["data", "au_cache", "traces", "sft", "rl", "eval"])


@dataclass
class TagferConfig:
    """The root of every run configuration."""

    stage: str = "sft"  # sft | rl | eval | baseline | demo
    run_dir: str = "outputs/runs/${stage}"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    au: AUConfig = field(default_factory=AUConfig)
    traces: TraceConfig = field(default_factory=TraceConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


# ------------------------------------------------------------------------------------------ loading
def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``path`` with its ``defaults:``, apply ``key=value`` overrides, validate, resolve.

    Returns a read-only-typed ``DictConfig`` backed by :class:`TagferConfig` (assigning a wrong type
    later raises too). Raises :class:`ConfigError` naming the file and key on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a YAML file such as configs/sft.yaml)")
    group_choices, plain = _split_group_overrides(path, overrides)
    schema = OmegaConf.structured(TagferConfig)
    merged = schema
    for source, layer in _compose(path, group_choices):
        merged = _merge_checked(merged, layer, source)
    batch: list[str] = []  # consecutive plain overrides, merged as one dotlist
    for item in [*plain, None]:
        if item is not None and _list_position(merged, item.split("=", 1)[0]) is None:
            batch.append(item)
            continue
        if batch:
            merged = _merge_dotlist(merged, batch)
            batch = []
        if item is not None:
            merged = _set_list_entry(merged, item)
    try:
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve interpolation: {err}") from None
    _check_choices(merged)
    return merged


def _merge_dotlist(merged: DictConfig, items: list[str]) -> DictConfig:
    try:
        dotlist = OmegaConf.from_dotlist(items)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse command-line overrides {items}: {err}") from None
    return _merge_checked(merged, dotlist, "command line")


def _key_parts(key: str) -> list[str]:
    """``data.train[0].root`` and ``data.train.0.root`` → ``['data', 'train', '0', 'root']``."""
    return [part for part in re.split(r"[.\[\]]+", key) if part]


def _list_position(cfg: DictConfig, key: str) -> tuple[list[str], ListConfig, list[str]] | None:
    """Where ``key`` steps into a list of the config: ``(path to the list, the list, parts after it)``
    (``data.train[0].root`` → ``(['data', 'train'], <list>, ['0', 'root'])``); None when it does not."""
    parts = _key_parts(key)
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, DictConfig) or part not in node:
            return None
        node = node[part]
        if isinstance(node, ListConfig):
            return parts[: i + 1], node, parts[i + 1 :]
    return None


def _set_list_entry(merged: DictConfig, item: str) -> DictConfig:
    """Apply ``key=value`` where ``key`` names a field of one entry of an existing list (OmegaConf dotlist
    semantics: ``data.train[0].root=DIR`` or ``data.train.0.root=DIR``; ``data.train[0]={...}`` replaces
    the entry). The entry is checked against its dataclass like any layer; a wrong index lists the valid ones."""
    key, value = item.split("=", 1)
    list_path, entries, rest = _list_position(merged, key)
    list_key = ".".join(list_path)
    index_text, field_parts = rest[0], rest[1:]
    valid = f"valid indices: 0..{len(entries) - 1}" if len(entries) else "the list is empty"
    if not index_text.isdigit() or int(index_text) >= len(entries):
        raise ConfigError(
            f"command line: '{key}': {list_key} has {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, no index {index_text!r} ({valid})"
        )
    index = int(index_text)
    item_type = OmegaConf.get_type(entries[index])
    try:
        layer = OmegaConf.from_dotlist([f"{'.'.join(field_parts) or '_entry'}={value}"])
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse command-line override {item!r}: {err}") from None
    data = OmegaConf.to_container(layer, resolve=False)
    where = f"{list_key}[{index}]"
    if not field_parts:  # the whole entry: a mapping replacing it
        data = data["_entry"]
        if not isinstance(data, dict):
            raise ConfigError(f"command line: key '{where}' has value {data!r}, expected a mapping ({item_type.__name__})")
        base = OmegaConf.structured(item_type)
    else:
        base = entries[index]
    if dataclasses.is_dataclass(item_type):
        _check_layer(data, item_type, where, "command line")
    try:
        entries[index] = OmegaConf.merge(base, data)
    except OmegaConfBaseException as err:
        raise ConfigError(f"command line: {where}: {err}") from None
    return merged


def _check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")
    if cfg.au.detect_max_pixels is not None and cfg.au.detect_max_pixels < 1:
        raise ConfigError(f"au.detect_max_pixels={cfg.au.detect_max_pixels}; expected a positive int or null (decode at full size)")
    if cfg.data.face_crop.margin < 0:
        raise ConfigError(f"data.face_crop.margin={cfg.data.face_crop.margin}; expected a number ≥ 0")
    if cfg.trainer.num_threads is not None and cfg.trainer.num_threads < 1:
        raise ConfigError(f"trainer.num_threads={cfg.trainer.num_threads}; expected a positive int or null (torch's default)")
    for group in ("train", "val", "test"):
        for index, spec in enumerate(cfg.data[group]):
            _check_dataset_spec(spec, f"data.{group}[{index}]")
    for index, spec in enumerate(cfg.eval.datasets):
        _check_dataset_spec(spec, f"eval.datasets[{index}]")


def _check_dataset_spec(spec: DictConfig, where: str) -> None:
    if spec.name not in DATASET_NAMES:
        close = difflib.get_close_matches(spec.name, DATASET_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}.name={spec.name!r} is not a dataset reader{hint} (expected one of {list(DATASET_NAMES)})")
    if spec.pose not in ("random", "aligned"):
        raise ConfigError(f"{where}.pose={spec.pose!r}; expected 'random' or 'aligned'")
    if spec.canvas < 1.0 or (spec.pose == "aligned" and spec.canvas != 1.0):
        raise ConfigError(f"{where}.canvas={spec.canvas}; expected ≥ 1, and exactly 1 with pose 'aligned'")
    if spec.split not in SPLITS:
        raise ConfigError(f"{where}.split={spec.split!r}; expected one of {list(SPLITS)}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, run_dir: str | os.PathLike) -> Path:
    """Write the resolved config to ``<run_dir>/config.yaml`` (atomically) and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))  # every DDP rank saves it


def _config_root(path: Path) -> Path:
    """The directory whose sub-folders are the config groups: the top file's directory."""
    return path.resolve().parent


def _groups(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def _split_group_overrides(path: Path, overrides) -> tuple[dict[str, str], list[str]]:
    """Separate ``group=name`` choices (a YAML in configs/<group>/) from ordinary dotlist overrides."""
    root = _config_root(path)
    groups = _groups(root)
    choices: dict[str, str] = {}
    plain: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        if key in groups and (root / key / f"{value}.yaml").is_file():
            choices[key] = value
        else:
            plain.append(item)
    return choices, plain


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _compose(path: Path, group_choices: dict[str, str], _seen: tuple[Path, ...] = ()):
    """Yield ``(source name, DictConfig layer)`` in merge order for ``path`` and its defaults."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular defaults via {[str(p) for p in _seen]}")
    root = _config_root(_seen[0] if _seen else path)
    data = _read_yaml(path)
    defaults = data.pop("defaults", [])
    if not isinstance(defaults, list):
        raise ConfigError(f"{path}: 'defaults' must be a list, got {type(defaults).__name__}")
    own = (str(path), OmegaConf.create(data))
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    for entry in defaults:
        if entry == "_self_":
            yield own
        elif isinstance(entry, str):
            yield from _compose(_resolve_default(root, path, entry), group_choices, (*_seen, path))
        elif isinstance(entry, dict) and len(entry) == 1:
            ((group, name),) = entry.items()
            name = group_choices.get(group, name)
            group_file = root / group / f"{name}.yaml"
            if not group_file.is_file():
                options = sorted(p.stem for p in (root / group).glob("*.yaml"))
                raise ConfigError(f"{path}: defaults entry {group}: {name} — no file {group_file}; options: {options}")
            for source, layer in _compose(group_file, group_choices, (*_seen, path)):
                yield source, OmegaConf.create({group: layer})
        else:
            raise ConfigError(f"{path}: defaults entry {entry!r} must be 'name', '_self_' or 'group: name'")


def _resolve_default(root: Path, path: Path, name: str) -> Path:
    for candidate in (path.parent / f"{name}.yaml", root / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: defaults entry {name!r} — no file {root / (name + '.yaml')}")


def _merge_checked(base: DictConfig, layer: DictConfig, source: str) -> DictConfig:
    _check_layer(OmegaConf.to_container(layer, resolve=False), TagferConfig, "", source)
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_layer(data: dict, schema: type, path: str, source: str) -> None:
    """Check every key and leaf value of ``data`` against the dataclass ``schema``.

    Raises :class:`ConfigError` with the full key (``data.train[0].rooot``), the closest valid key,
    or the value and the expected type. Leaf conversions are OmegaConf's own (``"3"`` → 3 for an int).
    """
    hints = typing.get_type_hints(schema)
    node = OmegaConf.structured(schema)
    for key, value in data.items():
        full_key = f"{path}.{key}" if path else str(key)
        if key not in hints:
            raise ConfigError(_unknown_key_message(full_key, list(hints), source))
        field_type = hints[key]
        nested = _dataclass_in(field_type)
        item = _list_item_dataclass(field_type)
        if nested is not None and isinstance(value, dict):
            _check_layer(value, nested, full_key, source)
        elif item is not None and isinstance(value, list):
            for index, element in enumerate(value):
                if isinstance(element, dict):
                    _check_layer(element, item, f"{full_key}[{index}]", source)
                else:
                    raise ConfigError(f"{source}: key '{full_key}[{index}]' has value {element!r}, expected a mapping ({item.__name__})")
        else:
            try:
                node[key] = value
            except OmegaConfBaseException:
                raise ConfigError(f"{source}: key '{full_key}' has value {value!r}, expected {_type_name(field_type)}") from None


def _dataclass_in(tp) -> type | None:
    """``X`` for a dataclass type ``X`` or ``Optional[X]``, else None."""
    candidates = typing.get_args(tp) if typing.get_origin(tp) is typing.Union else (tp,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def _list_item_dataclass(tp) -> type | None:
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return item if dataclasses.is_dataclass(item) else None
    return None


def _unknown_key_message(full_key: str, valid: list[str], source: str) -> str:
    parent_key, _, leaf = full_key.rpartition(".")
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{(parent_key + '.') if parent_key else ''}{close[0]}'?" if close else ""
    where = f"'{parent_key}'" if parent_key else "the top level"
    return f"{source}: unknown key '{full_key}'{hint} (valid keys under {where}: {', '.join(valid)})"


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if typing.get_origin(tp) in (list, dict):
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def as_container(cfg: DictConfig | ListConfig) -> Any:
    """Plain python dict/list copy of a config node (for kwargs)."""
    return OmegaConf.to_container(cfg, resolve=True)
