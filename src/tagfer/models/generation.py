"""Batched generation with ``model.generate`` and the completion masks GRPO needs.

One call generates every row of a left-padded prompt batch (GRPO passes B prompts already repeated G
times, group-major, see :mod:`tagfer.training.rollout`) with the KV cache on. A model sharded with FSDP2
is gathered once for the whole call (:func:`tagfer.models.fsdp.unsharded`), not once per token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig

from tagfer.models.fsdp import unsharded
from tagfer.models.image_features import causal_lm


@dataclass
class Completions:
    """Generated continuations of ``N`` prompts.

    Attributes:
        ids: ``[N, C]`` token ids after the prompt (right-padded).
        mask: ``[N, C]`` 1 on real completion tokens: everything up to and including the first EOS.
        texts: decoded completions (special tokens dropped).
        truncated: ``[N]`` bool, True where no EOS came before ``max_new_tokens`` (clipped completions).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    texts: list[str]
    truncated: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``[N]`` number of completion tokens (EOS included)."""
        return self.mask.sum(dim=1)


def eos_token_ids(model: Any, processor: Any) -> list[int]:
    """Every id that ends a completion: the generation config's EOS ids, the tokenizer's EOS and ``<|im_end|>``."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    tokenizer = processor.tokenizer
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(ids)


#: Tokens a completion must never contain: an image/video placeholder in the completion would break the
#: next forward pass ("image features and image tokens do not match").
VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def suppressed_token_ids(processor: Any) -> list[int]:
    """Ids of :data:`VISION_SPECIAL_TOKENS` known to the tokenizer."""
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(token) for token in VISION_SPECIAL_TOKENS]
    return sorted({i for i in ids if isinstance(i, int) and i != tokenizer.unk_token_id})


def completion_mask(ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, truncated)`` for completions ``ids [N, C]``: mask is 1 up to and including the first EOS.

    ``mask[i, t] = 1`` iff ``t ≤ first_eos(i)``, where ``first_eos(i) = C − 1`` when row ``i`` has no EOS
    (then ``truncated[i]`` is True).
    """
    is_eos = torch.isin(ids, torch.tensor(eos_ids, device=ids.device))
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, ids.shape[1] - 1, dtype=torch.long))
    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return (positions <= first.unsqueeze(1)).long(), ~has_eos


def explicit_generation_config(
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    top_k: int,
    eos_token_id: list[int],
    pad_token_id: int,
    suppress_tokens: list[int],
) -> GenerationConfig:
    """A :class:`GenerationConfig` that states every decoding setting, so no checkpoint default applies.

    Starts from transformers' neutral global defaults (``repetition_penalty 1``, ``top_p 1``,
    ``no_repeat_ngram_size 0``, ``min_length 0``, ...) and sets the given values on top; sampling takes
    ``temperature``/``top_p``/``top_k`` (0 = off, not transformers' 50), greedy (``do_sample`` False)
    leaves them at the global defaults, which greedy search does not read.
    ``remove_invalid_values`` is on: NaN/±inf logits must not crash sampling (GRPO skips such a step at
    the loss).
    """
    values = GenerationConfig._get_default_generation_params()
    values.update(
        max_new_tokens=int(max_new_tokens),
        max_length=None,
        do_sample=bool(do_sample),
        eos_token_id=list(eos_token_id),
        pad_token_id=int(pad_token_id),
        suppress_tokens=list(suppress_tokens),
        remove_invalid_values=True,
    )
    if do_sample:
        values.update(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
    return GenerationConfig(**values)


@contextmanager
def only_config(model: Any, config: GenerationConfig) -> Iterator[None]:
    """Make ``config`` the model's own ``generation_config`` for the duration of a ``generate`` call.

    transformers 5.x (``GenerationMixin._prepare_generation_config``) fills every field of a *passed*
    config that is None from ``model.generation_config`` — the checkpoint's ``generation_config.json``
    (real Qwen2-VL ships ``repetition_penalty 1.05`` and near-greedy ``top_k``/``top_p``) — so passing an
    explicit config is not enough for the fields whose neutral value is None (``bad_words_ids``,
    ``min_p``, ``sequence_bias``, ...). With ``config`` in the model's place the merge adds nothing.
    """
    target = causal_lm(model)
    saved = target.generation_config
    target.generation_config = config
    try:
        yield
    finally:
        target.generation_config = saved


@torch.no_grad()
def generate_completions(
    model: Any,
    processor: Any,
    inputs: Any,
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
) -> Completions:
    """Generate one completion per row of ``inputs`` (a left-padded prompt batch on the model's device).

    Sampling uses ``temperature``/``top_p``/``top_k`` (0 = off); greedy when ``do_sample`` is False. Every
    decoding setting is explicit (:func:`explicit_generation_config`): the checkpoint's
    ``generation_config`` plays no part except for its EOS ids (:func:`eos_token_ids`). Vision placeholder
    tokens are suppressed (:data:`VISION_SPECIAL_TOKENS`); NaN/±inf logits are replaced by finite values
    (``remove_invalid_values``) so sampling never fails on them. ``inputs`` may carry precomputed
    ``mm_encoder_outputs`` instead of ``pixel_values`` (:mod:`tagfer.models.image_features`).
    Under FSDP2 every rank must call it (the weights are all-gathered once, collectively).
    """
    pad_id = processor.tokenizer.pad_token_id
    eos_ids = eos_token_ids(model, processor)
    config = explicit_generation_config(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        suppress_tokens=suppressed_token_ids(processor),
    )
    with unsharded(model), only_config(model, config):
        sequences = model.generate(**inputs, generation_config=config)
    ids = sequences[:, inputs["input_ids"].shape[1] :]
    mask, truncated = completion_mask(ids, eos_ids)
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    return Completions(ids=ids, mask=mask, texts=texts, truncated=truncated)
