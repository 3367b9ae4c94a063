"""Multi-GPU / multi-node configs compose into the right strategy, and torchrun launches ``src/train.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

from tagfer.core.config import TrainerConfig, load_config
from tagfer.training.trainer import build_strategy, processes_per_node, resume_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", ["sft.yaml", "rl.yaml"])
@pytest.mark.parametrize(
    ("group", "overrides", "kind", "world"),
    [
        ("single", [], str, 1),
        ("node8_ddp", [], DDPStrategy, 8),
        ("node8_fsdp", [], ModelParallelStrategy, 8),
        ("multinode_fsdp", ["trainer.num_nodes=4"], ModelParallelStrategy, 32),
        ("multinode_ddp", ["trainer.num_nodes=3"], DDPStrategy, 24),
        ("cpu2_fsdp", [], ModelParallelStrategy, 2),
    ],
)
def test_trainer_group_composes_into_the_strategy(configs_dir, stage, group, overrides, kind, world):
    cfg = load_config(configs_dir / stage, [f"trainer={group}", *overrides])
    tcfg = cfg.trainer
    assert processes_per_node(tcfg) * tcfg.num_nodes == world
    strategy = build_strategy(tcfg)
    assert isinstance(strategy, kind)
    if kind is ModelParallelStrategy:
        assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == (world, 1)
    if group != "single" and group != "cpu2_fsdp":
        assert tcfg.accelerator == "gpu" and tcfg.precision == "bf16-mixed"
    # the stage's own trainer keys survive the group (sft: max_epochs, rl: max_steps)
    base = load_config(configs_dir / stage)
    assert (tcfg.max_epochs, tcfg.max_steps, tcfg.log_every_n_steps) == (
        base.trainer.max_epochs,
        base.trainer.max_steps,
        base.trainer.log_every_n_steps,
    )


def test_fsdp_needs_an_explicit_device_count():
    with pytest.raises(ValueError, match="trainer.devices"):
        build_strategy(TrainerConfig(strategy="fsdp", devices="auto"))
    assert processes_per_node(TrainerConfig(devices=[0, 2, 3])) == 3


def test_resume_finds_a_sharded_checkpoint_directory(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_checkpoint(TrainerConfig(resume="auto"), tmp_path) is None
    last.mkdir(parents=True)
    (last / "meta.pt").write_bytes(b"")
    assert resume_checkpoint(TrainerConfig(resume="auto"), tmp_path) == str(last)
    assert resume_checkpoint(TrainerConfig(resume=str(last)), tmp_path) == str(last)


def torchrun(config: str, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(REPO / "src" / "train.py"),
        "--config",
        str(REPO / "configs" / config),
        "trainer=cpu2_fsdp",
        f"run_dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    return subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_trains_sft_then_grpo_with_fsdp2_on_two_cpu_processes(tiny_qwen2_vl_dir, tmp_path):
    """``torchrun --nproc-per-node 2 src/train.py ... trainer=cpu2_fsdp``: 2 SFT steps, then 1 GRPO step
    from the SFT export; sharded checkpoints and consolidated adapters on rank 0."""
    data = "{name: synthetic, root: " + str(tmp_path / "data")
    shared = [
        f"data.val=[{data}, split: val, num_samples: 4}}]",
        f"data.test=[{data}, split: test, num_samples: 4}}]",
        "data.batch_size=2",
        "trainer.limit_val_batches=0",
        f"model.name_or_path={tiny_qwen2_vl_dir}",
        "model.build_tiny=false",  # the tests' tiny model, not the one the configs would build
        "model.finetune=lora",
        f"au.cache_dir={tmp_path / 'au'}",
    ]
    train = f"data.train=[{data}, split: train, num_samples: 8, traces: {tmp_path / 'traces.jsonl'}}}]"
    sft = torchrun("sft.yaml", tmp_path / "sft", train, "trainer.max_steps=2", "trainer.max_epochs=1", *shared)
    assert sft.returncode == 0, sft.stderr[-4000:]
    assert (tmp_path / "sft" / "checkpoints" / "last.ckpt" / "meta.pt").is_file()  # sharded: a directory
    assert (tmp_path / "sft" / "export" / "adapter_model.safetensors").is_file()
    rl_train = f"data.train=[{data}, split: train, num_samples: 8}}]"
    rl = torchrun(
        "rl.yaml",
        tmp_path / "rl",
        rl_train,
        f"model.init_from={tmp_path / 'sft' / 'export'}",
        "trainer.max_steps=1",
        "rl.num_generations=2",
        "rl.max_new_tokens=8",
        *shared,
    )
    assert rl.returncode == 0, rl.stderr[-4000:]
    assert (tmp_path / "rl" / "export" / "adapter_model.safetensors").is_file()
