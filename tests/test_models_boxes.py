"""Box conventions, model-space conversions, the processor's resize and family detection (no model needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import Qwen2VLImageProcessor

from tagfer.models.boxes import (
    box_convention,
    coordinate_extent,
    from_model_space,
    from_model_space_array,
    to_model_space,
    to_model_space_array,
)
from tagfer.models.families import FAMILIES, family_from_model_type, read_model_type, resolve_family
from tagfer.models.resize import ResizeParams, model_input_size, num_image_tokens, resize_params

TINY = ResizeParams(patch_size=14, merge_size=2, min_pixels=56 * 56, max_pixels=112 * 112)


def test_each_family_has_its_convention():
    assert {f: box_convention(f) for f in FAMILIES} == {
        "qwen2_vl": "norm1000",
        "qwen2_5_vl": "pixels",
        "qwen3_vl": "norm1000",
    }
    with pytest.raises(ValueError, match="llava"):
        box_convention("llava")


def test_coordinate_extent():
    assert coordinate_extent("norm1000", (224, 112)) == (1000, 1000)
    assert coordinate_extent("pixels", (224, 112)) == (224, 112)
    with pytest.raises(ValueError, match="percent"):
        coordinate_extent("percent", (224, 112))


def test_to_model_space_by_hand():
    # 200 wide, 100 high original; the model input is 224 x 112.
    box = (50, 25, 100, 75)
    assert to_model_space(box, (200, 100), (224, 112), "norm1000") == (250.0, 250.0, 500.0, 750.0)
    assert to_model_space(box, (200, 100), (224, 112), "pixels") == pytest.approx((56.0, 28.0, 112.0, 84.0))
    assert from_model_space((250, 250, 500, 750), (200, 100), (224, 112), "norm1000") == (50.0, 25.0, 100.0, 75.0)


def test_clipping_to_the_extent():
    box = (-10, -5, 250, 120)  # reaches past a 200 x 100 image
    assert to_model_space(box, (200, 100), (224, 112), "norm1000") == (0.0, 0.0, 1000.0, 1000.0)
    assert to_model_space(box, (200, 100), (224, 112), "pixels", clip=False) == pytest.approx((-11.2, -5.6, 280.0, 134.4))
    assert from_model_space((0, 0, 1200, 1000), (200, 100), (224, 112), "norm1000") == (0.0, 0.0, 200.0, 100.0)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(20, 2000),
    h=st.integers(20, 2000),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    convention=st.sampled_from(["norm1000", "pixels"]),
)
def test_round_trip(w, h, fractions, convention):
    x1, x2 = sorted(fractions[:2])
    y1, y2 = sorted(fractions[2:])
    box = (x1 * w, y1 * h, x2 * w, y2 * h)
    input_size = model_input_size(w, h, TINY)
    there = to_model_space(box, (w, h), input_size, convention)
    extent = coordinate_extent(convention, input_size)
    assert all(0 <= v <= extent[i % 2] + 1e-9 for i, v in enumerate(there))
    assert from_model_space(there, (w, h), input_size, convention) == pytest.approx(box, abs=1e-9)


def test_vectorised_matches_single_boxes_numpy_and_torch():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 150, size=(5, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, 150, size=(5, 2))], axis=1)  # x1, y1, x2, y2
    expected = np.array([to_model_space(b, (300, 300), (308, 308), "pixels") for b in boxes])
    np.testing.assert_allclose(to_model_space_array(boxes, (300, 300), (308, 308), "pixels"), expected)
    tensor = to_model_space_array(torch.tensor(boxes, dtype=torch.float32), (300, 300), (308, 308), "pixels")
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-6)
    back = from_model_space_array(tensor, (300, 300), (308, 308), "pixels")
    np.testing.assert_allclose(back.numpy(), boxes, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\[..., 4\]"):
        to_model_space_array(np.zeros((3, 3)), (300, 300), (308, 308), "pixels")


@pytest.mark.parametrize("size", [(112, 112), (200, 300), (640, 480), (37, 1000), (1000, 37), (56, 56), (20, 20), (3000, 2000)])
@pytest.mark.parametrize("patch_size, max_pixels", [(14, 112 * 112), (14, 448 * 448), (16, 512 * 512)])
def test_resize_equals_what_the_processor_produces(size, patch_size, max_pixels):
    """grid_thw × patch size of the real image processor == model_input_size."""
    w, h = size
    processor = Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": max_pixels}, patch_size=patch_size, merge_size=2)
    grid = processor(images=[Image.new("RGB", (w, h))], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert model_input_size(w, h, processor) == (grid[2] * patch_size, grid[1] * patch_size)
    assert num_image_tokens(model_input_size(w, h, processor), processor) == grid[1] * grid[2] // 4


def test_resize_params_from_processor_and_mapping():
    processor = Qwen2VLImageProcessor(size={"shortest_edge": 3136, "longest_edge": 12544})
    assert resize_params(processor) == TINY
    assert resize_params({"patch_size": 14, "merge_size": 2, "min_pixels": 3136, "max_pixels": 12544}) == TINY
    assert model_input_size(112, 112, TINY) == (112, 112)
    assert model_input_size(200, 300, TINY) == (84, 112)  # 300x200 portrait: 112*84 = 9408 <= 12544
    with pytest.raises(TypeError, match="not a Qwen-VL processor"):
        resize_params(object())
    with pytest.raises(ValueError, match="positive"):
        model_input_size(0, 10, TINY)


def test_family_detection(tmp_path):
    assert family_from_model_type("qwen2_5_vl") == "qwen2_5_vl"
    assert family_from_model_type("qwen3_vl_moe") == "qwen3_vl"
    with pytest.raises(ValueError, match="llava"):
        family_from_model_type("llava")
    assert resolve_family("auto", "qwen2_vl") == "qwen2_vl"
    assert resolve_family("qwen2_5_vl", "qwen2_vl") == "qwen2_5_vl"  # the configuration wins
    with pytest.raises(ValueError, match="model.family"):
        resolve_family("qwen4", "qwen2_vl")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert read_model_type(tmp_path) == "qwen3_vl"
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_model_type(tmp_path / "missing")
