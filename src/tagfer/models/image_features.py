"""Encode each image once and give its features to every row that shows it (GRPO: the ``G`` rows of a group).

transformers (5.x) Qwen-VL models take precomputed vision features through ``mm_encoder_outputs`` in
``forward`` and ``generate``: the placeholder tokens stay in ``input_ids`` (they place the features and
give the M-RoPE positions, computed from ``input_ids``, ``mm_token_type_ids`` and ``image_grid_thw`` as
usual) and ``pixel_values`` is left out. So a batch whose rows repeat images needs only the distinct
images encoded: the logits are exactly those of the plain path with repeated ``pixel_values``.

Features are ``get_image_features``'s output: ``pooler_output`` is one tensor ``[tokens_i, hidden]`` per
image (after the merger), plus ``deepstack_features`` (per layer, per image) for Qwen3-VL. Releases of
transformers without ``mm_encoder_outputs`` (before 5.2x) take the plain path (:func:`can_share_images`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from peft import PeftModel

from tagfer.models.fsdp import init_fsdp_root

VISION_KEYS = ("pixel_values",)


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (``model`` itself otherwise)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def can_share_images(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward takes precomputed vision features (``mm_encoder_outputs``)."""
    return "mm_encoder_outputs" in inspect.signature(causal_lm(model).forward).parameters


def encode_images(model: torch.nn.Module, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> Any:
    """Vision features of the images in ``pixel_values`` (``[Σ t·h·w, C·T·P·P]``, one block per row of
    ``image_grid_thw [I, 3]``): ``pooler_output`` holds one ``[t·h·w / merge², hidden]`` tensor per image.

    Gradients flow when called with grad enabled (a trainable projector). With LoRA the projector's
    active copy is used, so call it inside ``disable_adapter()`` for the reference model.
    """
    init_fsdp_root(model)
    return causal_lm(model).get_image_features(pixel_values, image_grid_thw, return_dict=True)


def vision_is_frozen(model: torch.nn.Module) -> bool:
    """True when no parameter of the vision tower (merger included) trains: its features are then the
    same for the policy, the old policy and the reference, and one encoding per step serves them all."""
    return not any(param.requires_grad for name, param in model.named_parameters() if "visual" in name.split("."))


def select_images(features: Any, index: Sequence[int]) -> Any:
    """Features of images ``index`` in that order (repeats allowed): a new output object, so
    ``generate`` (which expands features in place) never alters ``features``."""
    fields = {"pooler_output": tuple(features.pooler_output[i] for i in index)}
    deepstack = getattr(features, "deepstack_features", None)
    if deepstack is not None:
        fields["deepstack_features"] = [tuple(layer[i] for i in index) for layer in deepstack]
    return type(features)(**fields)


def with_image_features(inputs: Mapping[str, torch.Tensor], features: Any, index: Sequence[int]) -> dict:
    """Model inputs whose row ``r`` shows image ``index[r]`` of ``features``: ``inputs`` without
    ``pixel_values`` plus ``mm_encoder_outputs``. ``inputs`` must hold one image per row (its
    ``image_grid_thw`` has one row per token row)."""
    rows = inputs["input_ids"].shape[0]
    if len(index) != rows or inputs["image_grid_thw"].shape[0] != rows:
        raise ValueError(
            f"one image per row expected: {rows} token rows, {inputs['image_grid_thw'].shape[0]} image_grid_thw rows, "
            f"{len(index)} feature indices"
        )
    out = {key: value for key, value in inputs.items() if key not in VISION_KEYS}
    out["mm_encoder_outputs"] = {"image": select_images(features, index)}
    return out
