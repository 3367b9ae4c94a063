"""Batched generation with ``model.generate`` and the completion masks GRPO needs.

One call generates every row of a left-padded prompt batch (GRPO passes B prompts already repeated G
times, group-major, see :mod:`tagfer.training.rollout`) with the KV cache on. A model sharded with FSDP2
is gathered once for the whole call (:func:`tagfer.models.fsdp.unsharded`), not once per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tagfer.models.fsdp import unsharded


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

    Sampling uses ``temperature``/``top_p``/``top_k`` (0 = off); greedy when ``do_sample`` is False.
    Vision placeholder tokens are suppressed (:data:`VISION_SPECIAL_TOKENS`); NaN/±inf logits are replaced
    by finite values (``remove_invalid_values``) so sampling never fails on them. ``inputs`` may carry
    precomputed ``mm_encoder_outputs`` instead of ``pixel_values`` (:mod:`tagfer.models.image_features`).
    Under FSDP2 every rank must call it (the weights are all-gathered once, collectively).
    """
    options: dict[str, Any] = {
        "max_new_tokens": int(max_new_tokens),
        "do_sample": bool(do_sample),
        "suppress_tokens": suppressed_token_ids(processor),
        "remove_invalid_values": True,  # NaN/inf logits must not crash sampling: GRPO skips such a step at the loss
    }
    if do_sample:
        options.update(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))  # top_k 0: off (not the model's default 50)
    pad_id = processor.tokenizer.pad_token_id
    with unsharded(model):
        sequences = model.generate(**inputs, **options, pad_token_id=pad_id)
    ids = sequences[:, inputs["input_ids"].shape[1] :]
    mask, truncated = completion_mask(ids, eos_token_ids(model, processor))
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    return Completions(ids=ids, mask=mask, texts=texts, truncated=truncated)
