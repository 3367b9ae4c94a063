"""GRPO rollouts sampled by a vLLM server (``engine.backend: vllm``), kept on-policy by pushing the LoRA adapter.

One chat-completions request per prompt asks for ``n = G`` completions with the rollout's sampling
settings stated in full (:class:`tagfer.training.rollout.RolloutSampling` → temperature, top_p, top_k,
max_tokens, repetition_penalty 1, the vision placeholders banned as the HF path suppresses them), the
generated token ids (``return_token_ids``) and each sampled token's log-prob (``logprobs`` with
``top_logprobs`` 0 and ``return_tokens_as_token_ids``, so every log-prob names the token it belongs
to). The server must run with ``--logprobs-mode processed_logprobs``: its log-probs are then those of
the distribution it sampled from (after temperature, top-k/top-p and the logit bias), the quantity the
policy's own log-probs at the same temperature are compared with.

From the answers :func:`engine_completions` builds the same :class:`~tagfer.models.generation.Completions`
the HF path builds (right-padded ids, mask up to and including EOS, texts decoded by the policy's
processor) and ``engine_logps [B·G, C]``; the trainer scores exactly those tokens with the policy.
The server's ``prompt_token_ids`` must equal the collated prompt (chat template and image tokens):
a server whose processor resizes images differently would otherwise be trained on silently.

:class:`VLLMRollouts` requests the adapter under its ``lora_name``; :meth:`VLLMRollouts.push` writes the
policy's adapter and reloads it on the server in place (:func:`tagfer.models.vllm_lora.push_adapter`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from tagfer.models.generation import Completions, completion_mask
from tagfer.models.openai_endpoint import Answer, ChatClient, Sampling
from tagfer.models.vllm_lora import push_adapter
from tagfer.training.rollout import Rollout, RolloutSampling, rollout_from_completions

#: Server argument that makes the returned log-probs those of the sampling distribution.
LOGPROBS_MODE_ARGS = ("--logprobs-mode", "processed_logprobs")


def engine_sampling(sampling: RolloutSampling, banned_token_ids: Sequence[int]) -> Sampling:
    """The request settings of a rollout: ``n = G`` sampled completions with their log-probs."""
    return Sampling(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        banned_token_ids=tuple(int(i) for i in banned_token_ids),
        n=sampling.group_size,
        logprobs=True,
    )


def check_prompts(answers: Sequence[Answer], prompts: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError unless each answer's ``prompt_token_ids`` equal the unpadded collated prompt row."""
    for row, answer in enumerate(answers):
        expected = prompts["input_ids"][row][prompts["attention_mask"][row].bool()].tolist()
        if answer.prompt_token_ids is None or list(answer.prompt_token_ids) != expected:
            got = None if answer.prompt_token_ids is None else len(answer.prompt_token_ids)
            raise ValueError(
                f"vLLM rollouts: the server's prompt of row {row} ({got} tokens) is not the collated prompt ({len(expected)} "
                "tokens): it must serve the policy's base with the same processor (model.min_pixels/max_pixels, chat template)"
            )


def engine_completions(
    answers: Sequence[Answer], processor: Any, eos_ids: Sequence[int], device: torch.device | str = "cpu"
) -> tuple[Completions, torch.Tensor]:
    """``(completions, engine_logps)`` of the answers' completions, answer by answer (group-major).

    ``ids [N, C]`` right-padded with the pad id (``C`` the longest completion), ``mask`` 1 up to and
    including the first EOS (:func:`tagfer.models.generation.completion_mask`), ``truncated`` where no
    EOS came, ``engine_logps [N, C]`` the server's log-prob of each token (0 on padding). A completion
    that stopped (``finish_reason`` not "length") must end with an EOS id, else ValueError.
    """
    rows = [completion for answer in answers for completion in answer.completions]
    for index, completion in enumerate(rows):
        if completion.token_ids is None or completion.logprobs is None:
            raise ValueError(f"vLLM rollouts: completion {index} came back without token ids or log-probs")
        if not completion.truncated and (not completion.token_ids or completion.token_ids[-1] not in eos_ids):
            raise ValueError(f"vLLM rollouts: completion {index} stopped without an EOS token {list(eos_ids)}: {completion.token_ids[-5:]}")
    width = max(1, max(len(c.token_ids) for c in rows))
    pad_id = processor.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    engine_logps = torch.zeros((len(rows), width), dtype=torch.float32)
    for index, completion in enumerate(rows):
        ids[index, : len(completion.token_ids)] = torch.tensor(completion.token_ids, dtype=torch.long)
        engine_logps[index, : len(completion.logprobs)] = torch.tensor(completion.logprobs, dtype=torch.float32)
    lengths = torch.tensor([len(c.token_ids) for c in rows])
    real = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    mask, truncated = completion_mask(torch.where(real, ids, torch.full_like(ids, -1)), list(eos_ids))
    mask = mask * real.long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_id))
    engine_logps = engine_logps * mask
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    completions = Completions(ids=ids.to(device), mask=mask.to(device), texts=texts, truncated=truncated.to(device))
    return completions, engine_logps.to(device)


class VLLMRollouts:
    """Rollouts from a vLLM server serving the policy's base with ``--enable-lora``.

    Args:
        client: a client of the server; its ``model`` is the adapter's ``lora_name`` once pushed.
        adapter_dir: where :meth:`push` writes the adapter (readable by the server).
        prompt: the task prompt text (the collator's; one image per prompt).
        sampling: the rollout settings.
        eos_ids: ids that end a completion (:func:`tagfer.models.generation.eos_token_ids`).
        banned_token_ids: the vision placeholders (:func:`tagfer.models.generation.suppressed_token_ids`).
    """

    def __init__(
        self,
        client: ChatClient,
        adapter_dir: str | os.PathLike,
        *,
        prompt: str,
        sampling: RolloutSampling,
        eos_ids: Sequence[int],
        banned_token_ids: Sequence[int],
    ):
        self.client = client
        self.adapter_dir = Path(adapter_dir)
        self.prompt = prompt
        self.sampling = sampling
        self.eos_ids = tuple(int(i) for i in eos_ids)
        self.request = engine_sampling(sampling, banned_token_ids)

    def push(self, model: Any) -> None:
        """Write ``model``'s adapter and reload it on the server in place (later requests use it)."""
        push_adapter(self.client, model, self.client.settings.model, self.adapter_dir)

    def rollout(self, model: torch.nn.Module, processor: Any, prompts: Mapping[str, torch.Tensor], images: Sequence[Any]) -> Rollout:
        """``G`` completions of each of the ``B`` collated ``prompts`` (their ``images`` sent to the server)."""
        answers = self.client.answers(images, [self.prompt] * len(images), self.request)
        check_prompts(answers, prompts)
        completions, engine_logps = engine_completions(answers, processor, self.eos_ids, prompts["input_ids"].device)
        return rollout_from_completions(
            model, prompts, completions, self.sampling.group_size, share_images=self.sampling.share_images, engine_logps=engine_logps
        )
