"""The training order: a pure function of ``(seed, epoch)``, split across ranks, resumable mid-epoch.

:class:`EpochSampler` draws epoch ``e``'s order from a generator seeded with ``(seed, e)`` only — a
permutation (``shuffle``), class-balanced draws with replacement (``weights``) or ``0..n-1`` — pads it
to a multiple of the world size like ``torch.utils.data.DistributedSampler`` (whose subclass it is, so
Lightning keeps it under DDP instead of wrapping it) and gives rank ``r`` the positions ``r, r + W, …``.
Nothing depends on how many epochs or batches were drawn before, so a resumed run can rebuild any
epoch and skip the batches it already trained on (:meth:`EpochSampler.resume`).

Each yielded index is a :class:`SampleKey`: an ``int`` (any ``Dataset`` can use it as is) that also
carries the seed of that sample's augmentation, drawn from ``(seed, epoch)`` per position of the
global order. The dataset reseeds its augmentation with it (:meth:`tagfer.pipeline.datamodule.FERDataset.__getitem__`),
so a sample's augmentation depends neither on the DataLoader worker that loads it nor on the history of
the run — the property that makes a resumed run see exactly the samples an uninterrupted one sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler


class SampleKey(int):
    """A dataset index that carries the seed of the sample's augmentation (``key.seed``)."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SampleKey:
        key = super().__new__(cls, index)
        key.seed = int(seed)
        return key

    def __getnewargs__(self) -> tuple[int, int]:  # pickling (DataLoader workers receive index batches)
        return int(self), self.seed

    def __repr__(self) -> str:
        return f"SampleKey({int(self)}, seed={self.seed})"


def epoch_order(n: int, seed: int, epoch: int, *, shuffle: bool, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The ``n`` dataset indices of epoch ``epoch`` (``[n]`` int64), from ``(seed, epoch)`` alone.

    ``weights`` (``[n]``, non-negative) → ``n`` draws with replacement, ``P(i) ∝ weights[i]``;
    else ``shuffle`` → a uniform permutation; else ``0..n-1``.
    """
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    if weights is not None:
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    if shuffle:
        return torch.randperm(n, generator=generator)
    return torch.arange(n)


def sample_seeds(count: int, seed: int, epoch: int) -> np.ndarray:
    """``[count]`` uint32 augmentation seeds of the positions ``0..count-1`` of epoch ``epoch``'s order."""
    return np.random.default_rng([seed, epoch, 0x5EED]).integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)


def _mix(seed: int, epoch: int) -> int:
    """A 63-bit generator seed from ``(seed, epoch)`` (distinct pairs give unrelated streams)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]) >> 1


class EpochSampler(DistributedSampler):
    """Indices (as :class:`SampleKey`) of one rank's share of each epoch (module docstring).

    Args:
        n: dataset size.
        seed: the run seed (identical on every rank).
        shuffle: permute each epoch (ignored when ``weights`` is given).
        weights: per-sample weights for class-balanced sampling with replacement, or None.
        num_replicas / rank: the data-parallel world (1 / 0 for one process).
        drop_last: drop the tail instead of padding it so every rank gets the same count.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        shuffle: bool = True,
        weights: torch.Tensor | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        if weights is not None and len(weights) != n:
            raise ValueError(f"EpochSampler: {len(weights)} weights for {n} samples")
        self.n = n
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self._skip = 0

    def resume(self, epoch: int, samples_done: int) -> None:
        """Start at ``epoch``, leaving out this rank's first ``samples_done`` samples — once: the
        next :meth:`__iter__` only (later epochs are whole)."""
        self.set_epoch(epoch)
        self._skip = max(0, int(samples_done))

    def global_order(self) -> tuple[torch.Tensor, np.ndarray]:
        """``(indices, seeds)`` of every rank for the current epoch, padded or cut to ``total_size``."""
        indices = epoch_order(self.n, self.seed, self.epoch, shuffle=self.shuffle, weights=self.weights)
        if self.drop_last:
            indices = indices[: self.total_size]
        elif len(indices) < self.total_size:
            repeats = -(-self.total_size // max(len(indices), 1))
            indices = indices.repeat(repeats)[: self.total_size]
        return indices, sample_seeds(self.total_size, self.seed, self.epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        indices, seeds = self.global_order()
        positions = range(self.rank, self.total_size, self.num_replicas)
        skip, self._skip = self._skip, 0
        for position in positions[skip:]:
            yield SampleKey(int(indices[position]), int(seeds[position]))

    def __len__(self) -> int:
        return self.num_samples
