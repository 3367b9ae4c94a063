"""The tiny model's vision pretraining on AU maps (its stand-in for a pretrained encoder)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from fixtures_models import tiny_model_cfg
from tagfer.core.regions import au_boxes
from tagfer.core.vocabulary import AU_LIST
from tagfer.models.tiny import ensure_tiny_model
from tagfer.models.tiny_vision import MIN_COVER, pretrain_vision, pretraining_faces, token_au_targets


def test_token_targets_mark_exactly_the_cells_an_active_au_region_covers():
    (face,) = pretraining_faces(seed=0, count=1, image_size=112)
    intensity = {au: 0.0 for au in AU_LIST} | {"AU12": 0.8}
    target = token_au_targets(face.landmarks, intensity, 112, factor=28)
    assert target.shape == (16, len(AU_LIST))
    column = target[:, AU_LIST.index("AU12")]
    x1, y1, x2, y2 = au_boxes(face.landmarks, ["AU12"], (112, 112))["AU12"]
    for cell in range(16):
        gx, gy = cell % 4, cell // 4
        overlap = max(0.0, min(x2, 28 * (gx + 1)) - max(x1, 28 * gx)) * max(0.0, min(y2, 28 * (gy + 1)) - max(y1, 28 * gy))
        assert column[cell] == (0.8 if overlap >= MIN_COVER * 28 * 28 else 0.0)
    assert column.max() == np.float32(0.8) and np.delete(target, AU_LIST.index("AU12"), axis=1).sum() == 0.0


def test_pretraining_uses_its_own_faces_and_lowers_the_heldout_error(tiny_qwen2_vl_dir):
    faces = pretraining_faces(seed=0, count=4, image_size=112)
    assert [f.pose["angle"] for f in faces] != [f.pose["angle"] for f in pretraining_faces(seed=1, count=4, image_size=112)]
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl_dir)
    processor = AutoProcessor.from_pretrained(tiny_qwen2_vl_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = pretrain_vision(model, processor, samples=64, steps=40, seed=0)
    assert report.heldout_mse < report.zero_mse
    changed = {n for n, p in model.named_parameters() if not (p == before[n]).all()}
    assert changed and all(n.startswith("model.visual.") for n in changed)  # the language model is untouched


def test_an_existing_tiny_model_built_with_other_settings_is_an_error(tiny_qwen2_vl_dir, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_qwen2_vl_dir, copy)
    assert ensure_tiny_model(tiny_model_cfg(copy)) == copy  # same settings: reused
    other = tiny_model_cfg(copy)
    other.tiny.hidden_size = 96
    with pytest.raises(ValueError, match="hidden_size: built 64, asked 96"):
        ensure_tiny_model(other)
