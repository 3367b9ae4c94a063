"""Kill and resume: ``python src/train.py`` (SFT, GRPO) and ``tagfer au-cache build`` are SIGKILLed at a
random point after their first checkpoint (or shard), started again with the same command, and must end
exactly where an uninterrupted run with the same seed ends: bitwise-equal exported weights, every
TensorBoard scalar at every step equal (wall-clock timings aside), byte-identical AU caches.

The kill point: a step ``k`` drawn from ``[1, steps − 2]``, then a random delay after the checkpoint of
step ``k`` appears — so the kill lands inside a training step, a validation, a checkpoint write or the
export. The draw is seeded by ``TAGFER_KILL_SEED`` (default: a fresh seed, printed on failure), so a
failing point can be replayed. The uninterrupted run and the run to be killed run at the same time (two
cores), then the resumed run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from synthetic_runs import synthetic_run_overrides
from tagfer.core.config import DatasetSpec, load_config
from tagfer.data.readers import read_dataset

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
WALL_CLOCK_TAGS = {"step_time", "generation_time_fraction"}
TIMEOUT = 600


def kill_seed() -> int:
    return int(os.environ.get("TAGFER_KILL_SEED") or random.SystemRandom().randrange(2**31))


# --------------------------------------------------------------------------------------------- runs
def train_command(config: str, overrides: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "src" / "train.py"), "--config", str(REPO / "configs" / config), *overrides]


def start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> None:
    code = process.wait(timeout=TIMEOUT)
    assert code == 0, f"exit code {code}:\n{log.read_text()[-4000:]}"


def newest_step(checkpoints: Path) -> int:
    steps = [int(m.group(1)) for p in checkpoints.glob("step=*.ckpt") if (m := re.fullmatch(r"step=(\d+)\.ckpt", p.name))]
    return max(steps, default=0)


def kill_after(process: subprocess.Popen, reached, delay: float) -> None:
    """SIGKILL ``process`` ``delay`` seconds after ``reached()`` first holds; it must still be running."""
    deadline = time.monotonic() + TIMEOUT
    while not reached():
        assert process.poll() is None, f"the run ended (code {process.returncode}) before the kill point"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.02)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run finished before the kill"


def scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    """``(tag, step) → value`` over every event file of the run (a resumed run appends a new file; the
    reader drops the events a restart rewinds past)."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {(tag, e.step): e.value for tag in events.Tags()["scalars"] if tag not in WALL_CLOCK_TAGS for e in events.Scalars(tag)}


def exported_weights(export: Path) -> dict[str, torch.Tensor]:
    """Every tensor of an export (adapter or full model)."""
    return {name: value for file in sorted(export.glob("*.safetensors")) for name, value in load_file(file).items()}


def trained(weights: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]) -> bool:
    """A full export differs from the initial model somewhere; an adapter has a non-zero LoRA B (zero at init)."""
    common = [name for name in weights if name in initial]
    if common:
        return any(not torch.equal(weights[name], initial[name]) for name in common)
    return any(bool(value.abs().sum() > 0) for name, value in weights.items() if "lora_B" in name)


def assert_same_run(resumed: Path, reference: Path, initial_model: Path, context: str) -> None:
    weights, expected = (exported_weights(run / "export") for run in (resumed, reference))
    assert weights.keys() == expected.keys() and expected, context
    assert trained(expected, exported_weights(initial_model)), f"{context}: nothing was trained, the comparison would be empty"
    differ = [name for name in expected if not torch.equal(weights[name], expected[name])]
    assert not differ, f"{context}: {len(differ)} exported tensors differ, e.g. {differ[:3]}"
    logged, wanted = scalars(resumed), scalars(reference)
    assert logged.keys() == wanted.keys(), f"{context}: logged steps differ: {sorted(logged.keys() ^ wanted.keys())[:6]}"
    changed = {key: (logged[key], wanted[key]) for key in wanted if logged[key] != wanted[key]}
    assert not changed, f"{context}: metrics differ: {dict(list(changed.items())[:6])}"


