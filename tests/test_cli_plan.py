"""The command line: list-entry overrides, the stage plan (RL trains its SFT stage first when the default
export is missing), Lightning's start-up lines printed once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tagfer.cli import main
from tagfer.core.config import ConfigError, load_config
from tagfer.training.stage_plan import needs_sft_first, plan_stages, sft_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("key", ["data.train[0].root", "data.train.0.root"])
def test_one_field_of_one_list_entry_is_overridden(configs_dir, key):
    cfg = load_config(configs_dir / "sft.yaml", ["data=rafdb", f"{key}=/elsewhere/basic", "rl.rewards[2].weight=0.5"])
    assert cfg.data.train[0].root == "/elsewhere/basic" and cfg.data.train[0].name == "rafdb"  # the other fields stay
    assert cfg.data.val[0].root != "/elsewhere/basic"
    assert [r.weight for r in cfg.rl.rewards] == [1.0, 1.0, 0.5]


def test_list_entry_overrides_are_checked_like_any_key(configs_dir):
    with pytest.raises(ConfigError, match=r"data.train has 1 entry, no index '2' \(valid indices: 0..0\)"):
        load_config(configs_dir / "sft.yaml", ["data.train[2].root=/x"])
    with pytest.raises(ConfigError, match=r"unknown key 'data.train\[0\].rooot'; did you mean 'data.train\[0\].root'"):
        load_config(configs_dir / "sft.yaml", ["data.train.0.rooot=/x"])
    with pytest.raises(ConfigError, match=r"key 'data.train\[0\].num_samples' has value 'many', expected int"):
        load_config(configs_dir / "sft.yaml", ["data.train[0].num_samples=many"])
    replaced = load_config(configs_dir / "sft.yaml", ["data.train[0]={name: ferplus, root: /f}"])
    assert replaced.data.train[0].name == "ferplus" and replaced.data.train[0].split == "train"  # schema defaults


def test_sft_overrides_keep_shared_settings_and_drop_the_rl_stage_ones():
    given = [
        "data=rafdb",
        "model.name_or_path=/m",
        "trainer=node8_fsdp",
        "rl.beta=0.0",
        "rl.rewards[0].weight=2",
        "run_dir=outputs/x",
        "trainer.max_steps=5",
        "model.init_from=/e",
        "eval.batch_size=2",
        "seed=3",
    ]
    assert sft_overrides(given) == ["data=rafdb", "model.name_or_path=/m", "trainer=node8_fsdp", "seed=3"]


def test_rl_trains_sft_first_only_for_the_missing_default_export(tmp_path):
    rl = OmegaConf.create({"stage": "rl", "model": {"init_from": str(tmp_path / "sft" / "export")}})
    default = tmp_path / "sft" / "export"
    assert needs_sft_first(rl, default, explicit_init=False)
    assert not needs_sft_first(rl, default, explicit_init=True)  # the user's path: an error if missing
    assert not needs_sft_first(rl, tmp_path / "other" / "export", explicit_init=False)  # not this family's SFT
    assert not needs_sft_first(rl, None, explicit_init=False)
    assert not needs_sft_first(rl, default, explicit_init=False, exists=lambda path: True)  # reused next time
    assert not needs_sft_first(OmegaConf.merge(rl, {"stage": "sft"}), default, explicit_init=False)


def test_the_plan_of_configs_rl_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh clone: no outputs/
    config = str(REPO / "configs" / "rl.yaml")
    sft, rl = plan_stages(config, ["data.batch_size=4", "rl.beta=0.0", "run_dir=outputs/my-rl"])
    assert (sft.stage, sft.cfg.run_dir, rl.stage, rl.cfg.run_dir) == ("sft", "outputs/runs/sft", "rl", "outputs/my-rl")
    assert sft.cfg.data.batch_size == 4 and "runs first" in sft.reason and sft.cfg.trainer.max_epochs == 3
    assert [p.stage for p in plan_stages(config, ["model.init_from=outputs/runs/sft/export"])] == ["rl"]
    (tmp_path / "outputs" / "runs" / "sft" / "export").mkdir(parents=True)  # the second run reuses the export
    assert [p.stage for p in plan_stages(config, [])] == ["rl"]


def test_dry_run_prints_the_plan_and_reports_missing_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "rl.yaml")
    assert main(["train", "--config", config, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1. stage sft → outputs/runs/sft" in out and "2. stage rl → outputs/runs/rl" in out and "inputs: all present" in out
    assert main(["train", "--config", config, "model.init_from=/nowhere/export", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "stage sft" not in out and "rl: model.init_from='/nowhere/export' does not exist" in out
    assert not (tmp_path / "outputs").exists()  # a dry run writes nothing


def test_lightning_start_up_lines_print_once():
    script = (
        "from tagfer.core.logs import configure_logging, route_lightning_to_root\n"
        "configure_logging()\n"
        "route_lightning_to_root()\n"
        "import lightning as L\n"
        "L.Trainer(accelerator='cpu', logger=False, enable_checkpointing=False, enable_progress_bar=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "GPU available" in line]
    assert len(lines) == 1 and " INFO lightning.pytorch" in lines[0], lines


def test_rl_from_a_fresh_clone_trains_sft_first_then_reuses_its_export(tmp_path, monkeypatch, tiny_qwen2_vl_dir, capsys):
    monkeypatch.chdir(tmp_path)
    four = "{name: synthetic, root: %s, split: %%s, num_samples: 4, pose: aligned%%s}" % (tmp_path / "data")
    argv = [
        "train",
        "--config",
        str(REPO / "configs" / "rl.yaml"),
        f"data.train=[{four % ('train', ', traces: ' + str(tmp_path / 'traces.jsonl'))}]",
        f"data.val=[{four % ('val', '')}]",
        f"data.test=[{four % ('test', '')}]",
        f"au.cache_dir={tmp_path / 'au_cache'}",
        f"model.name_or_path={tiny_qwen2_vl_dir}",
        "model.build_tiny=false",
        "traces.top_k=2",
        "data.batch_size=4",
        "data.augment.enabled=false",
        "sft.val_generate_samples=0",
        "trainer.limit_val_batches=0.0",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "trainer.num_threads=null",  # keep this test process's torch threads
        "rl.num_generations=2",
        "rl.max_new_tokens=16",
        "trainer.max_steps=1",  # GRPO's length; the SFT stage keeps sft.yaml's 3 epochs
    ]
    assert main(argv) == 0
    assert "sft first: model.init_from=outputs/runs/sft/export does not exist yet" in capsys.readouterr().out
    sft, rl = tmp_path / "outputs" / "runs" / "sft", tmp_path / "outputs" / "runs" / "rl"
    for run in (sft, rl):
        assert (run / "export" / "tagfer_export.json").is_file() and list((run / "tb").rglob("events.out.tfevents.*"))
    assert OmegaConf.load(sft / "config.yaml").trainer.max_epochs == 3
    sft_export_time = (sft / "export" / "tagfer_export.json").stat().st_mtime_ns
    assert main(argv) == 0  # the second run: GRPO alone, resumed from its last checkpoint
    assert "sft first" not in capsys.readouterr().out
    assert (sft / "export" / "tagfer_export.json").stat().st_mtime_ns == sft_export_time
