"""Dataset fingerprints: a cheap hash that tells whether an AU cache still matches the dataset on disk.

For every record: ``id``, ``split``, ``label``, and what identifies its pixels cheaply — the image
file's size in bytes (``-1`` when the file is missing), or a SHA-1 of ``pixels`` for images stored
inside a CSV (FER2013) — plus a SHA-1 of the dataset's landmarks when it ships them (AffectNet), since
the ``dataset_landmarks`` detector reads them. Modification times are left out on purpose: copying a
dataset to another disk changes them but not the images.

``fingerprint = sha256("\\n".join(sorted(signatures)))`` per split, so the record order does not matter.
Recomputing costs one ``stat`` per image.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from tagfer.core.records import FaceRecord


def record_signature(record: FaceRecord) -> str:
    """``id \\t split \\t label \\t pixels-id [\\t landmarks-sha1]`` for one record (module docstring)."""
    if record.pixels is not None:
        pixels = "sha1:" + hashlib.sha1(np.ascontiguousarray(record.pixels).tobytes()).hexdigest()
    else:
        try:
            pixels = f"size:{record.image_path.stat().st_size}"
        except (OSError, AttributeError):
            pixels = "size:-1"
    fields = [record.id, record.split, str(int(record.label)), pixels]
    if record.landmarks is not None:
        points = np.ascontiguousarray(np.asarray(record.landmarks, dtype=np.float32))
        fields.append("lmk:" + hashlib.sha1(points.tobytes()).hexdigest())
    return "\t".join(fields)


def dataset_fingerprint(records: list[FaceRecord]) -> dict[str, str]:
    """``{split: sha256 hex}`` over the records of each split (module docstring)."""
    signatures: dict[str, list[str]] = defaultdict(list)
    for record in records:
        signatures[record.split].append(record_signature(record))
    return {split: hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest() for split, lines in sorted(signatures.items())}
