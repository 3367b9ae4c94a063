"""Load a Qwen-VL model and its processor from a local directory, the way every stage does it.

One entry point, :func:`load_vlm`, for every kind of directory:

* a checkpoint (a real Qwen2/2.5/3-VL download, or the tiny model — built on the spot when
  ``model.build_tiny`` is set and the directory is missing);
* an export of :func:`tagfer.models.export.export_policy`: a peft adapter over the base model recorded in
  ``tagfer_export.json`` (or peft's ``adapter_config.json``), or a full model.

Everything goes through ``AutoModelForImageTextToText`` / ``AutoProcessor`` with ``local_files_only=True``:
nothing is ever downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel
from transformers.image_utils import SizeDict

from tagfer.models.export import ADAPTER_CONFIG_FILE, read_export_meta
from tagfer.models.families import resolve_family
from tagfer.models.tiny import ensure_tiny_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    """``"auto"`` → bfloat16 where CUDA supports it, else float32; otherwise the named dtype."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}; expected 'auto' or one of {list(DTYPES)}")
    return DTYPES[name]


def set_pixel_bounds(processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Make the processor's image resize keep the pixel count within ``[min_pixels, max_pixels]``."""
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(f"model.min_pixels={min_pixels} and model.max_pixels={max_pixels} must satisfy 0 < min <= max")
    processor.image_processor.size = SizeDict(shortest_edge=int(min_pixels), longest_edge=int(max_pixels))


def _missing(path: Path, key: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{key}={str(path)!r}: no such model directory. Set model.build_tiny=true to build the tiny offline "
        "model there, or point it at a local checkpoint directory (e.g. a Qwen2.5-VL-3B-Instruct copied to "
        "this machine) or an exported tagfer model; nothing is downloaded from a model hub."
    )


def _source(model_cfg: Any, checkpoint: str | os.PathLike | None) -> tuple[Path, str]:
    """The directory to load and the config key it came from."""
    if checkpoint is not None:
        return Path(checkpoint), "checkpoint"
    if model_cfg.init_from:
        return Path(model_cfg.init_from), "model.init_from"
    return Path(model_cfg.name_or_path), "model.name_or_path"


def _load_weights(path: Path, model_cfg: Any) -> PreTrainedModel:
    kwargs = {"dtype": resolve_dtype(model_cfg.dtype), "local_files_only": True}
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    return AutoModelForImageTextToText.from_pretrained(path, **kwargs)


def _adapter_base(path: Path, meta: dict) -> Path:
    base = meta.get("base_name_or_path")
    if not base:
        base = json.loads((path / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{path}: adapter without a base model (no base_name_or_path in tagfer_export.json or adapter_config.json)")
    base = Path(base)
    if not ((base / "config.json").is_file() or (base / ADAPTER_CONFIG_FILE).is_file()):
        raise FileNotFoundError(f"{path}: the adapter's base model {str(base)!r} is not a local model or export directory")
    return base


def _load_network(path: Path, model_cfg: Any, *, trainable: bool) -> torch.nn.Module:
    """The network stored at ``path``: a model, or an adapter over its base.

    The base of an adapter may itself be an adapter export (the RL adapter is trained over the SFT
    model): it is loaded the same way and merged into its own base first, so a chain
    base → SFT adapter → RL adapter loads as "SFT merged into the base, RL adapter on top".
    """
    if (path / ADAPTER_CONFIG_FILE).is_file():
        base = _load_network(_adapter_base(path, read_export_meta(path)), model_cfg, trainable=False)
        if isinstance(base, PeftModel):
            base = base.merge_and_unload()
        return PeftModel.from_pretrained(base, path, is_trainable=trainable)
    if (path / "config.json").is_file():
        return _load_weights(path, model_cfg)
    raise FileNotFoundError(f"{str(path)!r} holds neither config.json (a model) nor {ADAPTER_CONFIG_FILE} (an adapter)")


def _checked_source(model_cfg: Any, checkpoint: str | os.PathLike | None) -> tuple[Path, str]:
    """:func:`_source`, with the tiny model built when it is the source and missing, else checked to exist."""
    path, key = _source(model_cfg, checkpoint)
    if key == "model.name_or_path" and model_cfg.build_tiny:
        ensure_tiny_model(model_cfg)
    elif not path.exists():
        raise _missing(path, key)
    return path, key


def _model_type(path: Path) -> str:
    """``model_type`` of the network at ``path`` (an adapter's: its base's, followed down the chain)."""
    if (path / ADAPTER_CONFIG_FILE).is_file():
        return _model_type(_adapter_base(path, read_export_meta(path)))
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{str(path)!r} holds neither config.json (a model) nor {ADAPTER_CONFIG_FILE} (an adapter)")
    return json.loads(config.read_text())["model_type"]


def _processor_and_family(path: Path, model_cfg: Any, model_type: str) -> tuple[Any, str]:
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    set_pixel_bounds(processor, model_cfg.min_pixels, model_cfg.max_pixels)
    processor.tokenizer.padding_side = "left"
    requested = model_cfg.family if model_cfg.family != "auto" else read_export_meta(path).get("family", "auto")
    return processor, resolve_family(requested, model_type)


def load_processor(model_cfg: Any, *, checkpoint: str | os.PathLike | None = None) -> tuple[Any, str]:
    """``(processor, family)`` of the directory :func:`load_vlm` would load, without its weights (for a
    model that a vLLM server runs: the prompt, collation and box space still come from here)."""
    path, key = _checked_source(model_cfg, checkpoint)
    try:
        return _processor_and_family(path, model_cfg, _model_type(path))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}: {err}") from None


def load_vlm(model_cfg: Any, *, for_training: bool, checkpoint: str | os.PathLike | None = None) -> tuple[torch.nn.Module, Any, str]:
    """Load ``(model, processor, family)``.

    Args:
        model_cfg: the ``model`` section (:class:`tagfer.core.config.ModelConfig` or its DictConfig).
        for_training: the model is returned in train mode (and a loaded adapter trainable), else in
            eval mode. Freezing and LoRA setup are :func:`tagfer.models.policy.prepare_policy`'s job.
        checkpoint: load this directory instead of ``model.init_from`` / ``model.name_or_path``
            (evaluation of an exported model).

    The directory is ``checkpoint``, else ``model.init_from``, else ``model.name_or_path`` (the tiny model
    is built there when it is missing and ``model.build_tiny`` is set). The processor comes from the same
    directory, with ``model.min_pixels`` / ``model.max_pixels`` applied and left padding. The family is
    ``model.family`` unless "auto", else the export's recorded family, else the checkpoint's ``model_type``.
    """
    path, key = _checked_source(model_cfg, checkpoint)
    try:
        model = _load_network(path, model_cfg, trainable=for_training)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}: {err}") from None
    processor, family = _processor_and_family(path, model_cfg, _model_type(path))
    model.train(for_training)
    return model, processor, family
