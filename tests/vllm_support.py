"""Shared by the tests of the vLLM engine: where the vLLM environment is, their marks, process-group checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Interpreter of the vLLM environment (scripts/setup_vllm.sh).
VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
#: Marks of a test module that needs a real vLLM server: ``vllm``, skipped without the environment.
VLLM_MARKS = [
    pytest.mark.vllm,
    pytest.mark.skipif(not VLLM_PYTHON.is_file(), reason="no vLLM environment (scripts/setup_vllm.sh)"),
]


def group_alive(pid: int) -> bool:
    """Whether process group ``pid`` still has a member."""
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
