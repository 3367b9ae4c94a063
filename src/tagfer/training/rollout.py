"""GRPO rollouts: ``G`` completions for each of ``B`` prompts in one batched ``generate``, each image encoded once.

:func:`generate_rollout` encodes the ``B`` images once (not ``B·G`` times), repeats the prompt token rows
``G`` times (group-major: rows ``[a, a, b, b]`` for ``G = 2``) and generates all ``B·G`` completions in
one left-padded batch with the KV cache, the rows sharing their prompt's vision features
(:mod:`tagfer.models.image_features`). Under FSDP2 the model is gathered once for the whole rollout.

The :class:`Rollout` then serves the log-prob passes (old policy, reference, policy) row chunk by row
chunk. When the vision tower (merger included) is frozen, the rollout's features serve every pass and
no pass runs the vision tower again; otherwise each pass encodes the distinct images of its chunk with
its own weights (a trainable projector needs the gradient; LoRA's reference uses the original merger).
With ``share_images=False`` — or a transformers release whose models do not take ``mm_encoder_outputs``
— every row carries its own copy of the pixels (the plain transformers path, kept to measure the saving
and as the fallback).

The sampling settings are one :class:`RolloutSampling` value, built once by the recipe. Completions
sampled elsewhere (a vLLM server, :mod:`tagfer.training.engine_rollout`) become the same
:class:`Rollout` through :func:`rollout_from_completions`, carrying the engine's per-token log-probs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tagfer.models.fsdp import unsharded
from tagfer.models.generation import Completions, generate_completions
from tagfer.models.image_features import can_share_images, encode_images, vision_is_frozen, with_image_features
from tagfer.models.inputs import append_completions, repeat_inputs, select_rows


@dataclass(frozen=True)
class RolloutSampling:
    """How rollouts are sampled, every setting explicit (never the checkpoint's ``generation_config``).

    Attributes:
        group_size: ``G`` completions per prompt.
        max_new_tokens: completion length cap.
        temperature: > 0; the policy's log-probs are taken at the same temperature.
        top_p: nucleus mass (1 = off).
        top_k: top-k cut (0 = off).
        share_images: encode each image once per group (:class:`Rollout`).
    """

    group_size: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    share_images: bool = True

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.max_new_tokens < 1:
            raise ValueError(f"rollout sampling: group_size ({self.group_size}) and max_new_tokens ({self.max_new_tokens}) must be ≥ 1")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"rollout sampling: temperature must be > 0 (GRPO samples), got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ValueError(f"rollout sampling: need 0 < top_p ≤ 1 and top_k ≥ 0, got {self.top_p}, {self.top_k}")

    @classmethod
    def of(cls, rl_cfg: Any) -> RolloutSampling:
        """The settings of an ``rl`` config section (:class:`tagfer.core.config.RLConfig`)."""
        return cls(
            group_size=int(rl_cfg.num_generations),
            max_new_tokens=int(rl_cfg.max_new_tokens),
            temperature=float(rl_cfg.temperature),
            top_p=float(rl_cfg.top_p),
            top_k=int(rl_cfg.top_k),
            share_images=bool(rl_cfg.share_image_features),
        )


@dataclass
class Rollout:
    """Completions of ``B`` prompts × ``G`` and the model inputs of prompt + completion.

    Attributes:
        prompts: the ``B`` prompt rows as collated (``pixel_values`` included).
        sequences: ``B·G`` rows of prompt + completion (``input_ids``, ``attention_mask``,
            ``mm_token_type_ids``, ``image_grid_thw``; ``pixel_values`` only when images are not shared).
        completions: the generated completions (``B·G`` rows).
        group_size: ``G``.
        features: vision features of the ``B`` images reused by every pass, or None (each pass encodes).
        share_images: False → ``sequences`` carries repeated pixels and passes use the plain path.
        engine_logps: ``[B·G, C]`` the sampling engine's log-prob of each completion token (0 on padding),
            when the completions came from an engine that reports them (vLLM); None for ``hf``.
    """

    prompts: Mapping[str, torch.Tensor]
    sequences: Mapping[str, torch.Tensor]
    completions: Completions
    group_size: int
    features: Any | None
    share_images: bool = True
    engine_logps: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.completions.ids.shape[0]

    def model_inputs(self, model: torch.nn.Module, rows: slice) -> dict:
        """Forward inputs of ``rows`` (prompt + completion) for ``model``.

        Shared images: the rollout's features when the vision tower is frozen, else the distinct images
        of ``rows`` encoded by ``model`` now (under the caller's grad mode).
        """
        chunk = select_rows(self.sequences, rows)
        if not self.share_images:
            return chunk
        prompt_index = [row // self.group_size for row in range(rows.start, rows.stop)]
        if self.features is not None:
            return with_image_features(chunk, self.features, prompt_index)
        first = prompt_index[0]
        prompts = select_rows(self.prompts, slice(first, prompt_index[-1] + 1))
        features = encode_images(model, prompts["pixel_values"], prompts["image_grid_thw"])
        return with_image_features(chunk, features, [index - first for index in prompt_index])


@torch.no_grad()
def generate_rollout(
    model: torch.nn.Module,
    processor: Any,
    prompts: Mapping[str, torch.Tensor],
    group_size: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    do_sample: bool = True,
    share_images: bool = True,
) -> Rollout:
    """Sample ``group_size`` completions per prompt of ``prompts`` (a collated left-padded batch, one
    image per prompt) with ``model`` as it is (the caller sets eval mode)."""
    sampling = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k)
    share_images = share_images and can_share_images(model)
    with unsharded(model):
        if share_images:
            tokens = repeat_inputs({k: v for k, v in prompts.items() if k != "pixel_values"}, group_size)
            features = encode_images(model, prompts["pixel_values"], prompts["image_grid_thw"])
            index = [row // group_size for row in range(tokens["input_ids"].shape[0])]
            completions = generate_completions(model, processor, with_image_features(tokens, features, index), **sampling)
            kept = features if vision_is_frozen(model) else None
        else:
            tokens = repeat_inputs(prompts, group_size)
            completions = generate_completions(model, processor, tokens, **sampling)
            kept = None
    sequences = append_completions(tokens, completions.ids, completions.mask)
    return Rollout(prompts, sequences, completions, group_size, kept, share_images)


@torch.no_grad()
def rollout_from_completions(
    model: torch.nn.Module,
    prompts: Mapping[str, torch.Tensor],
    completions: Completions,
    group_size: int,
    *,
    share_images: bool = True,
    engine_logps: torch.Tensor | None = None,
) -> Rollout:
    """The :class:`Rollout` of completions sampled elsewhere: ``completions`` are ``B·G`` rows, group-major,
    for the ``B`` prompts of ``prompts``; the frozen vision tower's features are computed here once (as
    :func:`generate_rollout` keeps them), else each pass encodes its images."""
    rows = prompts["input_ids"].shape[0] * group_size
    if completions.ids.shape[0] != rows or (engine_logps is not None and engine_logps.shape != completions.ids.shape):
        raise ValueError(
            f"{completions.ids.shape[0]} completions (log-probs {None if engine_logps is None else tuple(engine_logps.shape)}) "
            f"for {prompts['input_ids'].shape[0]} prompts × {group_size}"
        )
    share_images = share_images and can_share_images(model)
    kept = None
    if share_images:
        tokens = repeat_inputs({k: v for k, v in prompts.items() if k != "pixel_values"}, group_size)
        if vision_is_frozen(model):
            with unsharded(model):
                kept = encode_images(model, prompts["pixel_values"], prompts["image_grid_thw"])
    else:
        tokens = repeat_inputs(prompts, group_size)
    device = prompts["input_ids"].device
    sequences = append_completions(tokens, completions.ids.to(device), completions.mask.to(device))
    return Rollout(prompts, sequences, completions, group_size, kept, share_images, engine_logps)
