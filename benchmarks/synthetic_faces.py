"""Synthetic face generation speed (one process): faces/s of sample + render, and of writing a dataset.

    python benchmarks/synthetic_faces.py [--faces 96] [--sizes 64 112 224]

Prints, per image size, milliseconds per face for :func:`tagfer.data.synthetic_faces.make_face` (best of
3 runs over ``--faces`` faces, classes in turn) and the wall time of ``generate_synthetic_dataset`` for
16 images per split (train/val/test), the size the tests use.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tagfer.core.classes import CLASS_NAMES
from tagfer.data.synthetic import generate_synthetic_dataset
from tagfer.data.synthetic_faces import make_face


def per_face_ms(faces: int, size: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for index in range(faces):
            make_face(np.random.default_rng(index), CLASS_NAMES[index % len(CLASS_NAMES)], size)
        best = min(best, (time.perf_counter() - start) / faces * 1000)
    return best


def dataset_seconds(size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_synthetic_dataset(Path(tmp) / "synthetic", {"train": 16, "val": 16, "test": 16}, seed=0, image_size=size)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=96)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112, 224])
    args = parser.parse_args()
    print(f"{'size':>6} {'ms/face':>9} {'3x16 dataset s':>15}")
    for size in args.sizes:
        print(f"{size:>6} {per_face_ms(args.faces, size):>9.1f} {dataset_seconds(size):>15.2f}")


if __name__ == "__main__":
    main()
