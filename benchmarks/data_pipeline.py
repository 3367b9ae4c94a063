"""DataModule throughput: images + AU maps from the cache, against images alone and the AU detector per sample.

    python benchmarks/data_pipeline.py [--samples 256] [--batch-size 16] [--workers 0 2] [--repeats 3]
        [--detectors builtin synthetic] [--processor tiny|none|MODEL_DIR] [--no-augment] [--root DIR]

On synthetic faces (generated into a temporary folder unless ``--root`` names one), in one process tree,
it times one training epoch of ``FERDataModule.train_dataloader()`` for each serving mode and worker count:

* ``cache``             (a) images + AU maps joined from the memory-mapped AU cache (the real path);
* ``images``            (b) the same loader with no AU evidence (nothing to join or augment but the image);
* ``detect:<name>``     (c) images + the AU detector run on every sample (``builtin``: dlib + landmark
                        geometry; ``synthetic``: the generator's ground truth, the cheapest detector);
* ``cache+processor``   (d) (a) with the GRPO/evaluation collate (:class:`PromptCollator`): the processor
                        resizes, patches and tokenises in the workers — what a training step waits for.

Every mode goes through the same ``FERDataModule.train_dataloader()`` (shuffle, seeding, workers, default
augmentation); only the dataset (and, for (d), the collate function) is swapped. The AU cache is built
once before timing (its build time is printed). Per epoch it records how long the consumer waits for each
batch: samples/s is the steady-state rate (:func:`steady_rate`, a line fitted to the arrival times of the
batches after the first; the first batch also pays worker start-up and lazy model loading, shown
separately), latency is the median and 90th percentile wait per batch after the first. Of ``--repeats``
epochs, run in rounds over all configurations so that a change of machine load hits them alike, the
fastest is kept. CPU ms/sample is the CPU time of the epoch (this process and its workers, their start-up
included) per sample, the least of the repeats: the work a mode costs, which a busy machine changes far
less than samples/s. The table gives both against (a) at the same worker count; the last line is the
whole result as JSON (with the machine and its load average).

With ``--workers 0`` everything runs in the main process at its torch thread count (``--torch-threads``;
DataLoader workers always use one thread): the processor's many small tensor operations slow down badly
when its threads compete for busy cores, which (d) at 0 workers shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from tagfer.au.cache import default_cache_dir
from tagfer.au.detectors import DetectorSpec
from tagfer.core.config import DatasetSpec, ModelConfig, TagferConfig
from tagfer.core.evidence import AUEvidence
from tagfer.data.images import load_image
from tagfer.data.readers import read_dataset
from tagfer.pipeline.datamodule import FaceItem, FERDataModule, FERDataset

CACHE = "cache"
IMAGES = "images"
PROCESSOR = "cache+processor"
DESCRIPTIONS = {
    CACHE: "(a) images + AU maps from the cache",
    IMAGES: "(b) images alone",
    PROCESSOR: "(d) (a) + processor collate",
}


def describe(mode: str) -> str:
    return DESCRIPTIONS.get(mode) or f"(c) images + {mode.split(':', 1)[1]} detector per sample"


# ---------------------------------------------------------------------------------- serving modes
def images_only(dataset: FERDataset) -> FERDataset:
    """``dataset`` with its AU evidence removed: samples carry the image and label, no landmarks, probabilities
    or boxes (``face_found`` False), with the same augmentation."""
    items = [replace(item, evidence=AUEvidence(face_found=False)) for item in dataset.items]
    return FERDataset(items, augment=dataset.augment, trace_mapper=dataset.trace_mapper, crop=dataset.crop)


class DetectedItems(Sequence):
    """``items`` whose AU evidence a detector computes on every access instead of the cache. The image is
    decoded once: the detector sees it and the returned item carries it as ``record.pixels``, which
    FERDataset then assembles and augments. Each process creates its own detector on first use."""

    def __init__(self, items: list[FaceItem], detector: DetectorSpec):
        self.items = items
        self.detector_spec = detector
        self._detector = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_detector": None}  # dlib models do not pickle; workers load their own

    def __getitem__(self, index: int) -> FaceItem:
        if self._detector is None:
            self._detector = self.detector_spec.create()
        item = self.items[index]
        image = load_image(item.record)
        evidence = self._detector.detect(image, item.record)
        return replace(item, record=replace(item.record, pixels=image), evidence=evidence)


def detect_per_sample(dataset: FERDataset, detector: DetectorSpec) -> FERDataset:
    """``dataset`` with the AU evidence of every sample detected when it is served (the same FERDataset
    sample assembly and augmentation as the cached path)."""
    return FERDataset(DetectedItems(dataset.items, detector), augment=dataset.augment, trace_mapper=dataset.trace_mapper, crop=dataset.crop)


# ---------------------------------------------------------------------------------- timing
def steady_rate(waits: list[float], sizes: list[int]) -> float:
    """Samples/s once the loader runs: ``1 / s`` for the least-squares line ``t_i = a + s * c_i`` through the
    batches after the first, where ``t_i`` is when batch ``i`` arrived (the cumulative sum of ``waits``) and
    ``c_i`` the samples delivered up to it (cumulative ``sizes``); ``waits`` and ``sizes`` are ``[n]``.

    The first batch pays start-up and is left out. A fitted line, unlike (samples after the first batch) /
    (their total wait), is hardly moved by batches that workers finished while the first one was awaited
    (they arrive at once, then the regular rhythm follows). With fewer than three batches, or a slope that
    is not positive: the whole epoch's samples / its wall time.
    """
    arrivals, delivered = np.cumsum(waits), np.cumsum(sizes)
    if len(waits) >= 3:
        slope = np.polyfit(delivered[1:], arrivals[1:], 1)[0]
        if slope > 0:
            return float(1.0 / slope)
    return float(delivered[-1] / arrivals[-1])


@dataclass
class EpochTiming:
    """One epoch as the consumer sees it: the wait (seconds) before each batch and each batch's size; and
    the CPU seconds it cost (this process and its DataLoader workers)."""

    waits: list[float]
    sizes: list[int]
    cpu_s: float

    @property
    def samples(self) -> int:
        return sum(self.sizes)

    @property
    def steady_rate(self) -> float:
        return steady_rate(self.waits, self.sizes)

    @property
    def cpu_ms_per_sample(self) -> float:
        return 1000 * self.cpu_s / self.samples

    def latency_ms(self, q: float) -> float:
        """The ``q`` quantile (0..1) of the wait per batch after the first, in milliseconds."""
        return 1000 * float(np.quantile(self.waits[1:] or self.waits, q))


def batch_size_of(batch) -> int:
    """Samples in a batch: a list of samples (default collate) or a collator's ``{"meta": {"id": [...]}}``."""
    return len(batch["meta"]["id"]) if isinstance(batch, dict) else len(batch)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished (joined) child processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_epoch(loader) -> EpochTiming:
    """Iterate ``loader`` once. Non-persistent workers are joined when the epoch ends, so their CPU time
    (start-up and lazy model loading included) is in ``cpu_s``."""
    waits, sizes = [], []
    cpu_start = cpu_seconds()
    last = time.perf_counter()
    for batch in loader:
        now = time.perf_counter()
        waits.append(now - last)
        sizes.append(batch_size_of(batch))
        last = now
    return EpochTiming(waits, sizes, cpu_seconds() - cpu_start)


