"""Exclusive holds (tagfer.core.run_lock): one live process per run directory, AU cache build and trace file.

The end-to-end test starts the real training command twice on one run directory: the second stops at
once naming the holder; after ``kill -9`` of the first, the same command runs to its export.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagfer.core.run_lock import PathHeldError, hold, is_launch_leader, launch_job, lock_file_for, read_holder
from tagfer.data.trace_file import TraceWriter

REPO = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), **extra}


def test_a_second_hold_of_a_held_directory_fails_naming_the_holder_and_is_free_after_release(tmp_path):
    run_dir = tmp_path / "run"
    with hold(run_dir, "run directory", directory=True, env={}) as me:
        holder = read_holder(run_dir / ".lock")
        assert holder == me and holder.pid == os.getpid() and holder.host == socket.gethostname()
        with pytest.raises(PathHeldError) as caught:
            with hold(run_dir, "run directory", directory=True, env={}):
                pass
        message = str(caught.value)
        assert f"PID {os.getpid()}" in message and socket.gethostname() in message and str(run_dir) in message
        assert holder.since in message and caught.value.holder == me
    assert read_holder(run_dir / ".lock") is None  # released: the file names no holder
    with hold(run_dir, "run directory", directory=True, env={}):  # and can be taken again
        pass


def test_a_trace_file_has_one_writer(tmp_path):
    path = tmp_path / "traces.jsonl"
    with TraceWriter(path):
        assert lock_file_for(path, directory=False) == tmp_path / ".traces.jsonl.lock"
        with pytest.raises(PathHeldError, match="trace file .*traces.jsonl is in use by PID"):
            TraceWriter(path)
    TraceWriter(path).close()


def test_launch_identity_from_the_launcher_variables():
    assert launch_job({}) is None and is_launch_leader({})
    assert launch_job({"MASTER_ADDR": "n1", "MASTER_PORT": "29500", "RANK": "3"}) == "master:n1:29500"
    assert launch_job({"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "MASTER_ADDR": "n1", "MASTER_PORT": "1"}) == "slurm:7.0"
    assert not is_launch_leader({"RANK": "1"}) and is_launch_leader({"RANK": "0", "LOCAL_RANK": "0"})
    assert not is_launch_leader({"SLURM_PROCID": "2"})
    assert not is_launch_leader({"NODE_RANK": "1", "LOCAL_RANK": "0"}) and not is_launch_leader({"LOCAL_RANK": "1"})


_HOLD_BRIEFLY = """
import sys, time
from tagfer.core.run_lock import hold
with hold(sys.argv[1], "AU cache", directory=True):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holding_process(directory: Path, seconds: float, **env) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_BRIEFLY, str(directory), str(seconds)], stdout=subprocess.PIPE, text=True, env=_env(**env)
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_rank_of_the_same_launch_waits_for_the_holder_another_process_does_not(tmp_path):
    launch = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"}
    holder = _holding_process(tmp_path / "cache", 1.5, **launch)
    with pytest.raises(PathHeldError, match=f"PID {holder.pid}"):
        with hold(tmp_path / "cache", "AU cache", directory=True, env={}):
            pass
    start = time.monotonic()
    with hold(tmp_path / "cache", "AU cache", directory=True, env=launch) as me:  # a peer rank: waits, then holds
        assert read_holder(tmp_path / "cache" / ".lock") == me
    assert time.monotonic() - start > 0.2  # it waited for the holder's 1.5 s
    assert holder.wait(timeout=30) == 0


def _train_command(tmp_path: Path, tiny_model: Path) -> list[str]:
    four = "{name: synthetic, root: %s, split: %%s, num_samples: 4, pose: aligned%%s}" % (tmp_path / "data")
    return [
        sys.executable,
        str(REPO / "src" / "train.py"),
        "--config",
        str(REPO / "configs" / "sft.yaml"),
        f"run_dir={tmp_path / 'run'}",
        f"data.train=[{four % ('train', ', traces: ' + str(tmp_path / 'traces.jsonl'))}]",
        f"data.val=[{four % ('val', '')}]",
        f"data.test=[{four % ('test', '')}]",
        f"au.cache_dir={tmp_path / 'au_cache'}",
        f"model.name_or_path={tiny_model}",
        "model.build_tiny=false",
        "traces.top_k=2",
        "data.batch_size=4",
        "data.augment.enabled=false",
        "sft.val_generate_samples=0",
        "sft.max_new_tokens=8",
        "trainer.limit_val_batches=0.0",
        "trainer.max_epochs=-1",
        "trainer.max_steps=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
    ]


def _wait_for_holder(lock_file: Path, pid: int, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = read_holder(lock_file)
        if holder is not None and holder.pid == pid:
            return
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError(f"process {pid} never held {lock_file}")


def test_two_trainings_on_one_run_directory_the_second_stops_naming_the_first_until_it_is_killed(tmp_path, tiny_qwen2_vl_dir):
    command = _train_command(tmp_path, tiny_qwen2_vl_dir)
    first = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_holder(tmp_path / "run" / ".lock", first.pid, first)
        os.kill(first.pid, signal.SIGSTOP)  # the first run holds the directory and stays there
        start = time.monotonic()
        second = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 3, second.stderr[-3000:]
        assert f"run directory {tmp_path / 'run'} is in use by PID {first.pid} on host {socket.gethostname()} since " in second.stderr
        assert "train.py" in second.stderr  # the holder's command
        assert time.monotonic() - start < 120  # at once: no model was loaded, nothing waited
        assert not (tmp_path / "run" / "checkpoints").exists()
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    third = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert (tmp_path / "run" / "export" / "tagfer_export.json").is_file()
    assert read_holder(tmp_path / "run" / ".lock") is None
