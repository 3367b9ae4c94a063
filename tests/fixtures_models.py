"""Session fixtures: tiny Qwen2-VL / Qwen2.5-VL model directories built offline once per test run.

Use them through ``load_vlm``::

    def test_x(tiny_qwen2_vl_dir):
        model, processor, family = load_vlm(tiny_model_cfg(tiny_qwen2_vl_dir), for_training=False)

Treat the directories as read-only (they are shared by every test of the session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tagfer.core.config import LoRAConfig, ModelConfig, TinyModelConfig


def tiny_model_cfg(path: str | Path, tiny_family: str = "qwen2_vl", **overrides) -> ModelConfig:
    """A ``model`` config section for the tiny ``tiny_family`` model at ``path`` (LoRA r=8; ``overrides``
    set ModelConfig fields, e.g. ``finetune="full"``)."""
    cfg = ModelConfig(
        name_or_path=str(path),
        build_tiny=True,
        tiny=TinyModelConfig(family=tiny_family),
        lora=LoRAConfig(r=8, alpha=16, dropout=0.0),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _build(family: str, tmp_path_factory) -> Path:
    from tagfer.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-models") / f"tiny-{family}"
    return build_tiny_model(tiny_model_cfg(out, family), out)


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(tmp_path_factory) -> Path:
    """Directory of a tiny Qwen2-VL (random weights, project tokenizer, real processor)."""
    return _build("qwen2_vl", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_dir(tmp_path_factory) -> Path:
    """Directory of a tiny Qwen2.5-VL."""
    return _build("qwen2_5_vl", tmp_path_factory)
