"""An exported VLM ready for greedy inference: evaluation and ``predict`` load it the same way.

:func:`load_inference_model` loads the directory with :func:`tagfer.models.loader.load_vlm` (an exported
adapter or full model, or a plain checkpoint for zero-shot evaluation), reads the classes it was trained
on from the export metadata (all 8 when none are recorded), and moves it to the inference device.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tagfer.core.prompt import task_prompt
from tagfer.data.label_space import trained_classes
from tagfer.metrics.predictions import Prediction
from tagfer.models.collate import PromptCollator
from tagfer.models.device import inference_device
from tagfer.models.export import ADAPTER_CONFIG_FILE, read_export_meta
from tagfer.models.generation import generate_completions, suppressed_token_ids
from tagfer.models.loader import load_processor, load_vlm
from tagfer.models.openai_endpoint import ChatClient, Sampling
from tagfer.models.space import ModelSpace


@dataclass
class InferenceModel:
    """A loaded VLM with what prompting and decoding it needs.

    Attributes:
        model: the network, or None when it was loaded for a vLLM server (``weights=False``).
        classes: the classes the model was trained on; the prompt lists them.
        think_tags: the prompt asks for ``<think>…</think>`` (export metadata ``think_tags``, else the
            config's ``traces.think_tags``).
        source: the directory that was loaded.
    """

    model: Any
    processor: Any
    family: str
    space: ModelSpace
    classes: tuple[str, ...]
    think_tags: bool
    source: str
    device: torch.device

    @property
    def prompt(self) -> str:
        return task_prompt(self.classes, self.space.convention, think_tags=self.think_tags)

    def collator(self) -> PromptCollator:
        """Generation batches with this model's prompt and detector boxes in its coordinate space."""
        return PromptCollator(self.processor, self.space, classes=self.classes, think_tags=self.think_tags)

    def predict(self, inputs: Any, *, max_new_tokens: int) -> list[Prediction]:
        """Greedy completions of a prompt batch (``BatchFeature``), parsed."""
        if self.model is None:
            raise RuntimeError(f"{self.source} was loaded without weights (engine.backend=vllm): predict through the endpoint")
        completions = generate_completions(
            self.model, self.processor, inputs.to(self.device), max_new_tokens=max_new_tokens, do_sample=False
        )
        truncated = completions.truncated.tolist()
        return [Prediction.from_completion(text, truncated=cut) for text, cut in zip(completions.texts, truncated)]


def endpoint_predictor(client: ChatClient, prompt: str, processor: Any, *, max_new_tokens: int) -> Callable[[dict], list[Prediction]]:
    """A predictor of evaluation batches through an OpenAI-compatible endpoint: the batch's images
    (``meta["image"]``) with ``prompt``, greedy (:class:`Sampling` temperature 0), parsed as
    :meth:`InferenceModel.predict` parses. Token ids returned by the server are decoded with
    ``processor`` as the HF path decodes (the server's own text drops an incomplete UTF-8 tail)."""
    sampling = Sampling(max_new_tokens=int(max_new_tokens), banned_token_ids=tuple(suppressed_token_ids(processor)))

    def text(completion) -> str:
        if completion.token_ids is None:
            return completion.text
        return processor.batch_decode([list(completion.token_ids)], skip_special_tokens=True)[0]

    def predict(batch: dict) -> list[Prediction]:
        images = batch["meta"]["image"]
        results = client.completions(images, [prompt] * len(images), sampling)
        return [Prediction.from_completion(text(c), truncated=c.truncated) for c in results]

    return predict


def served_model(source: str) -> tuple[str, str | None, int]:
    """``(model directory to serve, adapter directory or None, adapter rank)`` of an evaluation source:
    a model directory is served as it is; an adapter export over a plain model serves the base with the
    adapter loaded at run time. An adapter over an adapter (RL over SFT) needs the SFT adapter merged
    first: ValueError."""
    path = Path(source)
    config = path / ADAPTER_CONFIG_FILE
    if not config.is_file():
        return str(path), None, 0
    adapter = json.loads(config.read_text())
    base = read_export_meta(path).get("base_name_or_path") or adapter.get("base_model_name_or_path")
    if not base or (Path(base) / ADAPTER_CONFIG_FILE).is_file():
        raise ValueError(
            f"{source}: engine.backend=vllm serves a model directory or one adapter over a plain model; "
            f"this adapter's base {base!r} is {'missing' if not base else 'itself an adapter'} (export it merged, or use engine.backend=hf)"
        )
    return str(base), str(path), int(adapter.get("r", 16))


def load_inference_model(
    model_cfg, *, checkpoint: str | None, think_tags: bool, accelerator: str = "auto", weights: bool = True
) -> InferenceModel:
    """Load ``checkpoint`` (else ``model.init_from``, else ``model.name_or_path``) for greedy inference.

    Args:
        model_cfg: the ``model`` config section (pixel bounds, dtype, family, tiny-model build).
        checkpoint: an exported model/adapter directory (``eval.checkpoint`` / ``--checkpoint``).
        think_tags: the prompt's ``<think>`` setting when the export does not record one.
        accelerator: ``trainer.accelerator`` (:func:`inference_device`).
        weights: False when a vLLM server generates (``engine.backend=vllm``): only the processor and
            the export's metadata are loaded (``model`` is None), so the server has the GPUs to itself.
    """
    source = checkpoint or model_cfg.init_from or model_cfg.name_or_path
    meta = read_export_meta(source)
    device = inference_device(accelerator)
    if weights:
        model, processor, family = load_vlm(model_cfg, for_training=False, checkpoint=checkpoint)
        model.to(device)
    else:
        model, (processor, family) = None, load_processor(model_cfg, checkpoint=checkpoint)
    return InferenceModel(
        model=model,
        processor=processor,
        family=family,
        space=ModelSpace.of(processor, family),
        classes=trained_classes(meta),
        think_tags=bool(meta.get("think_tags", think_tags)),
        source=str(source),
        device=device,
    )
