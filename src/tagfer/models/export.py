"""Export a trained policy: a peft adapter (LoRA) or the full model, the processor, and what it was built from.

The exported directory is what later stages load (:func:`tagfer.models.loader.load_vlm`): the RL stage
(``model.init_from``), evaluation (``eval.checkpoint``) and ``predict``. ``tagfer_export.json`` records

    {"family": ..., "base_name_or_path": ..., "finetune": "lora" | "full", "versions": {...}, **extra_meta}

so an adapter finds its base model again and the box convention is known without the base config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from peft import PeftModel

import tagfer
from tagfer.models.families import FAMILIES
from tagfer.models.staging import staged_directory

EXPORT_META_FILE = "tagfer_export.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"


def export_policy(
    model: torch.nn.Module,
    processor: Any,
    out_dir: str | os.PathLike,
    *,
    base_name_or_path: str,
    family: str,
    extra_meta: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save ``model`` (adapter or full weights), ``processor`` and ``tagfer_export.json`` to ``out_dir``.

    Args:
        model: a ``PeftModel`` (only the adapter and its ``modules_to_save`` are written, e.g. the
            vision merger) or a full transformers model.
        processor: the processor the model was trained with (saved next to the weights).
        base_name_or_path: the base checkpoint the adapter applies to (stored as an absolute path when
            it is a local directory).
        family: the model family (:data:`tagfer.models.families.FAMILIES`).
        extra_meta: more JSON-serialisable facts (stage, step, metrics); may not override the fixed keys.
        state_dict: the weights to write instead of ``model``'s own (the consolidated weights of a
            sharded model, :func:`tagfer.training.sharding.consolidated_state_dict`).

    Written atomically; an existing ``out_dir`` is replaced. Returns ``out_dir``.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}; expected one of {list(FAMILIES)}")
    base = Path(base_name_or_path)
    meta = {
        "family": family,
        "base_name_or_path": str(base.resolve()) if base.is_dir() else str(base_name_or_path),
        "finetune": "lora" if isinstance(model, PeftModel) else "full",
        "versions": {
            "tagfer": tagfer.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "torch": torch.__version__,
        },
    }
    clash = set(extra_meta or {}) & set(meta)
    if clash:
        raise ValueError(f"extra_meta may not override {sorted(clash)}")
    meta.update(extra_meta or {})
    with staged_directory(out_dir, overwrite=True) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        processor.save_pretrained(tmp)
        (tmp / EXPORT_META_FILE).write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def read_export_meta(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``tagfer_export.json`` of ``model_dir``, or ``{}`` for a plain checkpoint directory."""
    path = Path(model_dir) / EXPORT_META_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
