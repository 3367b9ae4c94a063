"""Pretrain the tiny model's vision tower on AU maps of synthetic faces — its stand-in for a pretrained encoder.

A real Qwen-VL arrives with a vision encoder pretrained on billions of images; TAG freezes it and teaches
the language model to reason over its features. A tiny model built from a config has a *random* vision
tower instead, and a frozen random tower gives the language model nothing it can learn to read in a CPU
budget (measured: a tiny Qwen2-VL trained on labels alone stayed at chance). So :func:`build_tiny_model`
can pretrain the tower once, offline, on a task that is not the expression labels:

* data: ``tiny.vision_pretrain_samples`` synthetic faces drawn from their own seed stream
  (``numpy.random.default_rng([tiny.seed, 7, i])``), half in aligned and half in random pose — disjoint
  from every dataset split (those use split codes 0–2);
* target: for each merged image token (a ``factor × factor`` pixel cell, ``factor = patch × merge``) and
  each AU, the AU's intensity when the AU's region box (:func:`tagfer.core.regions.au_boxes`, region mode)
  covers at least ``MIN_COVER`` of the cell, else 0 — a map of *where which facial action happens*;
* model: the vision tower and its merger (the projector into the language model) plus a linear head
  ``hidden → #AUs`` that is thrown away; loss ``MSE(head(tokens), target)``; AdamW, ``vision_pretrain_steps``
  steps of ``BATCH`` faces.

The expression labels are never used, so the classes are learnt only by SFT/GRPO through the traces.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.regions import au_boxes
from tagfer.core.vocabulary import AU_LIST
from tagfer.data.synthetic_faces import make_face

log = logging.getLogger(__name__)

#: Seed-stream code of the pretraining faces (dataset splits use 0, 1, 2).
PRETRAIN_STREAM = 7
#: Fraction of a token's cell an AU region box must cover for the token to carry that AU.
MIN_COVER = 0.15
BATCH = 32
LEARNING_RATE = 2e-3


@dataclass
class PretrainReport:
    """What pretraining achieved: held-out MSE against predicting all zeros."""

    steps: int
    samples: int
    heldout_mse: float
    zero_mse: float
    seconds: float

    def to_json(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def token_au_targets(landmarks: np.ndarray, au_intensity: dict[str, float], image_size: int, factor: int) -> np.ndarray:
    """``[cells, #AUs]`` target of one face: AU intensity where its region box covers a token cell.

    Cells are the ``factor × factor`` squares of the merged image tokens, in row-major order (the order of
    the vision tower's output for one image).
    """
    grid = image_size // factor
    boxes = au_boxes(landmarks, AU_LIST, (image_size, image_size), box_mode="region")
    target = np.zeros((grid * grid, len(AU_LIST)), np.float32)
    cell_area = float(factor * factor)
    for a, au in enumerate(AU_LIST):
        intensity = au_intensity.get(au, 0.0)
        if intensity <= 0.0 or au not in boxes:
            continue
        x1, y1, x2, y2 = boxes[au]
        for gy in range(grid):
            for gx in range(grid):
                overlap_x = min(x2, (gx + 1) * factor) - max(x1, gx * factor)
                overlap_y = min(y2, (gy + 1) * factor) - max(y1, gy * factor)
                if overlap_x > 0 and overlap_y > 0 and overlap_x * overlap_y >= MIN_COVER * cell_area:
                    target[gy * grid + gx, a] = intensity
    return target


def pretraining_faces(seed: int, count: int, image_size: int) -> list:
    """``count`` synthetic faces (:class:`tagfer.data.synthetic_faces.SyntheticFace`), classes in turn,
    aligned and random pose alternating."""
    faces = []
    for i in range(count):
        pose = "aligned" if i % 2 == 0 else "random"
        rng = np.random.default_rng([seed, PRETRAIN_STREAM, i])
        faces.append(make_face(rng, CLASS_NAMES[i % len(CLASS_NAMES)], image_size, pose))
    return faces


def pretrain_vision(model, processor, *, samples: int, steps: int, seed: int, image_size: int = 112) -> PretrainReport:
    """Pretrain ``model``'s vision tower + merger in place (see the module docstring)."""
    start = time.perf_counter()
    visual = model.model.visual
    image_processor = processor.image_processor
    factor = image_processor.patch_size * image_processor.merge_size
    heldout = max(32, samples // 8)
    faces = pretraining_faces(seed, samples + heldout, image_size)
    targets = torch.tensor(np.stack([token_au_targets(f.landmarks, f.au_intensity, image_size, factor) for f in faces]))
    pixels = image_processor(images=[f.image for f in faces], return_tensors="pt")
    patches_per_image = pixels["pixel_values"].shape[0] // len(faces)
    pixel_values = pixels["pixel_values"].reshape(len(faces), patches_per_image, -1)
    grid_thw = pixels["image_grid_thw"]

    def tokens(index: torch.Tensor) -> torch.Tensor:
        out = visual(pixel_values[index].reshape(-1, pixel_values.shape[-1]), grid_thw=grid_thw[index])
        out = out.pooler_output if hasattr(out, "pooler_output") else out
        return out.reshape(len(index), -1, out.shape[-1])

    generator = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(model.config.text_config.hidden_size, len(AU_LIST))
    optimizer = torch.optim.AdamW([*visual.parameters(), *head.parameters()], lr=LEARNING_RATE)
    was_training = visual.training
    visual.train()
    for _ in tqdm(range(steps), desc="tiny vision pretraining", unit="step", mininterval=2.0):
        index = torch.randint(0, samples, (BATCH,), generator=generator)
        loss = torch.nn.functional.mse_loss(head(tokens(index)), targets[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    visual.train(was_training)
    with torch.no_grad():
        held = torch.arange(samples, samples + heldout)
        mse = torch.nn.functional.mse_loss(head(tokens(held)), targets[held]).item()
    report = PretrainReport(steps, samples, mse, float((targets[held] ** 2).mean()), time.perf_counter() - start)
    log.info(
        "tiny vision tower pretrained on AU maps: %d steps, held-out MSE %.4f (all-zero %.4f), %.0f s",
        steps,
        report.heldout_mse,
        report.zero_mse,
        report.seconds,
    )
    return report
