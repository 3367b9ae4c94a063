"""Determinism: a seed fixes the training order and every augmentation, whatever the worker count, the rank
layout or the history of the run — the property exact resumption rests on (tests/test_reliability_resume.py
shows whole runs: same seed, same weights, killed or not)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from tagfer.core.config import load_config
from tagfer.data.images import load_image
from tagfer.data.sampling import EpochSampler, SampleKey, epoch_order
from tagfer.pipeline.datamodule import FERDataModule


def test_epoch_order_depends_on_seed_and_epoch_only_and_ranks_partition_it():
    first, again = list(EpochSampler(10, seed=3)), list(EpochSampler(10, seed=3))
    assert first == again and [k.seed for k in first] == [k.seed for k in again]
    assert sorted(first) == list(range(10))
    later = EpochSampler(10, seed=3)
    later.set_epoch(1)
    assert list(later) != first and sorted(later) == list(range(10))
    assert list(EpochSampler(10, seed=4)) != first
    ranks = [EpochSampler(10, seed=3, num_replicas=3, rank=r) for r in range(3)]
    shares = [list(s) for s in ranks]
    assert all(len(share) == 4 for share in shares)  # padded to 12 like DistributedSampler
    assert set().union(*map(set, shares)) == set(range(10))
    interleaved = [shares[p % 3][p // 3] for p in range(12)]
    assert interleaved[:10] == first  # rank r takes positions r, r + 3, ... of the one global order


def test_balanced_order_draws_classes_equally():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2])
    weights = 1.0 / torch.bincount(labels)[labels].double()
    order = epoch_order(3000, 7, 0, shuffle=True, weights=weights.repeat(30))
    counts = torch.bincount(labels.repeat(30)[order], minlength=3) / 3000
    assert torch.allclose(counts, torch.full((3,), 1 / 3, dtype=counts.dtype), atol=0.05)


def test_resume_skips_exactly_the_samples_already_trained_once():
    sampler = EpochSampler(10, seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.resume(2, 3)
    assert list(sampler) == whole[3:]
    assert list(sampler) == whole  # the skip is spent; the next pass is whole again


def test_sample_keys_pickle_with_their_seed():
    key = pickle.loads(pickle.dumps(SampleKey(5, 123)))
    assert key == 5 and key.seed == 123 and [10, 11, 12, 13, 14, 15][key] == 15


@pytest.fixture
def datamodule(tmp_path, configs_dir) -> FERDataModule:
    face = "{name: synthetic, root: %s, split: %s, num_samples: %d}"
    cfg = load_config(
        configs_dir / "sft.yaml",
        [
            f"data.train=[{face % (tmp_path / 'faces', 'train', 12)}]",
            f"data.val=[{face % (tmp_path / 'faces', 'val', 2)}]",
            f"data.test=[{face % (tmp_path / 'faces', 'test', 2)}]",
            f"au.cache_dir={tmp_path / 'au'}",
            "data.batch_size=3",
            "data.augment.horizontal_flip=0.5",
            "data.augment.shift_scale_rotate=0.5",
            "data.augment.color_jitter=0.5",
        ],
    )
    dm = FERDataModule(cfg.data, cfg.au, seed=11)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def epoch(dm: FERDataModule, number: int, workers: int) -> list[tuple[str, np.ndarray]]:
    """``(id, augmented image)`` of every training sample of epoch ``number``, in order."""
    dm.data_cfg.num_workers = workers
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(number)
    return [(sample["id"], sample["image"]) for batch in loader for sample in batch]


def same(a, b) -> bool:
    return [i for i, _ in a] == [i for i, _ in b] and all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_augmentation_does_not_depend_on_workers_or_on_what_came_before(datamodule):
    single = epoch(datamodule, 1, workers=0)
    assert same(epoch(datamodule, 1, workers=2), single)  # two worker processes: same samples, same augmentation
    assert same(epoch(datamodule, 1, workers=0), single)  # after another pass: no history
    assert [i for i, _ in epoch(datamodule, 2, workers=0)] != [i for i, _ in single]
    plain = {item.record.id: load_image(item.record) for item in datamodule.datasets["train"].items}
    assert sum(not np.array_equal(image, plain[i]) for i, image in single) >= 3  # augmentation did happen
    # a resumed loader (epoch 1, 2 batches of 3 trained) serves exactly the rest of that epoch, augmented alike
    datamodule.load_state_dict({"epoch": 1, "batches_done": 2, "epoch_batches": 4})
    datamodule.data_cfg.num_workers = 0
    rest = [(s["id"], s["image"]) for batch in datamodule.train_dataloader() for s in batch]
    assert same(rest, single[6:])
    # a checkpoint taken after the last batch of epoch 1 resumes at the start of epoch 2
    datamodule.load_state_dict({"epoch": 1, "batches_done": 4, "epoch_batches": 4})
    assert datamodule.train_dataloader().sampler.epoch == 2
