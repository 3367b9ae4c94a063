"""tagfer.demo: the shared stages alone (what benchmarks/demo_seeds.py prepares once for all seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic_runs import synthetic_run_overrides
from tagfer.core.config import load_config
from tagfer.demo import run_demo

REPO = Path(__file__).resolve().parents[1]


def demo_config(tmp_path: Path, model_dir: Path, stages: str):
    paths = {"data": tmp_path / "faces", "au": tmp_path / "au_cache", "traces": tmp_path / "traces.jsonl", "model": model_dir}
    overrides = [f"run_dir={tmp_path / 'demo'}", *synthetic_run_overrides(paths, train=6), f"demo.stages={stages}"]
    return load_config(REPO / "configs" / "demo.yaml", overrides)


def test_shared_stages_alone_build_the_inputs_and_return_no_report(tmp_path, tiny_qwen2_vl_dir, capsys):
    cfg = demo_config(tmp_path, tiny_qwen2_vl_dir, "[data,au_cache,traces]")
    assert run_demo(cfg) is None
    lines = (tmp_path / "traces.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["id"] for line in lines)
    caches = list((tmp_path / "au_cache").iterdir())
    assert len(caches) == 1 and sorted(json.loads((caches[0] / "meta.json").read_text())["splits"]) == ["test", "train", "val"]
    out = capsys.readouterr().out
    assert "report:" not in out and "exports:" not in out  # nothing was trained
    # a second run reuses all three (no rebuild, same trace file)
    before = (tmp_path / "traces.jsonl").read_bytes()
    assert run_demo(cfg) is None
    assert (tmp_path / "traces.jsonl").read_bytes() == before


def test_eval_without_any_export_is_an_error(tmp_path, tiny_qwen2_vl_dir):
    cfg = demo_config(tmp_path, tiny_qwen2_vl_dir, "[eval]")
    with pytest.raises(RuntimeError, match="found no export to evaluate"):
        run_demo(cfg)
