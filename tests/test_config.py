"""Config composition (defaults lists, groups), overrides, validation messages, saving."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tagfer.core.config import ConfigError, load_config, save_config

STAGE_FILES = ["sft", "rl", "eval", "demo", "baseline"]


@pytest.mark.parametrize("name", STAGE_FILES)
def test_every_shipped_config_composes(configs_dir, name):
    cfg = load_config(configs_dir / f"{name}.yaml")
    assert cfg.stage == name if name != "eval" else cfg.stage == "eval"
    assert cfg.run_dir  # interpolation resolved
    assert "${" not in cfg.run_dir


def test_defaults_merge_order_and_groups(configs_dir):
    cfg = load_config(configs_dir / "rl.yaml")
    assert cfg.stage == "rl" and cfg.run_dir == "outputs/runs/rl"  # base.yaml interpolation, rl.yaml stage
    assert cfg.data.train[0].name == "synthetic"  # data: synthetic group
    assert cfg.model.build_tiny is True  # model: tiny_qwen2_vl group
    assert cfg.rl.batch_size == 2 and cfg.data.batch_size == 8  # _self_ after the group wins
    assert [r.name for r in cfg.rl.rewards] == ["format", "answer", "au_grounding"]


def test_dotlist_and_group_overrides(configs_dir):
    cfg = load_config(configs_dir / "sft.yaml", ["data=rafdb", "sft.optim.lr=5e-6", "model.lora.r=8"])
    assert cfg.data.train[0].name == "rafdb"
    assert cfg.sft.optim.lr == pytest.approx(5e-6)
    assert cfg.model.lora.r == 8


@pytest.mark.parametrize(
    "override, expected",
    [
        ("rl.betta=0.1", "unknown key 'rl.betta'; did you mean 'rl.beta'?"),
        ("trainer.max_step=3", "did you mean 'trainer.max_steps'?"),
        ("data.train=[{name: rafdb, rooot: /x}]", "unknown key 'data.train[0].rooot'; did you mean 'data.train[0].root'?"),
    ],
)
def test_unknown_key_names_it_and_suggests(configs_dir, override, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.").replace("?", r"\?")):
        load_config(configs_dir / "rl.yaml", [override])


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("rl.beta=abc", "rl.beta", "expected float"),
        ("data.batch_size=x", "data.batch_size", "expected int"),
        ("model.lora.r=3.5", "model.lora.r", "expected int"),
    ],
)
def test_wrong_type_names_key_value_and_type(configs_dir, override, key, expected):
    with pytest.raises(ConfigError) as info:
        load_config(configs_dir / "rl.yaml", [override])
    message = str(info.value)
    assert f"key '{key}'" in message and expected in message and override.split("=")[1] in message


def test_enumerated_options_are_checked(configs_dir):
    with pytest.raises(ConfigError, match="rl.loss_type='ppo' is not one of"):
        load_config(configs_dir / "rl.yaml", ["rl.loss_type=ppo"])
    with pytest.raises(ConfigError, match="did you mean 'rafdb'"):
        load_config(configs_dir / "rl.yaml", ["data.train=[{name: rafbd}]"])
    with pytest.raises(ConfigError, match="trainer.num_threads=0; expected a positive int"):
        load_config(configs_dir / "rl.yaml", ["trainer.num_threads=0"])


def test_num_threads_sets_torch_threads_for_the_run(configs_dir, monkeypatch):
    import torch

    from tagfer.training.commands import run_recipe

    cfg = load_config(configs_dir / "rl.yaml", ["trainer.num_threads=1", "stage=eval"])
    seen = {}
    monkeypatch.setattr("tagfer.evaluation.runner.run_evaluation", lambda cfg: seen.setdefault("threads", torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        run_recipe(cfg)
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": 1}


def test_errors_in_a_file_name_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "run.yaml").write_text("defaults:\n  - data: broken\nstage: sft\n")
    (tmp_path / "data" / "broken.yaml").write_text("batch_sise: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "run.yaml")
    assert "broken.yaml" in str(info.value) and "data.batch_sise" in str(info.value) and "data.batch_size" in str(info.value)


def test_missing_file_and_missing_group_option(tmp_path, configs_dir):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "data").mkdir()
    (tmp_path / "run.yaml").write_text("defaults:\n  - data: nowhere\nstage: sft\n")
    with pytest.raises(ConfigError, match="data: nowhere"):
        load_config(tmp_path / "run.yaml")


def test_resolved_config_is_saved_and_reloads(tmp_path, configs_dir):
    cfg = load_config(configs_dir / "rl.yaml", ["rl.beta=0.0"])
    path = save_config(cfg, tmp_path / "run")
    saved = yaml.safe_load(path.read_text())
    assert saved["rl"]["beta"] == 0.0 and saved["run_dir"] == "outputs/runs/rl"
    again = load_config(path)  # a saved config is itself a valid config
    assert again.rl.beta == 0.0


def test_cli_help_and_unknown_key_exit_code(configs_dir):
    out = subprocess.run([sys.executable, "-m", "tagfer.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "au-cache" in out.stdout and "predict" in out.stdout
    train_help = subprocess.run([sys.executable, str(configs_dir.parent / "src" / "train.py"), "--help"], capture_output=True, text=True)
    assert train_help.returncode == 0 and "--config" in train_help.stdout
    bad = subprocess.run(
        [sys.executable, str(configs_dir.parent / "src" / "train.py"), "--config", str(configs_dir / "rl.yaml"), "rl.bta=1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown key 'rl.bta'" in bad.stderr and "did you mean 'rl.beta'" in bad.stderr


def test_each_list_has_one_source():
    """Detector names, loss types and reward scalings are stated once (in the config schema) and used
    by the code that acts on them; every reader states its own label set."""
    from tagfer.au import detectors
    from tagfer.core import config
    from tagfer.data.readers import READERS
    from tagfer.training import grpo, preflight

    assert config.CHOICES["au.detector"] is config.DETECTOR_NAMES is detectors.DETECTOR_NAMES
    assert detectors.EXTERNAL_DETECTORS is preflight.EXTERNAL_DETECTORS is config.EXTERNAL_DETECTORS
    assert set(config.EXTERNAL_DETECTORS) <= set(config.DETECTOR_NAMES)
    assert config.CHOICES["rl.loss_type"] is grpo.LOSS_TYPES and config.CHOICES["rl.scale_rewards"] is grpo.REWARD_SCALES
    assert sorted(READERS) == sorted(config.DATASET_NAMES)
    for module in READERS.values():
        assert callable(module.label_set) and isinstance(module.LABEL_SET_FROM_RECORDS, bool), module.NAME
