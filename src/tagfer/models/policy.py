"""Prepare a loaded Qwen-VL model as the trainable policy, and give access to the frozen reference.

Which parameters train (``model`` section of the config):

* vision tower (``model.visual`` without its merger): frozen when ``freeze_vision`` (the default);
* projector (the vision merger, ``model.visual.merger``): trainable when ``train_projector``;
* language model: LoRA adapters on ``lora.target_modules`` (``finetune: lora``, the default) or all
  weights (``finetune: full``).

LoRA targets are matched by a regular expression that excludes every module under ``visual``: Qwen2.5-VL's
vision blocks also have ``gate_proj``/``up_proj``/``down_proj`` and its attention a fused ``qkv``, and none
of them may get an adapter. With LoRA the merger is a peft ``modules_to_save`` entry, so it is saved
with the adapter and switched off together with it (the reference model is then exactly the base model).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model

VISION_MODULE = "visual"
PROJECTOR_MODULE = "merger"


@dataclass(frozen=True)
class ParameterCount:
    """Trainable and total parameter counts of a module."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} / {self.total:,} parameters ({100 * self.fraction:.2f}%)"


def count_parameters(model: torch.nn.Module) -> ParameterCount:
    """Trainable (``requires_grad``) and total parameters (each shared tensor counted once)."""
    params = {id(p): p for p in model.parameters()}.values()
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def is_vision_parameter(name: str) -> bool:
    """True for parameters of the vision tower, merger included (``...visual.blocks.0.attn.qkv.weight``)."""
    return VISION_MODULE in name.split(".")


def is_projector_parameter(name: str) -> bool:
    """True for parameters of the vision merger(s), the projector into the language model
    (``visual.merger``; Qwen3-VL also has ``visual.deepstack_merger_list``)."""
    parts = name.split(".")
    return VISION_MODULE in parts and any(PROJECTOR_MODULE in part for part in parts)


def lora_target_pattern(target_modules: Sequence[str]) -> str:
    """A peft ``target_modules`` regex: modules named like ``target_modules`` outside the vision tower.

    peft full-matches it against module names, e.g. ``model.language_model.layers.0.self_attn.q_proj``
    matches and ``model.visual.blocks.0.mlp.up_proj`` does not.
    """
    if not target_modules:
        raise ValueError("model.lora.target_modules is empty")
    names = "|".join(re.escape(name) for name in target_modules)
    return rf"^(?!(?:.*\.)?{VISION_MODULE}\.).*\.(?:{names})$"


def lora_config(model_cfg: Any) -> LoraConfig:
    """The peft LoRA config of ``model_cfg.lora`` (the merger rides along as ``modules_to_save``)."""
    lora = model_cfg.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_pattern(list(lora.target_modules)),
        modules_to_save=[PROJECTOR_MODULE] if model_cfg.train_projector else None,
        task_type="CAUSAL_LM",
    )


def prepare_policy(model: torch.nn.Module, model_cfg: Any) -> torch.nn.Module:
    """Freeze, wrap and checkpoint ``model`` as ``model_cfg`` says; returns the policy to train.

    * ``finetune: lora``: a fresh model gets LoRA adapters (:func:`lora_config`); a model loaded from an
      exported adapter (already a ``PeftModel``) keeps training that adapter.
    * ``finetune: full``: an adapter, if any, is merged into the weights; everything outside the vision
      tower trains.
    * ``gradient_checkpointing``: non-reentrant checkpointing (and input embeddings that require grad, as
      LoRA needs when the embeddings themselves are frozen).

    Raises ValueError for ``finetune: lora`` with ``freeze_vision: false`` (an adapter does not store
    vision weights; use ``finetune: full``).
    """
    if model_cfg.finetune not in ("lora", "full"):
        raise ValueError(f"model.finetune={model_cfg.finetune!r}; expected 'lora' or 'full'")
    if model_cfg.finetune == "lora" and not model_cfg.freeze_vision:
        raise ValueError("model.freeze_vision=false needs model.finetune=full: a LoRA adapter does not store vision weights")
    if model_cfg.finetune == "full" and isinstance(model, PeftModel):
        model = model.merge_and_unload()
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if model_cfg.gradient_checkpointing:
        _enable_checkpointing(base)
        if model_cfg.finetune == "lora":
            base.enable_input_require_grads()
    if model_cfg.finetune == "lora":
        policy = model if isinstance(model, PeftModel) else get_peft_model(model, lora_config(model_cfg))
        for name, param in policy.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
            elif is_projector_parameter(name) and "modules_to_save" in name:
                param.requires_grad_(bool(model_cfg.train_projector))
            else:
                param.requires_grad_(False)
    else:
        policy = model
        for name, param in policy.named_parameters():
            if is_projector_parameter(name):
                param.requires_grad_(bool(model_cfg.train_projector))
            else:
                param.requires_grad_(not (is_vision_parameter(name) and model_cfg.freeze_vision))
    policy.train()
    return policy


def _enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing (transformers >= 5.2x names it ``activation_checkpointing_enable``,
    earlier releases ``gradient_checkpointing_enable``)."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def frozen_reference_copy(policy: torch.nn.Module) -> torch.nn.Module | None:
    """The reference model for the KL term: ``None`` for a LoRA policy (use the adapter-disabled policy,
    see :func:`reference_model`), else a frozen deep copy in eval mode (take it before training starts)."""
    if isinstance(policy, PeftModel):
        return None
    reference = copy.deepcopy(policy)
    reference.requires_grad_(False)
    reference.eval()
    return reference


@contextmanager
def reference_model(policy: torch.nn.Module, frozen_copy: torch.nn.Module | None = None) -> Iterator[torch.nn.Module]:
    """Yield the module that computes reference log-probs.

    ``frozen_copy`` when given (full fine-tune); else the LoRA ``policy`` inside
    ``disable_adapter()``, whose outputs equal the base model's exactly. Call it under ``torch.no_grad()``.
    """
    if frozen_copy is not None:
        yield frozen_copy
    elif isinstance(policy, PeftModel):
        with policy.disable_adapter():
            yield policy
    else:
        raise ValueError("a fully fine-tuned policy needs its frozen_reference_copy() as the reference model")


def disable_dropout(model: torch.nn.Module) -> int:
    """Switch off every dropout of ``model`` for good (TRL's ``disable_dropout``); returns how many were on.

    Sets ``p = 0`` on each :class:`torch.nn.Dropout` (LoRA's ``lora_dropout`` included) and
    ``attention_dropout = 0`` on attention modules that read it in training mode (Qwen-VL's). The model's
    config is left as it is, so an export keeps the checkpoint's settings.
    """
    switched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p > 0:
            module.p, switched = 0.0, switched + 1
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, float) and rate > 0:
            module.attention_dropout, switched = 0.0, switched + 1
    return switched
