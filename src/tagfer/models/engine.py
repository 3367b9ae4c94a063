"""The generation engine seam: ``hf`` (in-process ``generate``) or ``vllm`` (an OpenAI-compatible server).

Every consumer (teacher traces, evaluation, GRPO rollouts) generates through a ``generate(images,
prompts) -> texts`` function. :func:`hf_generator` builds it over a loaded model;
:func:`vllm_endpoint` gives the :class:`~tagfer.models.openai_endpoint.EndpointSettings` of a vLLM
server — one launched for the run (``engine.vllm.python``, loopback, a fresh API key, stopped with its
process group at the end, :mod:`tagfer.models.vllm_server`) or one the user runs (``engine.vllm.url``) —
and :func:`tagfer.models.openai_endpoint.endpoint_generator` sends the prompts there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tagfer.core.config import VLLMConfig
from tagfer.models.openai_endpoint import EndpointSettings
from tagfer.models.vllm_server import ServerSpec, launched_server

#: ``generate(images, prompts) -> completions``: one completion per prompt, in order.
GenerateFn = Callable[[Sequence[Any], Sequence[str]], list[str]]


def hf_generator(model: Any, processor: Any, *, max_new_tokens: int, temperature: float) -> GenerateFn:
    """``generate(images, prompts)`` over a loaded VLM (:func:`tagfer.models.loader.load_vlm`).

    Prompts go through the chat template with the image (:func:`tagfer.models.inputs.build_generation_inputs`)
    and :func:`tagfer.models.generation.generate_completions` (sampling at ``temperature``, greedy when 0).
    """
    from tagfer.models.generation import generate_completions
    from tagfer.models.inputs import build_generation_inputs

    def generate(images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        inputs = build_generation_inputs(processor, images, prompts).to(model.device)
        completions = generate_completions(
            model, processor, inputs, max_new_tokens=int(max_new_tokens), do_sample=temperature > 0, temperature=float(temperature)
        )
        return completions.texts

    return generate


def api_key_from_env(variable: str, where: str) -> str:
    """The API key in environment variable ``variable`` ("" when ``variable`` is empty)."""
    if not variable:
        return ""
    if variable not in os.environ:
        raise KeyError(f"{where}: environment variable {variable!r} (the API key) is not set")
    return os.environ[variable]


def server_spec(vllm_cfg: VLLMConfig, model_dir: str, *, enable_lora: bool = False, max_lora_rank: int = 16) -> ServerSpec:
    """The :class:`ServerSpec` of ``engine.vllm`` (``vllm_cfg``, built by the recipe) serving ``model_dir``."""
    python = str(vllm_cfg.python)
    if not os.path.isabs(python) and os.sep in python:
        python = os.path.abspath(python)
    return ServerSpec(
        python=python,
        model=str(model_dir),
        host=str(vllm_cfg.host),
        port=int(vllm_cfg.port),
        args=tuple(str(a) for a in vllm_cfg.args),
        env={str(k): str(v) for k, v in vllm_cfg.env.items()},
        enable_lora=enable_lora,
        max_lora_rank=max_lora_rank,
        startup_timeout_s=float(vllm_cfg.startup_timeout_s),
    )


@contextmanager
def vllm_endpoint(
    vllm_cfg: VLLMConfig, model_dir: str, *, enable_lora: bool = False, max_lora_rank: int = 16
) -> Iterator[EndpointSettings]:
    """Endpoint settings of ``engine.vllm`` for ``model_dir``: its ``url``, else a server launched for the
    ``with`` block (stopped on exit)."""

    def settings(base_url: str, api_key: str) -> EndpointSettings:
        return EndpointSettings(
            base_url=base_url,
            model=str(model_dir),
            api_key=api_key,
            timeout_s=float(vllm_cfg.request_timeout_s),
            max_retries=int(vllm_cfg.max_retries),
            concurrency=int(vllm_cfg.concurrency),
        )

    if vllm_cfg.url:
        yield settings(str(vllm_cfg.url), api_key_from_env(str(vllm_cfg.api_key_env), "engine.vllm.api_key_env"))
        return
    with launched_server(server_spec(vllm_cfg, model_dir, enable_lora=enable_lora, max_lora_rank=max_lora_rank)) as server:
        yield settings(server.base_url, server.api_key)
