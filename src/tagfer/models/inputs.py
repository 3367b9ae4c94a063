"""Model inputs from (image, prompt[, target]) through the processor — the one place the chat format is applied.

* :func:`build_generation_inputs`: left-padded prompts ending in the assistant turn (generation, GRPO
  rollouts, evaluation, predict).
* :func:`build_sft_inputs`: prompt + target with ``labels`` that are -100 everywhere except the target
  tokens and the closing ``<|im_end|>``. The target is tokenised on its own (as a generated completion
  is), so its label span decodes back to exactly the target text. Truncation only ever cuts the target's
  end; it never touches the prompt or the image tokens.
* :func:`repeat_inputs` / :func:`append_completions` / :func:`select_rows`: G copies of each prompt,
  prompt + completion batches and row chunks for GRPO, keeping ``pixel_values``, ``image_grid_thw`` and
  ``mm_token_type_ids`` consistent with the token rows.

Images are HWC uint8 numpy arrays (RGB, or grey HW) or PIL images, one per prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature

from tagfer.core.prompt import SYSTEM_PROMPT
from tagfer.models.boxes import Box, Size, to_model_space_array

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
#: Keys whose rows follow the token rows (per-token tensors).
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def to_pil(image: Any, where: str = "image") -> Image.Image:
    """An RGB PIL image from a PIL image or an ``[H, W, 3]`` / ``[H, W]`` uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"{where}: expected an HWC uint8 RGB array or a PIL image, got {array.dtype} array of shape {array.shape}")
    return Image.fromarray(array).convert("RGB")


def chat_messages(prompt: str, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict]:
    """One user turn with the image first, then the prompt text (after a system turn unless None)."""
    messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}] if system_prompt else []
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    return messages


def prompt_texts(processor: Any, prompts: Sequence[str], system_prompt: str | None = SYSTEM_PROMPT) -> list[str]:
    """The chat-formatted prompt strings, ending with the assistant turn's opening (generation prompt)."""
    return [
        processor.apply_chat_template(chat_messages(prompt, system_prompt), tokenize=False, add_generation_prompt=True)
        for prompt in prompts
    ]


def _check_batch(images: Sequence, prompts: Sequence[str], *others: Sequence) -> list[Image.Image]:
    if len(images) != len(prompts) or any(len(o) != len(prompts) for o in others):
        raise ValueError(f"need one image (and target) per prompt, got {len(images)} images for {len(prompts)} prompts")
    if not prompts:
        raise ValueError("empty batch")
    return [to_pil(image, f"image {i}") for i, image in enumerate(images)]


def build_generation_inputs(
    processor: Any, images: Sequence[Any], prompts: Sequence[str], *, system_prompt: str | None = SYSTEM_PROMPT
) -> BatchFeature:
    """Left-padded generation inputs: ``input_ids``, ``attention_mask``, ``mm_token_type_ids`` ``[B, L]``,
    ``pixel_values`` ``[sum of patches, C·T·P·P]`` and ``image_grid_thw`` ``[B, 3]``."""
    pil = _check_batch(images, prompts)
    if processor.tokenizer.padding_side != "left":
        raise ValueError("generation needs a left-padding tokenizer (load_vlm sets processor.tokenizer.padding_side='left')")
    return processor(text=prompt_texts(processor, prompts, system_prompt), images=pil, padding=True, return_tensors="pt")


