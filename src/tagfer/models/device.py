"""The torch device an inference run (evaluation, the baseline's test pass) uses."""

from __future__ import annotations

import torch


def inference_device(accelerator: str) -> torch.device:
    """``trainer.accelerator`` → a device: ``cpu`` → CPU; ``gpu``/``cuda`` → CUDA (an error without
    one); anything else (``auto``) → CUDA when available, else CPU."""
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"trainer.accelerator={accelerator!r} but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
