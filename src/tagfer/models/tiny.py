"""A tiny Qwen2-VL / Qwen2.5-VL built offline: random weights, the project's tokenizer, a real processor.

:func:`build_tiny_model` writes a directory that loads exactly like a downloaded checkpoint
(``AutoModelForImageTextToText`` / ``AutoProcessor`` with ``local_files_only=True``), so every stage
(SFT, GRPO, evaluation, predict) runs end to end on a CPU in seconds. Shapes come from
:class:`tagfer.core.config.TinyModelConfig` (defaults: hidden 64, 2 layers, 4 heads / 2 KV heads, vision depth 2,
about 0.4M parameters); a 112×112 image gives 8×8 patches of 14 px, merged 2×2 into 16 image tokens.
With ``tiny.vision_pretrain_steps > 0`` the vision tower is first pretrained on AU maps of synthetic faces
(:mod:`tagfer.models.tiny_vision`), standing in for the pretrained encoder of a real checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)

from tagfer.models.staging import staged_directory
from tagfer.models.tiny_tokenizer import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, build_tokenizer
from tagfer.models.tiny_vision import pretrain_vision

TINY_FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl")
#: Written next to the weights: the tiny shape that built the directory.
TINY_META_FILE = "tagfer_tiny.json"
PATCH_SIZE = 14
MERGE_SIZE = 2


def mrope_section(head_dim: int) -> list[int]:
    """M-RoPE split of the rotary half-dimension into (temporal, height, width) parts.

    Qwen uses ``[16, 24, 24]`` for ``head_dim = 128``: a quarter of ``head_dim / 2`` for time and the
    rest shared by height and width. The parts always sum to ``head_dim / 2``.
    """
    if head_dim % 2 or head_dim < 8:
        raise ValueError(f"head_dim={head_dim} must be even and at least 8 for M-RoPE")
    half = head_dim // 2
    temporal = half // 4
    height = (half - temporal) // 2
    return [temporal, height, half - temporal - height]


def _check_shape(tiny: Any) -> None:
    if tiny.family not in TINY_FAMILIES:
        raise ValueError(f"model.tiny.family={tiny.family!r}; expected one of {list(TINY_FAMILIES)}")
    if tiny.hidden_size % tiny.num_heads or tiny.num_heads % tiny.num_kv_heads:
        raise ValueError(
            f"model.tiny: hidden_size={tiny.hidden_size} must divide by num_heads={tiny.num_heads}, "
            f"and num_heads by num_kv_heads={tiny.num_kv_heads}"
        )
    if tiny.vision_hidden_size % tiny.num_heads or (tiny.vision_hidden_size // tiny.num_heads) % 4:
        raise ValueError(
            f"model.tiny.vision_hidden_size={tiny.vision_hidden_size} / num_heads={tiny.num_heads} must be a multiple of 4 "
            "(2D rotary embedding of the vision tower)"
        )


def tiny_model_config(tiny: Any, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The transformers config of the tiny model; vocabulary and special-token ids come from ``tokenizer``."""
    _check_shape(tiny)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_kv_heads,
        max_position_embeddings=tokenizer.model_max_length,
        rope_scaling={"type": "mrope", "mrope_section": mrope_section(tiny.hidden_size // tiny.num_heads)},
        bos_token_id=ids[PAD_TOKEN],
        eos_token_id=ids[EOS_TOKEN],
        pad_token_id=ids[PAD_TOKEN],
    )
    common = dict(
        depth=tiny.vision_depth,
        num_heads=tiny.num_heads,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    if tiny.family == "qwen2_vl":
        config_class = Qwen2VLConfig
        vision_config = dict(common, embed_dim=tiny.vision_hidden_size, hidden_size=tiny.hidden_size, mlp_ratio=2)
    else:
        config_class = Qwen2_5_VLConfig
        vision_config = dict(
            common,
            hidden_size=tiny.vision_hidden_size,
            intermediate_size=2 * tiny.vision_hidden_size,
            out_hidden_size=tiny.hidden_size,
            fullatt_block_indexes=[tiny.vision_depth - 1],
        )
    return config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def tiny_processor(family: str, tokenizer: PreTrainedTokenizerFast, min_pixels: int, max_pixels: int) -> ProcessorMixin:
    """The family's real processor (image processor, tokenizer, the video processor it requires)."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"no tiny processor for family {family!r}; expected one of {list(TINY_FAMILIES)}")
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)},
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    video_processor = Qwen2VLVideoProcessor(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=2)
    processor_class = Qwen2VLProcessor if family == "qwen2_vl" else Qwen2_5_VLProcessor
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def _plain(section: Any) -> dict:
    if is_dataclass(section):
        return asdict(section)
    return OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) else dict(section)


def build_tiny_model(cfg_model: Any, out_dir: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
    """Build the tiny model described by ``cfg_model.tiny`` and save it to ``out_dir``.

    Args:
        cfg_model: the ``model`` section (:class:`tagfer.core.config.ModelConfig` or its DictConfig); uses
            ``tiny`` (shape, family, seed), ``min_pixels`` and ``max_pixels``.
        out_dir: target directory (default ``cfg_model.name_or_path``).
        overwrite: replace an existing directory (otherwise FileExistsError).

    The directory is written under a temporary name and renamed into place, so a reader never sees a
    half-written model; when another process (e.g. a second DDP rank) finished the same directory
    first, its copy is kept. Returns the directory.
    """
    tiny = cfg_model.tiny
    out_dir = Path(out_dir if out_dir is not None else cfg_model.name_or_path)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True to rebuild the tiny model there")
    tokenizer = build_tokenizer(tiny.vocab_size)
    config = tiny_model_config(tiny, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tiny.seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(EOS_TOKEN), tokenizer.convert_tokens_to_ids(PAD_TOKEN)],
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    processor = tiny_processor(tiny.family, tokenizer, cfg_model.min_pixels, cfg_model.max_pixels)
    meta = {"tiny": _plain(tiny), "parameters": sum(p.numel() for p in model.parameters())}
    if tiny.vision_pretrain_steps > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tiny.seed)
            report = pretrain_vision(
                model, processor, samples=tiny.vision_pretrain_samples, steps=tiny.vision_pretrain_steps, seed=tiny.seed
            )
        meta["vision_pretraining"] = report.to_json()

    with staged_directory(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / TINY_META_FILE).write_text(json.dumps(meta, indent=2))
    return out_dir


def ensure_tiny_model(cfg_model: Any) -> Path:
    """The tiny model directory ``cfg_model.name_or_path``, built first when it is missing.

    An existing directory must have been built from the same ``model.tiny`` settings (its
    ``tagfer_tiny.json``): otherwise a ValueError names the differing keys, so that changing the tiny
    shape in a config never silently reuses an old model.
    """
    path = Path(cfg_model.name_or_path)
    if not path.exists():
        return build_tiny_model(cfg_model, path)
    meta_file = path / TINY_META_FILE
    if meta_file.is_file():
        built = json.loads(meta_file.read_text()).get("tiny", {})
        differing = {key: (built.get(key), value) for key, value in _plain(cfg_model.tiny).items() if built.get(key) != value}
        if differing:
            details = ", ".join(f"{key}: built {old!r}, asked {new!r}" for key, (old, new) in differing.items())
            raise ValueError(
                f"{path} holds a tiny model built with other model.tiny settings ({details}); delete the directory "
                "to rebuild it, or point model.name_or_path at another directory"
            )
    return path
