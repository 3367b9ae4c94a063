"""Shared fixtures. Tests never touch the network or ../shared; everything is built in tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def configs_dir() -> Path:
    return CONFIGS


from fixtures_models import tiny_qwen2_5_vl_dir, tiny_qwen2_vl_dir  # noqa: E402,F401  (tagfer.models fixtures)
