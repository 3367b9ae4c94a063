"""benchmarks/learning.py --quick: every stage of the study runs and the table has a row per variant."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


@pytest.mark.slow
def test_quick_study_prints_a_row_per_variant(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0].lstrip("| ") for row in table[1:]] == [
        "SFT only",
        "SFT + GRPO (format + answer)",
        "SFT + GRPO (format + answer + AU grounding) = TAG",
        "vision-only baseline (timm)",
    ]
    for row in table[1:]:
        accuracy = float(row.split(" | ")[1].split()[0])
        assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "grpo_tag" / "export" / "tagfer_export.json").is_file()
