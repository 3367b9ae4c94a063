"""AU detectors on synthetic faces: throughput (images/s, one process) and agreement with the truth.

    python benchmarks/au_detectors.py --samples 200 [--root /tmp/tagfer-bench-synthetic]

For each detector it builds an AU cache of the same synthetic split (in-process, no workers) and prints
images/s of the whole build (decode + detect + quality + write), then, against the synthetic ground
truth: face-found rate, landmark error (mean point distance / inter-ocular distance) and per-AU
balanced accuracy of "p ≥ 0.5" vs "intensity ≥ 0.5".
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tagfer.au.build import build_split, dataset_source
from tagfer.au.detectors import DetectorSpec
from tagfer.core.config import DatasetSpec
from tagfer.data.readers import read_dataset


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean of the recalls of the two classes (NaN when one class is absent)."""
    if truth.all() or (~truth).all():
        return float("nan")
    return float(((predicted & truth).sum() / truth.sum() + (~predicted & ~truth).sum() / (~truth).sum()) / 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--root", default=None, help="synthetic dataset root (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tagfer-au-bench-"))
    spec = DatasetSpec(name="synthetic", root=args.root or str(work / "data"), split="test", num_samples=args.samples)
    records = read_dataset(spec).records
    truth = {r.id: r for r in records}
    print(f"{len(records)} synthetic faces, {spec.image_size}px, one process")
    for name in ("synthetic", "dataset_landmarks", "builtin"):
        detector = DetectorSpec(name)
        start = time.perf_counter()
        cache = build_split(records, detector, work / name, split="test", source=dataset_source(spec, detector), progress=False)
        seconds = time.perf_counter() - start
        found = [i for i in cache.ids if cache.get(i).face_found]
        errors = []
        for record_id in found:
            points, exact = cache.get(record_id).landmarks, truth[record_id].landmarks
            iod = np.linalg.norm(exact[36:42].mean(axis=0) - exact[42:48].mean(axis=0))
            errors.append(np.linalg.norm(points - exact, axis=1).mean() / iod)
        print(
            f"\n{name}: {len(records) / seconds:.1f} images/s; faces found {len(found)}/{len(records)}; landmark error {np.mean(errors):.3f} iod"
        )
        rows = []
        for au in cache.prob_aus:
            t = np.array([truth[i].extra["au_intensity"][au] >= 0.5 for i in found])
            p = np.array([cache.get(i).au_prob[au] >= 0.5 for i in found])
            rows.append(f"{au}={balanced_accuracy(t, p):.2f}")
        print("  balanced accuracy per AU: " + " ".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