def build_sft_inputs(
    processor: Any,
    images: Sequence[Any],
    prompts: Sequence[str],
    targets: Sequence[str],
    max_length: int,
    *,
    system_prompt: str | None = SYSTEM_PROMPT,
    sample_ids: Sequence[str] | None = None,
) -> BatchFeature:
    """Teacher-forcing inputs with ``labels`` on the assistant answer only.

    Row ``i`` is ``prompt_i`` (chat template, image tokens, assistant opening) followed by the tokens of
    ``targets[i] + "<|im_end|>"``; ``labels`` equal ``input_ids`` on those target tokens and are -100
    elsewhere (prompt, image, padding). Rows longer than ``max_length`` lose the end of their target.
    Padding follows ``processor.tokenizer.padding_side``.

    Raises ValueError naming the sample (``sample_ids[i]`` or its index) when its prompt and image
    tokens alone leave no room for a target token within ``max_length``.
    """
    pil = _check_batch(images, prompts, targets)
    tokenizer = processor.tokenizer
    encoded = processor(text=prompt_texts(processor, prompts, system_prompt), images=pil, padding=True, return_tensors="pt")
    keys = [key for key in TOKEN_KEYS if key in encoded]
    rows, truncated = [], 0
    for i, target in enumerate(targets):
        keep = encoded["attention_mask"][i].bool()
        prompt = {key: encoded[key][i][keep] for key in keys}
        room = max_length - len(prompt["input_ids"])
        if room < 1:
            name = sample_ids[i] if sample_ids is not None else f"#{i}"
            raise ValueError(
                f"sample {name}: the prompt with its image tokens is {len(prompt['input_ids'])} tokens, "
                f"sft.max_length={max_length} leaves no room for the target; raise sft.max_length or lower model.max_pixels"
            )
        target_ids = torch.tensor(tokenizer(target + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
        truncated += len(target_ids) > room
        target_ids = target_ids[:room]
        tail = {"input_ids": target_ids, "attention_mask": torch.ones_like(target_ids), "mm_token_type_ids": torch.zeros_like(target_ids)}
        row = {key: torch.cat([prompt[key], tail[key]]) for key in keys}
        row["labels"] = torch.cat([torch.full_like(prompt["input_ids"], IGNORE_INDEX), target_ids])
        rows.append(row)
    if truncated:
        log.warning("%d of %d SFT targets cut at max_length=%d", truncated, len(targets), max_length)
    pad_values = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "mm_token_type_ids": 0, "labels": IGNORE_INDEX}
    batch = {key: _pad([row[key] for row in rows], pad_values[key], tokenizer.padding_side) for key in rows[0]}
    batch["pixel_values"] = encoded["pixel_values"]
    batch["image_grid_thw"] = encoded["image_grid_thw"]
    return BatchFeature(batch)


def _pad(rows: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    """Stack 1-D tensors into ``[B, max_len]``, padding with ``value`` on ``side`` ("left"/"right")."""
    length = max(len(row) for row in rows)
    out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        if side == "left":
            out[i, length - len(row) :] = row
        else:
            out[i, : len(row)] = row
    return out


def repeat_inputs(inputs: Mapping[str, torch.Tensor], n: int) -> BatchFeature:
    """Each sample ``n`` times in a row (GRPO groups: rows ``[a, a, b, b]`` for ``n = 2``).

    Token tensors repeat by row; ``image_grid_thw`` by row; ``pixel_values`` (one block of
    ``t·h·w`` patch rows per image) by image block, so images and their placeholder tokens stay paired.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    out = {}
    for key, value in inputs.items():
        if key == "pixel_values":
            sizes = inputs["image_grid_thw"].prod(-1).tolist()
            out[key] = torch.cat([block for block in value.split(sizes) for _ in range(n)])
        else:
            out[key] = value.repeat_interleave(n, dim=0)
    return BatchFeature(out)


def select_rows(inputs: Mapping[str, torch.Tensor], rows: slice) -> dict:
    """Rows ``rows`` (a step-1 slice) of a model-input batch with one image per row: token tensors and
    ``image_grid_thw`` by row, ``pixel_values`` by the image blocks of those rows."""
    out = {key: value[rows] for key, value in inputs.items() if key != "pixel_values"}
    if "pixel_values" in inputs:
        patches = inputs["image_grid_thw"].prod(-1)
        first = int(patches[: rows.start].sum())
        out["pixel_values"] = inputs["pixel_values"][first : first + int(patches[rows].sum())]
    return out


def append_completions(inputs: Mapping[str, torch.Tensor], completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> BatchFeature:
    """Prompt batch + completions ``[B, C]`` (right-padded, ``completion_mask`` 1 on real tokens).

    ``input_ids``/``attention_mask`` are concatenated, ``mm_token_type_ids`` extended with text (0); the
    vision tensors are unchanged. The completion's logits are those at positions ``L - 1 ... L + C - 2``
    of the result (``L`` = prompt length).
    """
    if completion_ids.shape != completion_mask.shape or completion_ids.shape[0] != inputs["input_ids"].shape[0]:
        raise ValueError(
            f"completion_ids {tuple(completion_ids.shape)} and completion_mask {tuple(completion_mask.shape)} "
            f"must both be [B, C] with B = {inputs['input_ids'].shape[0]}"
        )
    out = dict(inputs)
    out["input_ids"] = torch.cat([inputs["input_ids"], completion_ids], dim=1)
    out["attention_mask"] = torch.cat([inputs["attention_mask"], completion_mask.to(inputs["attention_mask"].dtype)], dim=1)
    if "mm_token_type_ids" in inputs:
        out["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
    return BatchFeature(out)


def decode_completions(processor: Any, sequences: torch.Tensor, prompt_length: int) -> list[str]:
    """Text of ``generate``'s output after the prompt (special tokens such as ``<|im_end|>`` dropped)."""
    return processor.batch_decode(sequences[:, prompt_length:], skip_special_tokens=True)


def boxes_to_model_space(au_box: Mapping[str, Sequence[float]], orig_size: Size, input_size: Size, convention: str) -> dict[str, Box]:
    """``{AU: box}`` from original pixels to the model's convention (clipped to the coordinate extent)."""
    if not au_box:
        return {}
    converted = to_model_space_array(np.asarray(list(au_box.values()), dtype=np.float64), orig_size, input_size, convention)
    return {au: tuple(float(v) for v in row) for au, row in zip(au_box, converted)}
