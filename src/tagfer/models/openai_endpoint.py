"""A client of an OpenAI-compatible chat-completions endpoint (a vLLM server, a hosted API).

One request per prompt (``POST {base_url}/chat/completions``): the system turn, then one user turn with
the image as a base64 PNG data URL followed by the prompt text — the same messages the HF path renders
through the chat template (:func:`tagfer.models.inputs.chat_messages`). Every sampling setting is sent
explicitly (:class:`Sampling`), so the server's or the checkpoint's defaults never apply.

Requests run ``concurrency`` at a time and come back in prompt order. A request that fails with HTTP 429
or 5xx, a dropped connection or a timeout is retried up to ``max_retries`` times after
:func:`backoff_delay`; any other HTTP error (400, 401, 404, ...) fails at once with the server's message.
Only the standard library is used (the project's environment needs no HTTP package for this).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tagfer.models.inputs import SYSTEM_PROMPT, to_pil

#: HTTP statuses worth a retry: rate limited, and server-side failures.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class EndpointError(RuntimeError):
    """A request that failed for good (a non-retryable status, or retries exhausted)."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings sent with every request. ``temperature`` 0 is greedy; ``top_k`` 0 is off;
    ``banned_token_ids`` get a logit bias of -100 (the vision placeholders the HF path suppresses,
    :func:`tagfer.models.generation.suppressed_token_ids`)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    banned_token_ids: tuple[int, ...] = ()
    n: int = 1
    logprobs: bool = False

    def request_fields(self, *, extensions: bool = True) -> dict[str, Any]:
        """The request body's sampling fields, every one stated. With ``extensions`` (a vLLM server) also
        vLLM's ``top_k`` (-1 = off), ``repetition_penalty``, ``min_p`` (0 = off) and ``return_token_ids``; without (a hosted
        API that rejects unknown fields) only the OpenAI ones. ``n`` completions per request; with
        ``logprobs`` each sampled token's log-prob comes back (``top_logprobs`` 0: the sampled token only;
        on vLLM ``return_tokens_as_token_ids`` names it ``token_id:<id>``)."""
        fields: dict[str, Any] = {
            "max_tokens": int(self.max_new_tokens),
            "temperature": float(self.temperature),
            "top_p": float(self.top_p) if self.temperature > 0 else 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "n": int(self.n),
        }
        if self.banned_token_ids:
            fields["logit_bias"] = {str(int(i)): -100 for i in self.banned_token_ids}
        if self.logprobs:
            fields["logprobs"], fields["top_logprobs"] = True, 0
        if extensions:
            fields["top_k"] = int(self.top_k) if self.temperature > 0 and self.top_k > 0 else -1
            fields["repetition_penalty"] = 1.0
            fields["min_p"] = 0.0
            fields["return_token_ids"] = True
            if self.logprobs:
                fields["return_tokens_as_token_ids"] = True
        if self.seed is not None:
            fields["seed"] = int(self.seed)
        return fields


@dataclass(frozen=True)
class EndpointSettings:
    """Where and how to send requests.

    Attributes:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name (vLLM: the ``--model`` argument, or an adapter's ``lora_name``).
        api_key: sent as ``Authorization: Bearer`` (empty: no header).
        timeout_s: seconds one request may take.
        max_retries: retries of one request after a retryable failure.
        backoff_s: first retry delay; doubled each retry, capped at ``backoff_cap_s``.
        concurrency: requests in flight at once.
        extensions: send vLLM's request extensions (see :meth:`Sampling.request_fields`).
    """

    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 300.0
    max_retries: int = 5
    backoff_s: float = 1.0
    backoff_cap_s: float = 60.0
    concurrency: int = 8
    extensions: bool = True

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint base_url must start with http:// or https://, got {self.base_url!r}")
        if self.max_retries < 0 or self.concurrency < 1 or self.timeout_s <= 0:
            raise ValueError("endpoint: max_retries must be ≥ 0, concurrency ≥ 1 and timeout_s > 0")


def backoff_delay(retry: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): ``min(cap_s, base_s · 2^retry)``."""
    return min(cap_s, base_s * 2.0**retry)


def image_data_url(image: Any) -> str:
    """An image (PIL, or an HWC uint8 array) as a ``data:image/png;base64,...`` URL (PNG: lossless, the
    pixels the HF path sees)."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_body(
    model: str, image: Any, prompt: str, sampling: Sampling, system_prompt: str | None = SYSTEM_PROMPT, *, extensions: bool = True
) -> dict:
    """The JSON body of one chat-completions request (messages as :func:`tagfer.models.inputs.chat_messages`)."""
    messages: list[dict] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append(
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": prompt}],
        }
    )
    return {"model": model, "messages": messages, **sampling.request_fields(extensions=extensions)}


@dataclass(frozen=True)
class Completion:
    """One answer: its ``text``, whether it hit ``max_new_tokens`` (``finish_reason`` "length") and, from
    a vLLM server, the generated ``token_ids`` (None elsewhere); with :attr:`Sampling.logprobs` the
    engine's log-prob of each generated token (``logprobs[t]`` belongs to ``token_ids[t]``)."""

    text: str
    truncated: bool
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Answer:
    """The answer to one request: the ``n`` completions in ``index`` order and, from a vLLM server, the
    ``prompt_token_ids`` it generated after (the chat template and image tokens as the server rendered them)."""

    completions: tuple[Completion, ...]
    prompt_token_ids: tuple[int, ...] | None = None


