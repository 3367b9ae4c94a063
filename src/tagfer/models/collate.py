"""Collate functions: DataModule samples → model inputs + per-sample metadata, in the DataLoader workers.

A batch is ``{"inputs": BatchFeature, "meta": dict of per-sample lists}``:

* ``inputs``: what the model takes (``input_ids``, ``attention_mask``, ``pixel_values``,
  ``image_grid_thw``, ``mm_token_type_ids``; plus ``labels`` for SFT). Built once here, so the
  LightningModules never call the processor in the training loop.
* ``meta``: ``id``, ``dataset``, ``label_id`` (index into ``CLASS_NAMES``), ``label_name``, ``au_prob``,
  ``au_box`` (detector boxes **in the model's coordinate space**, comparable with predicted boxes),
  ``image_extent`` ((W, H) of that space), ``image`` (HWC uint8, for logging), ``image_size``,
  ``input_size`` (the processor's resize) and ``face_found``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.prompt import task_prompt
from tagfer.models.boxes import coordinate_extent
from tagfer.models.inputs import boxes_to_model_space, build_generation_inputs, build_sft_inputs
from tagfer.models.space import ModelSpace


class PromptCollator:
    """Generation batches (left-padded prompts): validation, GRPO rollouts, evaluation."""

    def __init__(self, processor, space: ModelSpace, *, classes: Sequence[str] = CLASS_NAMES, think_tags: bool = False):
        self.processor = processor
        self.space = space
        self.prompt = task_prompt(classes, space.convention, think_tags=think_tags)

    def meta(self, samples: list[dict]) -> dict[str, list]:
        out: dict[str, list] = {
            key: []
            for key in (
                "id",
                "dataset",
                "label_id",
                "label_name",
                "au_prob",
                "au_box",
                "image_extent",
                "image",
                "image_size",
                "input_size",
                "face_found",
            )
        }
        for sample in samples:
            size = tuple(sample["image_size"])
            input_size = self.space.input_size(size)
            out["id"].append(sample["id"])
            out["dataset"].append(sample["dataset"])
            out["label_id"].append(int(sample["label"]))
            out["label_name"].append(sample["label_name"])
            out["au_prob"].append(dict(sample["au_prob"]))
            out["au_box"].append(boxes_to_model_space(sample["au_box"], size, input_size, self.space.convention))
            out["image_extent"].append(coordinate_extent(self.space.convention, input_size))
            out["image"].append(sample["image"])
            out["image_size"].append(size)
            out["input_size"].append(input_size)
            out["face_found"].append(bool(sample["face_found"]))
        return out

    def __call__(self, samples: list[dict]) -> dict:
        images = [s["image"] for s in samples]
        inputs = build_generation_inputs(self.processor, images, [self.prompt] * len(samples))
        return {"inputs": inputs, "meta": self.meta(samples)}


class SFTCollator(PromptCollator):
    """Teacher-forcing batches: prompt + trace, ``labels`` on the trace tokens only."""

    def __init__(self, processor, space: ModelSpace, *, max_length: int, **kwargs):
        super().__init__(processor, space, **kwargs)
        self.max_length = max_length

    def __call__(self, samples: list[dict]) -> dict:
        missing = [s["id"] for s in samples if not s.get("trace")]
        if missing:
            raise ValueError(f"SFT samples without a trace: {missing[:5]} (build traces: tagfer traces build --config ...)")
        inputs = build_sft_inputs(
            self.processor,
            [s["image"] for s in samples],
            [self.prompt] * len(samples),
            [s["trace"] for s in samples],
            self.max_length,
            sample_ids=[s["id"] for s in samples],
        )
        return {"inputs": inputs, "meta": self.meta(samples)}
