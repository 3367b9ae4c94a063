"""``FERDataModule``: one LightningDataModule for every dataset and mixtures of them, with cached AU maps.

Each split (``data.train`` / ``data.val`` / ``data.test``) is a list of :class:`tagfer.core.config.DatasetSpec`;
their records are concatenated. Every record is joined with its AU cache entry (built on first use by
:func:`tagfer.au.build.ensure_au_cache`) and, when the spec names a trace file, its reasoning trace. Each split
is read once and each AU cache opened once per run (:class:`tagfer.pipeline.splits.SplitReader`, shared
with the trace build when the stage passes it on).

A sample (what ``FERDataset[i]`` returns, before the collate function)::

    {"id": str, "dataset": str, "label": int, "label_name": str, "soft_label": [8] float array | None,
     "image": [H, W, 3] uint8, "image_size": (W, H), "crop_box": (x1, y1, x2, y2) int | None,
     "face_found": bool, "face_box": box | None, "landmarks": [68, 2] float32 | None,
     "au_prob": {AU: p}, "au_box": {AU: (x1, y1, x2, y2)}, "trace": str | None}

Each image is first cropped to its face (``data.face_crop``, :mod:`tagfer.data.face_crop`): ``crop_box``
is the crop window in original-image pixels (None: the whole image is served), and the cached AU
evidence (original pixels) is moved into the crop. A trace must have been built for the same crop (its
``crop_box`` field); a mismatch is an error naming the trace file. Coordinates are pixels of the served
(cropped, then augmented) image. Training images are augmented with albumentations;
boxes, landmarks and the boxes written inside a trace follow every geometric transform
(:mod:`tagfer.data.transforms`). Under a rotation, with 68 landmarks, the AU boxes and the step boxes of a
template trace are recomputed from the transformed landmarks (``au.box_mode``) so that the rotation does
not inflate them; a teacher trace's boxes are not derived from landmarks and keep the geometric transform.
The collate function (model-specific: it owns the processor, so the pixel preprocessing and tokenisation
run in the DataLoader workers) is passed in by the training stage.

Determinism and resumption: the training order of epoch ``e`` and every sample's augmentation are
functions of ``(seed, e)`` alone (:class:`tagfer.data.sampling.EpochSampler`), never of the global RNG,
the DataLoader worker or the run's history. The module's ``state_dict`` (saved in every Lightning
checkpoint) records the epoch and the batches already trained in it; a resumed run starts the loader
there, so it trains on exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import bisect
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from tagfer.core.classes import CLASS_NAMES
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.data.face_crop import NO_CROP, FaceCrop, apply_face_crop
from tagfer.data.images import CorruptImageError, load_image
from tagfer.data.sampling import EpochSampler, SampleKey
from tagfer.data.trace_boxes import TraceBoxMapper, template_step_boxes
from tagfer.data.trace_file import read_traces, trace_window
from tagfer.data.transforms import apply_augmentation, build_augmentation, landmark_au_boxes, reseed
from tagfer.pipeline.splits import SplitReader

log = logging.getLogger(__name__)

Sample = dict


@dataclass
class FaceItem:
    """A record joined with its AU evidence and (for SFT) its trace text, the crop it was written for and
    its source (``template`` | ``teacher``)."""

    record: FaceRecord
    evidence: AUEvidence
    trace: str | None = None
    trace_crop: tuple[int, int, int, int] | None = None
    trace_file: str | None = None
    trace_source: str | None = None


class FERDataset(Dataset):
    """Samples of one dataset split (see the module docstring for the sample layout).

    ``crop`` is the face-crop setting resolved for this split (:meth:`FaceCrop.for_images`); ``box_mode``
    is the AU cache's (``au.box_mode``), used to recompute AU boxes from augmented landmarks.
    """

    def __init__(
        self,
        items: list[FaceItem],
        *,
        augment=None,
        trace_mapper: TraceBoxMapper | None = None,
        crop: FaceCrop = NO_CROP,
        box_mode: str = "region",
    ):
        self.items = items
        self.augment = augment
        self.trace_mapper = trace_mapper
        self.crop = crop
        self.box_mode = box_mode

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [item.record.label for item in self.items]

    def __getitem__(self, index: int) -> Sample:
        """Sample ``index``; a :class:`SampleKey` index also reseeds the augmentation with its seed."""
        item = self.items[index]
        record = item.record
        if self.augment is not None and isinstance(index, SampleKey):
            reseed(self.augment, index.seed)
        image, evidence, window = apply_face_crop(self.crop, record, load_image(record), item.evidence)
        if item.trace is not None and window != item.trace_crop:
            raise ValueError(
                f"{item.trace_file}: the trace of {record.id!r} was built for the crop {item.trace_crop} but the sample is "
                f"served with the crop {window} (data.face_crop changed?); delete the trace file and rebuild it "
                "(tagfer traces build)"
            )
        boxes = dict(evidence.au_box)
        if evidence.face_box is not None:
            boxes["__face__"] = evidence.face_box
        trace = item.trace
        trace_boxes = (
            self.trace_mapper.boxes_in_pixels(trace, record.id, image.shape) if (trace and self.augment and self.trace_mapper) else {}
        )
        boxes.update(trace_boxes)
        landmarks = evidence.landmarks
        if self.augment is not None:
            out = apply_augmentation(self.augment, image, boxes, landmarks)
            image, boxes, landmarks = out.image, out.boxes, out.landmarks
            moved_trace_boxes = {k: boxes.get(k) for k in trace_boxes}
            anatomical = None
            if out.rotated:  # a rotated box's hull is inflated: recompute the AU boxes where landmarks allow
                anatomical = landmark_au_boxes(landmarks, evidence.au_box, (image.shape[1], image.shape[0]), self.box_mode)
            if anatomical is not None:
                boxes = {k: v for k, v in boxes.items() if k.startswith("__")} | anatomical
                if trace_boxes and item.trace_source == "template":
                    moved_trace_boxes = template_step_boxes(trace, anatomical)
            if trace_boxes:
                trace = self.trace_mapper.rewrite(trace, moved_trace_boxes, image.shape, record.id)
        face_box = boxes.pop("__face__", None)
        au_box = {k: v for k, v in boxes.items() if not k.startswith("__")}
        return {
            "id": record.id,
            "dataset": record.dataset,
            "label": record.label,
            "label_name": CLASS_NAMES[record.label],
            "soft_label": record.soft_label,
            "image": image,
            "image_size": (int(image.shape[1]), int(image.shape[0])),
            "crop_box": window,
            "face_found": bool(evidence.face_found),
            "face_box": face_box,
            "landmarks": landmarks,
            "au_prob": dict(evidence.au_prob),
            "au_box": au_box,
            "trace": trace,
        }


class KeyedConcatDataset(ConcatDataset):
    """``ConcatDataset`` that hands each part a :class:`SampleKey` (the augmentation seed survives)."""

    def __getitem__(self, index: int) -> Sample:
        if not isinstance(index, SampleKey):
            return super().__getitem__(index)
        part = bisect.bisect_right(self.cumulative_sizes, index)
        offset = self.cumulative_sizes[part - 1] if part else 0
        return self.datasets[part][SampleKey(index - offset, index.seed)]


def class_balanced_weights(labels: list[int]) -> torch.Tensor:
    """Per-sample weight 1 / count(class of the sample): every class is drawn equally often."""
    counts = Counter(labels)
    return torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.double)


class FERDataModule(L.LightningDataModule):
    """Serves ``data.train`` / ``data.val`` / ``data.test`` (mixtures allowed) with AU evidence and traces.

    Args:
        data_cfg: :class:`tagfer.core.config.DataConfig`.
        au_cfg: :class:`tagfer.core.config.AUConfig` (detector, cache dir, quality filter).
        train_collate: turns a list of training samples into a batch (model inputs); default: the list.
        eval_collate: the same for validation and test batches (e.g. generation prompts without targets).
        trace_mapper: converts trace boxes between the model's coordinate space and image pixels, so that
            geometric augmentation can move them; None disables geometric augmentation of trace samples.
        require_traces: training samples without a trace are dropped (SFT).
        prepare_traces: builds the missing trace files; called in :meth:`prepare_data` after the AU caches,
            so that under DDP one process per node writes them while the others wait.
        train_batch_size: training batch size when it is not ``data.batch_size`` (GRPO: ``rl.batch_size`` prompts).
        seed: seeds the augmentation and the balanced sampler (identical on every DDP rank).
        splits: reads the splits and opens their AU caches, each once (default: a new :class:`SplitReader`).
    """

    def __init__(
        self,
        data_cfg,
        au_cfg,
        *,
        train_collate: Callable[[list[Sample]], object] | None = None,
        eval_collate: Callable[[list[Sample]], object] | None = None,
        trace_mapper: TraceBoxMapper | None = None,
        require_traces: bool = False,
        prepare_traces: Callable[[], None] | None = None,
        train_batch_size: int | None = None,
        seed: int = 0,
        splits: SplitReader | None = None,
    ):
        super().__init__()
        self.data_cfg = data_cfg
        self.au_cfg = au_cfg
        self.train_collate = train_collate or list
        self.eval_collate = eval_collate or list
        self.trace_mapper = trace_mapper
        self.require_traces = require_traces
        self.prepare_traces = prepare_traces
        self.train_batch_size = train_batch_size or data_cfg.batch_size
        self.seed = seed
        self.splits = splits or SplitReader(au_cfg)
        self.face_crop = FaceCrop.from_config(data_cfg.face_crop)
        self.box_mode = str(au_cfg.box_mode)  # the AU cache's (checked against the cache when it is opened)
        self.datasets: dict[str, Dataset] = {}
        self.skipped: dict[str, Counter] = {}
        self._resume: dict | None = None  # position restored from a checkpoint (load_state_dict)

    def prepare_data(self) -> None:
        """Build missing AU caches (and synthetic images), then missing trace files, once per node, before
        ``setup`` on every rank."""
        for split in ("train", "val", "test"):
            for spec in self.data_cfg[split]:
                self.splits.au_cache(spec)
        if self.prepare_traces is not None:
            self.prepare_traces()

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._build_split(split)

    def _build_split(self, split: str) -> Dataset:
        parts = []
        skipped: Counter = Counter()
        for spec in self.data_cfg[split]:
            items, spec_skipped, whole_photos = self._items(spec, training=(split == "train"))
            skipped.update(spec_skipped)
            augment = None
            if split == "train" and self.data_cfg.augment.enabled:
                # Trace boxes can only follow geometric transforms through a trace mapper.
                geometric = not (self.require_traces and self.trace_mapper is None)
                augment = build_augmentation(self.data_cfg.augment, seed=self.seed, geometric=geometric)
            crop = self.face_crop.for_images(whole_photos)
            parts.append(FERDataset(items, augment=augment, trace_mapper=self.trace_mapper, crop=crop, box_mode=self.box_mode))
        self.skipped[split] = skipped
        total = sum(len(p) for p in parts)
        if total == 0:
            raise ValueError(f"data.{split}: no usable samples (skipped: {dict(skipped)}); check the dataset roots and splits")
        if skipped:
            log.info("data.%s: %d samples, skipped %s", split, total, dict(skipped))
        return parts[0] if len(parts) == 1 else KeyedConcatDataset(parts)

    def _items(self, spec, *, training: bool) -> tuple[list[FaceItem], Counter, bool]:
        """The usable items of ``spec``, the skip counts and whether its images are whole photos."""
        result = self.splits.read(spec, strict=self.data_cfg.strict)
        skipped: Counter = Counter(result.skipped)
        cache = self.splits.au_cache(spec)
        traces = read_traces(spec.traces) if (training and spec.traces and self.require_traces) else None
        items = []
        for record in result.records:
            entry = cache.lookup(record.id)
            if entry is None:
                if self.data_cfg.strict:
                    reason = cache.skipped.get(record.id, f"{record.id} is not in the AU cache {cache.directory}")
                    raise CorruptImageError(f"{reason} (data.strict=true: set it to false to skip and count such images)")
                skipped["not in AU cache (corrupt image)"] += 1
                continue
            if training and not cache.passed_quality(record.id):
                skipped["failed face-quality filter"] += 1
                continue
            trace = trace_crop = trace_source = None
            if traces is not None:
                trace_record = traces.get(record.id)
                if trace_record is None:
                    skipped["no verified trace"] += 1
                    continue
                trace = trace_record["trace"]
                trace_crop = trace_window(trace_record)
                trace_source = trace_record["source"]
            items.append(
                FaceItem(
                    record=record, evidence=entry, trace=trace, trace_crop=trace_crop, trace_file=spec.traces, trace_source=trace_source
                )
            )
        return items, skipped, result.whole_photos

    def _loader(self, split: str, *, batch_size: int) -> DataLoader:
        dataset = self.datasets[split]
        sampler = None
        if split == "train":
            weights = None
            if self.data_cfg.balanced_sampling:
                weights = class_balanced_weights([y for part in _parts(dataset) for y in part.labels])
            world, rank = self._world()
            sampler = EpochSampler(len(dataset), seed=self.seed, shuffle=True, weights=weights, num_replicas=world, rank=rank)
            if self._resume is not None:
                epoch, batches = self._resume_position(math.ceil(sampler.num_samples / batch_size))
                sampler.resume(epoch, batches * batch_size)
                self._resume = None
        workers = self.data_cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.data_cfg.pin_memory,
            persistent_workers=self.data_cfg.persistent_workers and workers > 0,
            collate_fn=self.train_collate if split == "train" else self.eval_collate,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds; never the global RNG
            worker_init_fn=seed_worker,
        )

    def _world(self) -> tuple[int, int]:
        """``(world size, global rank)`` of the attached trainer, ``(1, 0)`` without one."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _resume_position(self, batches_per_epoch: int) -> tuple[int, int]:
        """``(epoch, batches already trained in it)`` to start the training loader at after a resume."""
        epoch, done = int(self._resume["epoch"]), int(self._resume["batches_done"])
        limit = self._resume.get("epoch_batches") or batches_per_epoch
        return (epoch + 1, 0) if done >= limit else (epoch, done)

    def state_dict(self) -> dict:
        """Where the training loader stands (saved in every Lightning checkpoint): the epoch, the batches
        trained in it so far and the epoch's length in batches."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        batches = trainer.num_training_batches
        return {
            "epoch": trainer.current_epoch,
            "batches_done": progress.processed,
            "epoch_batches": int(batches) if math.isfinite(batches) else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Remember the position of a checkpoint; the next ``train_dataloader()`` starts there."""
        self._resume = dict(state) if state else None
        if self._resume:  # Lightning cannot see that the loader resumes exactly (it only asks the DataLoader)
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", batch_size=self.train_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", batch_size=self.data_cfg.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", batch_size=self.data_cfg.eval_batch_size)


def _parts(dataset: Dataset) -> list[FERDataset]:
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding: numpy and python RNGs derive from torch's per-worker seed."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


__all__ = ["FERDataModule", "FERDataset", "FaceItem", "class_balanced_weights", "CorruptImageError"]
