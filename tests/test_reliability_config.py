"""Bad configuration fails before any training starts, naming the key at fault and the fix.

Unknown keys, wrong types and unknown options are refused by ``load_config`` (``tests/test_config.py``);
here: paths that do not exist, an AU cache built by another detector (both in the stages' preflight, before
the model loads), and a checkpoint that does not match the model configuration or the stage (refused by
``check_resume`` before ``Trainer.fit`` reads it). The CLI turns each into ``tagfer: configuration error``
and exit code 2.
"""

from __future__ import annotations

import pytest
import torch

from fixtures_models import tiny_model_cfg
from tagfer.cli import main
from tagfer.core.config import ConfigError, SFTConfig, load_config
from tagfer.models.loader import load_vlm
from tagfer.models.policy import prepare_policy
from tagfer.pipeline.splits import SplitReader
from tagfer.training.preflight import preflight
from tagfer.training.resume import ResumeMismatchError, RunState, check_resume, run_signature
from tagfer.training.sft_module import SFTModule


def config(configs_dir, tmp_path, name="sft.yaml", *overrides):
    face = "{name: synthetic, root: %s, split: %s, num_samples: 4}" % (tmp_path / "faces", "%s")
    return load_config(
        configs_dir / name,
        [
            f"run_dir={tmp_path / 'run'}",
            f"data.train=[{face % 'train'}]",
            f"data.val=[{face % 'val'}]",
            f"data.test=[{face % 'test'}]",
            f"au.cache_dir={tmp_path / 'au'}",
            f"model.name_or_path={tmp_path / 'model'}",
            *overrides,
        ],
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["data.val=[{name: rafdb, root: /nonexistent/basic, split: test}]"],
            r"data\.val\[0\]\.root='/nonexistent/basic' does not exist; expected <root>/EmoLabel",
        ),
        (["model.build_tiny=false"], r"model\.name_or_path=.*does not exist; copy the checkpoint there, or set model\.build_tiny=true"),
        (["model.init_from=/nonexistent/export"], r"model\.init_from='/nonexistent/export' does not exist"),
        (["trainer.resume=/nonexistent/last.ckpt"], r"trainer\.resume='/nonexistent/last\.ckpt': no such checkpoint; use 'auto'"),
        (["au.detector=openface", "au.external_dir=/nonexistent/openface"], r"au\.external_dir='/nonexistent/openface' does not exist"),
    ],
    ids=["dataset-root", "model", "init-from", "resume", "external-detector"],
)
def test_missing_paths_are_named_before_anything_loads(configs_dir, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        preflight(config(configs_dir, tmp_path, "sft.yaml", *overrides))
    assert not (tmp_path / "model").exists()  # the tiny model was not built: nothing heavy ran


def test_rl_without_init_from_and_every_problem_at_once(configs_dir, tmp_path):
    cfg = config(configs_dir, tmp_path, "rl.yaml", "model.init_from=null", "data.test=[{name: ferplus, root: /nowhere, split: test}]")
    with pytest.raises(ConfigError, match=r"2 problem\(s\)[\s\S]*data\.test\[0\]\.root='/nowhere'[\s\S]*model\.init_from is not set"):
        preflight(cfg)


def test_au_cache_of_another_detector_is_refused_with_the_rebuild_command(configs_dir, tmp_path):
    """The default cache directory is per detector; a spec's explicit ``au_cache`` can point at another's."""
    shared = "data.train=[{name: synthetic, root: %s, split: train, num_samples: 4, au_cache: %s}]" % (
        tmp_path / "faces",
        tmp_path / "cache",
    )
    cfg = config(configs_dir, tmp_path, "sft.yaml", shared)
    SplitReader(cfg.au, progress=False).au_cache(cfg.data.train[0])  # built by the synthetic ground-truth detector
    other = config(configs_dir, tmp_path, "sft.yaml", shared, "au.detector=dataset_landmarks")
    with pytest.raises(
        ConfigError,
        match=r"built by detector 'synthetic'.*asks for 'dataset_landmarks'[\s\S]*tagfer au-cache build .*--detector dataset_landmarks",
    ):
        preflight(other)
    boxes = config(configs_dir, tmp_path, "sft.yaml", shared, "au.box_mode=au")
    with pytest.raises(ConfigError, match=r"box_mode 'region' but the configuration asks for 'au'"):
        preflight(boxes)
    preflight(cfg)  # the matching configuration passes


def test_the_cli_reports_a_preflight_problem_as_a_configuration_error(configs_dir, tmp_path, capsys):
    overrides = [f"run_dir={tmp_path / 'run'}", f"model.init_from={tmp_path / 'no-sft-export'}"]
    assert main(["train", "--config", str(configs_dir / "rl.yaml"), *overrides]) == 2
    assert "configuration error" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- checkpoints
def sft_module(model_dir, r: int) -> SFTModule:
    model_cfg = tiny_model_cfg(model_dir)
    model_cfg.lora.r = r
    model, processor, _ = load_vlm(model_cfg, for_training=True)
    return SFTModule(prepare_policy(model, model_cfg), processor, SFTConfig(), convention="norm1000")


def write_checkpoint(path, module, signature):
    """What a run writes: the trainable tensors and the RunState callback state."""
    state = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
    torch.save({"state_dict": state, "callbacks": {RunState.__qualname__: RunState(signature).state_dict()}}, path)
    return path


def test_a_checkpoint_of_another_model_configuration_or_stage_is_refused(tiny_qwen2_vl_dir, configs_dir, tmp_path):
    cfg = config(configs_dir, tmp_path, "sft.yaml", f"model.name_or_path={tiny_qwen2_vl_dir}", "model.finetune=lora", "model.lora.r=8")
    r8 = sft_module(tiny_qwen2_vl_dir, 8)
    path = write_checkpoint(tmp_path / "last.ckpt", r8, run_signature(cfg))
    check_resume(path, r8, run_signature(cfg))  # the same configuration resumes

    r16_cfg = config(configs_dir, tmp_path, "sft.yaml", f"model.name_or_path={tiny_qwen2_vl_dir}", "model.finetune=lora", "model.lora.r=16")
    with pytest.raises(
        ResumeMismatchError, match=r"model\.lora\.r: checkpoint 8, this config 16[\s\S]*with other shapes[\s\S]*trainer\.resume=null"
    ):
        check_resume(path, sft_module(tiny_qwen2_vl_dir, 16), run_signature(r16_cfg))

    rl_signature = {**run_signature(cfg), "stage": "rl"}
    with pytest.raises(ResumeMismatchError, match=r"stage: checkpoint 'sft', this config 'rl'"):
        check_resume(path, r8, rl_signature)

    full = config(configs_dir, tmp_path, "sft.yaml", f"model.name_or_path={tiny_qwen2_vl_dir}", "model.finetune=full", "model.lora.r=8")
    with pytest.raises(ResumeMismatchError, match=r"model\.finetune: checkpoint 'lora', this config 'full'"):
        check_resume(path, r8, run_signature(full))


def test_a_foreign_or_damaged_checkpoint_is_refused(tiny_qwen2_vl_dir, tmp_path):
    module = sft_module(tiny_qwen2_vl_dir, 8)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"model.other.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(ResumeMismatchError, match=r"no run signature[\s\S]*trainable tensor\(s\) missing[\s\S]*does not train"):
        check_resume(foreign, module, {"stage": "sft"})
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(foreign.read_bytes()[:-40])
    with pytest.raises(ResumeMismatchError, match=r"damaged\.ckpt is not a readable checkpoint"):
        check_resume(damaged, module, {"stage": "sft"})
