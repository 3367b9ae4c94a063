"""benchmarks/data_pipeline.py: the serving modes serve the same samples, and a tiny run reports every mode."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import linregress
from torch.utils.data import DataLoader, Dataset

from tagfer.au.detectors import DetectorSpec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data_pipeline.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_data_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_modes_serve_the_cached_samples_with_or_without_evidence(bench, tmp_path):
    args = bench.parse_args(["--samples", "8", "--no-augment", "--root", str(tmp_path / "faces")])
    datamodule, _ = bench.build_datamodule(tmp_path / "faces", tmp_path, args)
    cached = datamodule.datasets["train"]
    detected = bench.detect_per_sample(cached, DetectorSpec("synthetic"))
    bare = bench.images_only(cached)
    for index in range(len(cached)):
        reference, fresh, image_only = cached[index], detected[index], bare[index]
        # the cache stores float32: the detector's float64 values agree to float32 precision
        assert fresh["au_prob"] == pytest.approx(reference["au_prob"], abs=1e-6)
        assert set(fresh["au_box"]) == set(reference["au_box"])
        for au, box in reference["au_box"].items():
            assert fresh["au_box"][au] == pytest.approx(box, abs=1e-3)
        np.testing.assert_allclose(fresh["landmarks"], reference["landmarks"], atol=1e-3)
        assert np.array_equal(fresh["image"], reference["image"]) and np.array_equal(image_only["image"], reference["image"])
        assert image_only["label"] == reference["label"]
        assert not image_only["face_found"] and image_only["landmarks"] is None
        assert image_only["au_prob"] == {} and image_only["au_box"] == {}


def test_tiny_run_reports_every_mode_and_worker_count(bench, tmp_path, capsys):
    argv = ["--samples", "12", "--batch-size", "4", "--workers", "0", "2", "--repeats", "1", "--root", str(tmp_path / "faces")]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    rows = {(row["mode"], row["workers"]): row for row in result["results"]}
    modes = ["cache", "images", "detect:builtin", "detect:synthetic", "cache+processor"]
    assert set(rows) == {(mode, workers) for mode in modes for workers in (0, 2)}
    for (_mode, workers), row in rows.items():
        assert row["samples"] == result["samples"] == 12
        assert row["samples_per_s"] > 0 and 0 <= row["batch_ms_p50"] <= row["batch_ms_p90"]
        assert row["cpu_ms_per_sample"] > 0
        reference = rows[("cache", workers)]["samples_per_s"]
        assert row["ratio"] == pytest.approx(row["samples_per_s"] / reference, rel=1e-3, abs=1e-3)  # JSON rounds to 4 decimals
    assert result["machine"]["cores_usable"] >= 1
    assert any(line.startswith("(d) (a) + processor collate") for line in lines)


def test_steady_rate_is_the_least_squares_slope_after_the_first_batch(bench):
    rng = np.random.default_rng(0)
    sizes = [16] * 20 + [5]
    # 100 samples/s with jitter, a slow first batch (start-up) and a second that was ready at once
    waits = [2.0, 0.001] + list(0.16 + rng.normal(0, 0.01, size=18)) + [0.05]
    arrivals, delivered = np.cumsum(waits), np.cumsum(sizes)
    reference = linregress(delivered[1:], arrivals[1:])
    assert bench.steady_rate(waits, sizes) == pytest.approx(1 / reference.slope, rel=1e-9)
    assert bench.steady_rate(waits, sizes) == pytest.approx(100, rel=0.05)
    # two batches: the whole epoch
    assert bench.steady_rate([0.5, 0.5], [10, 10]) == pytest.approx(20)


class _Busy(Dataset):
    """Each item spins 25 ms of CPU time in whichever process serves it."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        end = time.process_time() + 0.025
        while time.process_time() < end:
            pass
        return index


def test_epoch_cpu_time_includes_the_workers(bench):
    timing = bench.time_epoch(DataLoader(_Busy(), batch_size=2, num_workers=2, collate_fn=list))
    assert timing.sizes == [2, 2, 2, 2]
    assert timing.cpu_s >= 8 * 0.025 * 0.9  # the spinning happened in the two workers, not here
