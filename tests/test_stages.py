"""SFT and GRPO stages end to end on the tiny offline Qwen2-VL and synthetic faces.

* SFT overfits a small batch: the loss falls and greedy generation on those images parses at 100 %.
* GRPO starts from that SFT export, runs a few steps and logs every TRL-named scalar to TensorBoard;
  its export loads back as a chain (base → SFT adapter merged → RL adapter).
"""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tagfer.core.config import load_config
from tagfer.models.loader import load_vlm
from tagfer.reasoning.build import build_traces
from tagfer.training.grpo_stage import run_grpo
from tagfer.training.sft_stage import run_sft

GRPO_SCALARS = [
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "rewards/format/mean",
    "rewards/format/std",
    "rewards/answer/mean",
    "rewards/au_grounding/mean",
    "kl",
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "clip_ratio/region_mean",
    "completions/mean_length",
    "completions/min_length",
    "completions/max_length",
    "completions/clipped_ratio",
    "num_tokens",
    "step_time",
    "generation_time_fraction",
    "loss",
]


def scalars(run_dir) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("stages")


def stage_config(configs_dir, workdir, name, *overrides):
    data = workdir / "data"
    four = "{name: synthetic, root: %s, split: train, num_samples: 4, pose: aligned%s}"
    return load_config(
        configs_dir / f"{name}.yaml",
        [
            f"run_dir={workdir / name}",
            f"data.train=[{four % (data, ', traces: ' + str(workdir / 'traces.jsonl'))}]",
            f"data.val=[{four % (data, '')}]",  # validate on the training images: overfitting is the point
            f"data.test=[{four % (data, '')}]",
            f"au.cache_dir={workdir / 'au_cache'}",
            f"model.name_or_path={workdir / 'tiny'}",
            "model.tiny.vision_pretrain_steps=0",  # overfitting 4 images needs no pretrained tower
            "model.finetune=full",
            "model.freeze_vision=false",
            "data.augment.enabled=false",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def sft_export(configs_dir, workdir):
    cfg = stage_config(
        configs_dir,
        workdir,
        "sft",
        "data.batch_size=4",
        "traces.top_k=2",
        "sft.optim.lr=3e-3",
        "sft.optim.warmup_ratio=0.0",
        "sft.optim.scheduler=constant",
        "sft.val_generate_samples=4",
        "sft.max_new_tokens=200",
        "trainer.max_epochs=-1",
        "trainer.max_steps=160",
        "trainer.check_val_every_n_epoch=160",
        "trainer.checkpoint.every_n_train_steps=80",
    )
    return run_sft(cfg, build_traces=build_traces)


@pytest.mark.slow
def test_sft_loss_falls_and_a_small_batch_is_overfitted_to_full_parse_rate(sft_export, workdir):
    logged = scalars(workdir / "sft")
    loss = logged["train/loss"]
    assert loss[-1] < 0.2 * loss[0]
    assert logged["val/parse_rate"][-1] == 1.0
    assert logged["train/token_accuracy"][-1] > 0.9
    assert (workdir / "sft" / "checkpoints" / "last.ckpt").is_file()
    assert (sft_export / "tagfer_export.json").is_file()


@pytest.mark.slow
def test_grpo_from_the_sft_export_logs_every_scalar_and_exports_a_loadable_chain(sft_export, configs_dir, workdir):
    cfg = stage_config(
        configs_dir,
        workdir,
        "rl",
        f"model.init_from={sft_export}",
        "model.finetune=lora",
        "model.freeze_vision=true",
        "rl.batch_size=2",
        "rl.num_generations=4",
        "rl.max_new_tokens=200",
        "rl.beta=0.04",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
    )
    export = run_grpo(cfg)
    logged = scalars(workdir / "rl")
    missing = [tag for tag in GRPO_SCALARS if tag not in logged]
    assert not missing, f"TensorBoard lacks {missing}"
    assert len(logged["reward"]) == 2 and logged["rewards/format/mean"][0] > 0.5  # the SFT policy writes valid traces
    model, _, family = load_vlm(cfg.model, for_training=False, checkpoint=export)
    assert family == "qwen2_vl" and type(model).__name__.startswith("Peft")
