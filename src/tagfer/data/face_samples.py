"""DataModule-shaped samples of synthetic faces, in memory (benchmarks and multi-process tests).

Each sample has the keys :class:`tagfer.pipeline.datamodule.FERDataset` yields (what the collators read):
the rendered face, its class, AU probabilities (the rendered AU intensities) and AU region boxes from
its exact landmarks — no dataset on disk, no AU cache, deterministic in ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagfer.core.classes import CLASS_INDEX, CLASS_NAMES
from tagfer.core.regions import au_boxes
from tagfer.data.synthetic import face_rng
from tagfer.data.synthetic_faces import make_face


def face_samples(
    count: int, *, seed: int = 0, image_size: int = 112, classes: Sequence[str] = CLASS_NAMES, trace: str | None = None
) -> list[dict]:
    """``count`` samples, classes in turn; AUs with intensity > 0 count as present (probability =
    intensity) and get their region's box. ``trace`` (the SFT target) is the same text for every
    sample, or None."""
    samples = []
    for index in range(count):
        label = classes[index % len(classes)]
        face = make_face(face_rng(seed, "train", index), label, image_size)
        au_prob = {au: float(value) for au, value in face.au_intensity.items() if value > 0}
        height, width = face.image.shape[:2]
        samples.append(
            {
                "id": f"synthetic/{index:05d}.png",
                "dataset": "synthetic",
                "label": CLASS_INDEX[label],
                "label_name": label,
                "soft_label": None,
                "image": face.image,
                "image_size": (int(width), int(height)),
                "face_found": True,
                "face_box": tuple(face.face_box),
                "landmarks": face.landmarks,
                "au_prob": au_prob,
                "au_box": au_boxes(face.landmarks, list(au_prob), (int(width), int(height))),
                "trace": trace,
            }
        )
    return samples
