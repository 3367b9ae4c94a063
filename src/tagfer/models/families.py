"""Model families: which Qwen-VL generation a checkpoint belongs to.

The family decides the box convention (:mod:`tagfer.models.boxes`) and nothing else in the project:
every family loads through the same transformers Auto classes. It is read from the checkpoint's
``config.json`` (``model_type``) unless the configuration names it (``model.family`` other than "auto").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")

#: transformers ``model_type`` → family.
MODEL_TYPE_FAMILY: dict[str, str] = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl",
}


def family_from_model_type(model_type: str) -> str:
    """The family of a transformers ``model_type`` (``"qwen2_5_vl"`` → ``"qwen2_5_vl"``).

    Raises ValueError for a model type the project does not support.
    """
    family = MODEL_TYPE_FAMILY.get(model_type)
    if family is None:
        raise ValueError(f"model_type {model_type!r} is not a supported Qwen-VL family; expected one of {sorted(MODEL_TYPE_FAMILY)}")
    return family


def read_model_type(model_dir: str | os.PathLike) -> str:
    """``model_type`` from ``<model_dir>/config.json``; a clear error when the file or key is missing."""
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: {model_dir} is not a model directory") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if "model_type" not in config:
        raise ValueError(f"{path}: no 'model_type' key; expected one of {sorted(MODEL_TYPE_FAMILY)}")
    return config["model_type"]


def resolve_family(requested: str, model_type: str) -> str:
    """``requested`` when it names a family (the configuration wins), else the family of ``model_type``.

    Args:
        requested: ``model.family`` from the configuration: "auto" or one of :data:`FAMILIES`.
        model_type: the checkpoint's ``config.model_type``.
    """
    if requested == "auto":
        return family_from_model_type(model_type)
    if requested not in FAMILIES:
        raise ValueError(f"model.family={requested!r}; expected 'auto' or one of {list(FAMILIES)}")
    return requested