@dataclass
class Row:
    mode: str
    workers: int
    samples: int
    samples_per_s: float
    first_batch_s: float
    batch_ms_p50: float
    batch_ms_p90: float
    cpu_ms_per_sample: float
    ratio: float = float("nan")  # samples_per_s / that of (a) at the same worker count
    cpu_ratio: float = float("nan")  # cpu_ms_per_sample / that of (a) at the same worker count


def serve(datamodule: FERDataModule, dataset: Dataset, collate, workers: int):
    """``datamodule.train_dataloader()`` serving ``dataset`` through ``collate`` with ``workers`` workers."""
    datamodule.datasets["train"] = dataset
    datamodule.train_collate = collate
    datamodule.data_cfg.num_workers = workers
    return datamodule.train_dataloader()


def measure(datamodule: FERDataModule, modes: dict[str, tuple[Dataset, object]], workers: list[int], repeats: int) -> list[Row]:
    """Per mode and worker count, the fastest of ``repeats`` epochs and the least CPU per sample of them. The
    rounds interleave every configuration, so a change of machine load during the run hits them all alike."""
    epochs: dict[tuple[str, int], list[EpochTiming]] = {(mode, w): [] for w in workers for mode in modes}
    for _ in range(repeats):
        for (mode, w), timings in epochs.items():
            dataset, collate = modes[mode]
            timings.append(time_epoch(serve(datamodule, dataset, collate, w)))
    rows = []
    for (mode, w), timings in epochs.items():
        best = max(timings, key=lambda t: t.steady_rate)
        cpu = min(t.cpu_ms_per_sample for t in timings)
        rows.append(Row(mode, w, best.samples, best.steady_rate, best.waits[0], best.latency_ms(0.5), best.latency_ms(0.9), cpu))
    return rows


# ---------------------------------------------------------------------------------- setup
def build_datamodule(root: Path, work: Path, args) -> tuple[FERDataModule, float]:
    """The FERDataModule over the synthetic train split (also its val split, untimed) and the seconds of
    its ``prepare_data`` (the AU cache build; the faces are generated before)."""
    cfg = OmegaConf.structured(TagferConfig)
    spec = DatasetSpec(name="synthetic", root=str(root), split="train", num_samples=args.samples, image_size=args.image_size)
    cfg.data.train = cfg.data.val = [spec]
    cfg.data.test = []
    cfg.data.batch_size = args.batch_size
    cfg.data.augment.enabled = not args.no_augment
    cfg.au.detector = args.cache_detector
    cfg.au.cache_dir = str(work / "au_cache")
    read_dataset(spec)  # generates the faces
    datamodule = FERDataModule(cfg.data, cfg.au, seed=0)
    start = time.perf_counter()
    datamodule.prepare_data()
    build_seconds = time.perf_counter() - start
    datamodule.setup("fit")
    print(f"AU cache ({args.cache_detector}) of {args.samples} faces built in {build_seconds:.2f} s: {default_cache_dir(spec, cfg.au)}")
    return datamodule, build_seconds


