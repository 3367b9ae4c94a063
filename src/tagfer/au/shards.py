"""AU cache shards: one structured ``.npy`` array per shard, written atomically, with a checksum.

One row per image (structured dtype, :func:`row_dtype`; P = len(prob_aus), B = len(box_aus))::

    face_found  bool
    quality     uint8         verdict code of tagfer.au.quality.VERDICTS at build time
    face_score  float32
    sharpness   float32       variance of the Laplacian of the grey face crop
    face_box    float32[4]    x1, y1, x2, y2 (original-image pixels; NaN without a face)
    landmarks   float32[68,2] NaN without a face
    au_prob     float32[P]    NaN where the detector gave no probability
    au_box      float32[B,4]  NaN where there is no box

Beside ``shard-00007.npy`` lies ``shard-00007.json``: ``{"ids": [...], "skipped": {id: error}, "sha256":
<of the .npy file>}``. Both are written to a temporary name and moved into place with ``os.replace``,
the ``.npy`` first, so a shard counts as finished only when its ``.json`` exists and the checksum of
its ``.npy`` matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tagfer.au.quality import VERDICT_CODE
from tagfer.core.evidence import AUEvidence


def row_dtype(n_prob: int, n_box: int) -> np.dtype:
    """The structured dtype of one cache row (module docstring)."""
    return np.dtype(
        [
            ("face_found", "?"),
            ("quality", "u1"),
            ("face_score", "<f4"),
            ("sharpness", "<f4"),
            ("face_box", "<f4", (4,)),
            ("landmarks", "<f4", (68, 2)),
            ("au_prob", "<f4", (n_prob,)),
            ("au_box", "<f4", (n_box, 4)),
        ]
    )


def evidence_row(evidence: AUEvidence, sharpness: float, verdict: str, prob_aus, box_aus) -> np.ndarray:
    """One row (a 0-d structured array) from detector evidence."""
    row = np.zeros((), dtype=row_dtype(len(prob_aus), len(box_aus)))
    row["face_found"] = evidence.face_found
    row["quality"] = VERDICT_CODE[verdict]
    row["face_score"] = evidence.face_score if evidence.face_found else 0.0
    row["sharpness"] = sharpness
    row["face_box"] = np.nan if evidence.face_box is None else evidence.face_box
    row["landmarks"] = np.nan if evidence.landmarks is None else evidence.landmarks
    row["au_prob"] = [evidence.au_prob.get(au, np.nan) for au in prob_aus]
    row["au_box"] = [evidence.au_box.get(au, (np.nan,) * 4) for au in box_aus]
    return row


def row_evidence(row: np.ndarray, prob_aus, box_aus) -> AUEvidence:
    """The :class:`AUEvidence` stored in one row (inverse of :func:`evidence_row`)."""
    if not bool(row["face_found"]):
        return AUEvidence(face_found=False, face_score=0.0)
    probs = np.asarray(row["au_prob"], dtype=np.float64)
    boxes = np.asarray(row["au_box"], dtype=np.float64)
    return AUEvidence(
        face_found=True,
        face_box=tuple(float(v) for v in row["face_box"]),
        landmarks=np.array(row["landmarks"], dtype=np.float32),
        au_prob={au: float(p) for au, p in zip(prob_aus, probs) if not np.isnan(p)},
        au_box={au: tuple(float(v) for v in box) for au, box in zip(box_aus, boxes) if not np.isnan(box).any()},
        face_score=float(row["face_score"]),
    )


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(handle)`` on ``<path>.tmp``, flush to disk, then ``os.replace`` it onto ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(json.dumps(data, indent=1, sort_keys=True).encode("utf-8")))


def write_shard(directory: Path, index: int, ids: list[str], rows: np.ndarray, skipped: dict[str, str]) -> str:
    """Write shard ``index`` (rows, then its ``.json``) atomically; returns the ``.npy`` checksum."""
    npy = directory / f"{shard_name(index)}.npy"
    atomic_write_bytes(npy, lambda handle: np.save(handle, rows, allow_pickle=False))
    checksum = sha256_file(npy)
    atomic_write_json(directory / f"{shard_name(index)}.json", {"ids": ids, "skipped": skipped, "sha256": checksum})
    return checksum


def read_shard_info(directory: Path, index: int) -> dict | None:
    """The ``.json`` of a finished shard whose ``.npy`` checksum matches, else None (to be recomputed)."""
    info_path = directory / f"{shard_name(index)}.json"
    npy = directory / f"{shard_name(index)}.npy"
    if not info_path.is_file() or not npy.is_file():
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("sha256") != sha256_file(npy):
        return None
    return info