def kill_and_resume(command_for, workdir: Path, steps: int, initial_model: Path) -> None:
    """Reference and to-be-killed runs side by side, the kill at a random point, then the resumed run."""
    seed = kill_seed()
    rng = random.Random(seed)
    kill_step, delay = rng.randint(1, steps - 2), rng.uniform(0.0, 1.5)
    context = f"TAGFER_KILL_SEED={seed}: killed {delay:.2f} s after the checkpoint of step {kill_step}"
    reference, resumed = workdir / "reference", workdir / "resumed"
    first = start(command_for(reference), workdir / "reference.log")
    victim = start(command_for(resumed), workdir / "killed.log")
    kill_after(victim, lambda: newest_step(resumed / "checkpoints") >= kill_step, delay)
    finish(first, workdir / "reference.log")
    assert (resumed / "checkpoints" / "last.ckpt").is_file(), context
    again = start(command_for(resumed), workdir / "resumed.log")
    finish(again, workdir / "resumed.log")
    assert "Restoring states from the checkpoint" in (workdir / "resumed.log").read_text(), context
    assert not list((resumed / "checkpoints").glob(".*.tmp-*")), "an interrupted checkpoint write was left behind"
    assert_same_run(resumed, reference, initial_model, context)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_qwen2_vl_dir) -> dict:
    """Synthetic faces, their AU cache and template traces, built once (the runs only read them)."""
    from tagfer.pipeline.splits import SplitReader
    from tagfer.reasoning.build import build_traces

    root = tmp_path_factory.mktemp("resume-data")
    paths = {"data": root / "faces", "au": root / "au_cache", "traces": root / "traces.jsonl", "model": tiny_qwen2_vl_dir}
    overrides = data_overrides(paths)
    cfg = load_config(REPO / "configs" / "sft.yaml", overrides)
    for split in ("train", "val", "test"):
        for spec in cfg.data[split]:
            SplitReader(cfg.au, progress=False).au_cache(spec)
    build_traces(cfg, source="template")
    assert read_dataset(DatasetSpec(name="synthetic", root=str(paths["data"]), split="train", num_samples=8)).records
    return paths


def data_overrides(paths: dict) -> list[str]:
    return [*synthetic_run_overrides(paths), "trainer.checkpoint.every_n_train_steps=1"]


# --------------------------------------------------------------------------------------------- tests
def test_sft_killed_at_a_random_point_resumes_to_the_same_weights_and_metrics(shared, tmp_path):
    """2 epochs × 4 batches, augmentation on (flip, affine, colour), validation with generation each epoch."""
    overrides = data_overrides(shared) + [
        "data.batch_size=2",
        "data.eval_batch_size=2",
        "sft.val_generate_samples=2",
        "sft.max_new_tokens=6",
        "sft.log_images=1",
        "trainer.max_epochs=2",
    ]
    kill_and_resume(lambda run: train_command("sft.yaml", [f"run_dir={run}", *overrides]), tmp_path, steps=8, initial_model=shared["model"])


def test_grpo_killed_at_a_random_point_resumes_to_the_same_weights_and_metrics(shared, tmp_path):
    """6 steps over 1.5 epochs of sampled rollouts (G = 2): resuming restores the sampling RNG too."""
    overrides = data_overrides(shared) + [
        f"model.init_from={shared['model']}",
        "data.train=[{name: synthetic, root: %s, split: train, num_samples: 8}]" % shared["data"],
        "rl.batch_size=2",
        "rl.num_generations=2",
        "rl.max_new_tokens=8",
        # completions of a random policy fail format and answer alike; their lengths differ, so these rewards
        # give non-zero advantages and the weights move
        "rl.rewards=[{name: length_penalty, params: {soft_length: 10, max_length: 60}}, {name: format}]",
        "trainer.max_steps=6",
        "trainer.max_epochs=-1",
    ]
    kill_and_resume(lambda run: train_command("rl.yaml", [f"run_dir={run}", *overrides]), tmp_path, steps=6, initial_model=shared["model"])


def test_au_cache_build_killed_at_a_random_point_resumes_to_an_identical_cache(tmp_path):
    pytest.importorskip("dlib")
    seed = kill_seed()
    rng = random.Random(seed)
    root = tmp_path / "faces"
    read_dataset(DatasetSpec(name="synthetic", root=str(root), split="train", num_samples=24))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "tagfer.cli", "au-cache", "build", "--dataset", "synthetic", "--root", str(root),
                "--num-samples", "24", "--split", "train", "--detector", "builtin", "--shard-size", "2", "--no-progress",
                "--out", str(out)]  # fmt: skip

    def shards_done() -> int:
        return len(list((resumed / "train").glob("shard-*.json")))

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    first = start(command(reference), tmp_path / "reference.log")
    victim = start(command(resumed), tmp_path / "killed.log")
    shard, delay = rng.randint(0, 5), rng.uniform(0.0, 0.3)
    kill_after(victim, lambda: (resumed / "train" / f"shard-{shard:05d}.json").exists(), delay)
    finish(first, tmp_path / "reference.log")
    # 12 shards: the kill lands inside the build unless the machine finished the other 6+ shards within the
    # delay; then meta.json (written last, atomically) must describe the complete cache, checked below
    if (resumed / "meta.json").exists():
        assert shards_done() == 12, f"TAGFER_KILL_SEED={seed}: meta.json written before the last shard"
    finish(start(command(resumed), tmp_path / "resumed.log"), tmp_path / "resumed.log")

    def files(directory: Path) -> dict[str, bytes]:
        return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}

    assert files(resumed) == files(reference), f"TAGFER_KILL_SEED={seed}: killed after shard {shard} + {delay:.2f} s"