def parse_choice(choice: dict) -> Completion:
    """A :class:`Completion` from one ``choices`` entry. With log-probs, each ``logprobs.content`` entry must
    name its token as ``token_id:<id>`` equal to ``token_ids`` at that position (else ValueError): the
    log-probs are then known to belong to exactly the returned tokens."""
    ids = choice.get("token_ids")
    ids = None if ids is None else tuple(int(i) for i in ids)
    content = (choice.get("logprobs") or {}).get("content")
    logprobs = None
    if content is not None:
        named = [entry["token"] for entry in content]
        if ids is None or named != [f"token_id:{i}" for i in ids]:
            raise ValueError(f"log-probs name tokens {named[:8]}... that are not the returned token_ids {list(ids or ())[:8]}...")
        logprobs = tuple(float(entry["logprob"]) for entry in content)
    return Completion(choice["message"]["content"] or "", choice.get("finish_reason") == "length", ids, logprobs)


def parse_answer(payload: dict, n: int) -> Answer:
    """An :class:`Answer` from a chat-completions response holding ``n`` choices (else ValueError)."""
    choices = sorted(payload["choices"], key=lambda choice: choice["index"])
    if [choice["index"] for choice in choices] != list(range(n)):
        raise ValueError(f"expected choices 0..{n - 1}, got indices {[choice['index'] for choice in choices]}")
    prompt = payload.get("prompt_token_ids")
    return Answer(tuple(parse_choice(choice) for choice in choices), None if prompt is None else tuple(int(i) for i in prompt))


class _Retryable(Exception):
    pass


class ChatClient:
    """Chat completions of ``(image, prompt)`` pairs against one endpoint (see the module docstring)."""

    def __init__(self, settings: EndpointSettings, *, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._sleep = sleep

    def complete(self, images: Sequence[Any], prompts: Sequence[str], sampling: Sampling) -> list[str]:
        """One completion text per prompt, in order. Raises :class:`EndpointError`."""
        return [c.text for c in self.completions(images, prompts, sampling)]

    def completions(self, images: Sequence[Any], prompts: Sequence[str], sampling: Sampling) -> list[Completion]:
        """One :class:`Completion` per prompt (the first of its ``n``), in order. Raises :class:`EndpointError`."""
        return [answer.completions[0] for answer in self.answers(images, prompts, sampling)]

    def answers(self, images: Sequence[Any], prompts: Sequence[str], sampling: Sampling) -> list[Answer]:
        """One :class:`Answer` (``sampling.n`` completions) per prompt, in order. Raises :class:`EndpointError`."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        s = self.settings
        bodies = [chat_body(s.model, image, prompt, sampling, extensions=s.extensions) for image, prompt in zip(images, prompts)]
        if len(bodies) <= 1 or s.concurrency == 1:
            return [self._chat(body) for body in bodies]
        with ThreadPoolExecutor(max_workers=min(s.concurrency, len(bodies))) as pool:
            return list(pool.map(self._chat, bodies))

    def _chat(self, body: dict) -> Answer:
        payload = self.post("/chat/completions", body)
        try:
            return parse_answer(payload, body["n"])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
            raise EndpointError(f"{self.settings.base_url}: unexpected response ({err}): {json.dumps(payload)[:300]}") from None

    def post(self, path: str, body: dict) -> Any:
        """POST ``body`` to ``base_url + path`` with the retries of the module docstring; the JSON answer
        (None for an empty body). Raises :class:`EndpointError`."""
        s = self.settings
        for retry in range(s.max_retries + 1):
            try:
                return self._post(path, body)
            except _Retryable as err:
                if retry == s.max_retries:
                    raise EndpointError(f"{s.base_url}: gave up after {s.max_retries + 1} attempts: {err}") from None
                self._sleep(backoff_delay(retry, s.backoff_s, s.backoff_cap_s))
        raise AssertionError("unreachable")

    def _post(self, path: str, body: dict) -> Any:
        s = self.settings
        headers = {"Content-Type": "application/json"}
        if s.api_key:
            headers["Authorization"] = f"Bearer {s.api_key}"
        request = urllib.request.Request(s.base_url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=s.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            message = f"HTTP {err.code} from {request.full_url}: {detail}"
            if err.code in RETRYABLE_STATUS:
                raise _Retryable(message) from None
            raise EndpointError(message) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            raise _Retryable(f"{type(err).__name__} from {request.full_url}: {err}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw.decode(errors="replace")


def endpoint_generator(client: ChatClient, sampling: Sampling) -> Callable[[Sequence[Any], Sequence[str]], list[str]]:
    """``generate(images, prompts) -> texts`` through ``client`` (the teacher loop's ``GenerateFn``)."""

    def generate(images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        return client.complete(images, prompts, sampling)

    return generate