def prompt_collator(source: str, max_pixels: int):
    """The :class:`PromptCollator` of the tiny offline processor (``"tiny"``) or of a local model directory."""
    from tagfer.models.collate import PromptCollator
    from tagfer.models.loader import set_pixel_bounds
    from tagfer.models.space import ModelSpace

    if source == "tiny":
        from tagfer.models.tiny import tiny_processor
        from tagfer.models.tiny_tokenizer import build_tokenizer

        family = "qwen2_vl"
        processor = tiny_processor(family, build_tokenizer(ModelConfig().tiny.vocab_size), ModelConfig().min_pixels, max_pixels)
    else:
        from transformers import AutoProcessor

        from tagfer.models.families import read_model_type, resolve_family

        family = resolve_family("auto", read_model_type(source))
        processor = AutoProcessor.from_pretrained(source, local_files_only=True)
    set_pixel_bounds(processor, ModelConfig().min_pixels, max_pixels)
    processor.tokenizer.padding_side = "left"
    return PromptCollator(processor, ModelSpace.of(processor, family))


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor())
    return {
        "cpu": model,
        "cores_usable": len(os.sched_getaffinity(0)),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.is_file() else []


# ---------------------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256, help="synthetic training faces (one epoch)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers values")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per measurement; the fastest is kept")
    parser.add_argument("--detectors", nargs="*", default=["builtin", "synthetic"], help="detectors for (c)")
    parser.add_argument("--cache-detector", default="synthetic", help="detector that builds the AU cache of (a)")
    parser.add_argument("--processor", default="tiny", help="(d): tiny (built offline), none (skip (d)) or a local model directory")
    parser.add_argument("--max-pixels", type=int, default=ModelConfig().max_pixels, help="(d): processor resize bound")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads of the main process (workers use 1)")
    parser.add_argument("--no-augment", action="store_true", help="serve without training augmentation")
    parser.add_argument("--root", default=None, help="synthetic dataset root (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.batch_size < 1 or args.repeats < 1 or min(args.workers) < 0:
        parser.error("--samples, --batch-size and --repeats must be >= 1 and --workers >= 0")
    return args


def run(args, work: Path) -> dict:
    load_before = os.getloadavg()
    root = Path(args.root) if args.root else work / "synthetic"
    datamodule, build_seconds = build_datamodule(root, work, args)
    cached = datamodule.datasets["train"]
    modes: dict[str, tuple[Dataset, object]] = {CACHE: (cached, list), IMAGES: (images_only(cached), list)}
    for name in args.detectors:
        modes[f"detect:{name}"] = (detect_per_sample(cached, DetectorSpec(name)), list)
    if args.processor != "none":
        modes[PROCESSOR] = (cached, prompt_collator(args.processor, args.max_pixels))
    print(
        f"{len(cached)} samples per epoch, batch {args.batch_size}, augmentation {'off' if args.no_augment else 'on'}, best of {args.repeats} epochs"
    )
    rows = measure(datamodule, modes, args.workers, args.repeats)
    reference = {row.workers: row for row in rows if row.mode == CACHE}
    for row in rows:
        row.ratio = row.samples_per_s / reference[row.workers].samples_per_s
        row.cpu_ratio = row.cpu_ms_per_sample / reference[row.workers].cpu_ms_per_sample
    print_table(rows)
    info = machine()
    info["load_avg_before"] = [round(v, 2) for v in load_before]
    return {
        "benchmark": "data_pipeline",
        "samples": len(cached),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "augment": not args.no_augment,
        "repeats": args.repeats,
        "cache_detector": args.cache_detector,
        "cache_build_s": round(build_seconds, 3),
        "machine": info,
        "results": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(row).items()} for row in rows],
    }


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'mode':<44} {'workers':>7} {'samples/s':>10} {'vs (a)':>7} {'CPU ms/sample':>13} {'vs (a)':>7} "
        f"{'1st batch s':>11} {'batch ms p50':>12} {'p90':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{describe(row.mode):<44} {row.workers:>7} {row.samples_per_s:>10.1f} {row.ratio:>7.2f} "
            f"{row.cpu_ms_per_sample:>13.2f} {row.cpu_ratio:>7.2f} {row.first_batch_s:>11.2f} {row.batch_ms_p50:>12.1f} {row.batch_ms_p90:>7.1f}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    try:
        if args.torch_threads is not None:
            torch.set_num_threads(args.torch_threads)
        with tempfile.TemporaryDirectory(prefix="tagfer-data-bench-") as tmp:
            result = run(args, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
