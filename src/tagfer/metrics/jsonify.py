"""Metric results → JSON-ready Python values (the report writer's last step)."""

from __future__ import annotations

import math

from torch import Tensor


def to_json_ready(value: object) -> object:
    """Tensors become numbers or nested lists, NaN/inf become None (JSON has no NaN); dicts, lists
    and tuples are converted recursively; other values are returned as they are."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {key: to_json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
