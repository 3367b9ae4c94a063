"""A cache build killed midway (SIGKILL) resumes from its finished shards and ends identical to an
uninterrupted build; worker processes give the same cache as an in-process build."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tagfer.au.cache import AUCache
from tagfer.core.config import DatasetSpec
from tagfer.data.readers import read_dataset

N, SHARD = 16, 3

BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from tagfer.au.build import build_split, dataset_source
    from tagfer.au.detectors import DetectorSpec
    from tagfer.core.config import DatasetSpec
    from tagfer.data.readers import read_dataset

    root, out, kill_after, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = DatasetSpec(name="synthetic", root=root, split="train", num_samples={n})
    detector = DetectorSpec("builtin", box_mode="region")

    def on_shard(index, count):
        if index == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    build_split(read_dataset(spec).records, detector, out, split="train", source=dataset_source(spec, detector),
                shard_size={shard}, workers=workers, progress=False, on_shard=on_shard)
    """
).format(n=N, shard=SHARD)


def run_build(root: Path, out: Path, kill_after: int = -1, workers: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BUILD, str(root), str(out), str(kill_after), str(workers)], capture_output=True, text=True, timeout=300
    )


def cache_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    pytest.importorskip("dlib")
    root = tmp_path_factory.mktemp("synthetic")
    read_dataset(DatasetSpec(name="synthetic", root=str(root), split="train", num_samples=N))
    return root


def test_killed_build_resumes_to_an_identical_cache(root, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert run_build(root, reference).returncode == 0

    killed = run_build(root, resumed, kill_after=2)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after shard 2 was written
    assert not (resumed / "meta.json").exists()  # an unfinished build is invisible
    with pytest.raises(FileNotFoundError):
        AUCache.open(resumed)
    finished = sorted(p.name for p in (resumed / "train").glob("shard-*.json"))
    assert finished == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    # a torn write on top: shard 1's array damaged, a half-written temporary file left behind
    npy = resumed / "train" / "shard-00001.npy"
    npy.write_bytes(npy.read_bytes()[:-7])
    (resumed / "train" / "shard-00003.npy.tmp").write_bytes(b"partial")
    kept = (resumed / "train" / "shard-00000.npy").stat().st_mtime_ns

    done = run_build(root, resumed)
    assert done.returncode == 0, done.stderr
    assert (resumed / "train" / "shard-00000.npy").stat().st_mtime_ns == kept  # finished shards are kept
    assert cache_files(resumed) == cache_files(reference)
    cache = AUCache.open(resumed)
    cache.verify()
    assert len(cache) == N


def test_worker_processes_build_the_same_cache(root, tmp_path):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    assert run_build(root, single).returncode == 0
    result = run_build(root, parallel, workers=2)
    assert result.returncode == 0, result.stderr
    assert cache_files(parallel) == cache_files(single)
