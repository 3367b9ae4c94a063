"""``AUEvidence``: what an AU detector says about one face image.

Coordinates are pixels of the *original* image (x right, y down); boxes are ``(x1, y1, x2, y2)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


@dataclass
class AUEvidence:
    """Detector output for one image.

    Attributes:
        face_found: False when no face was detected; then every other field is empty.
        face_box: ``(x1, y1, x2, y2)`` of the face, or None.
        landmarks: ``[68, 2]`` float32 array (iBUG-68 order), or None when the detector has none.
        au_prob: AU name → activation probability in [0, 1] (intensities are scaled to [0, 1]).
        au_box: AU name → region box for that AU.
        face_score: detector confidence in [0, 1] (1.0 when the source gives none).
    """

    face_found: bool = True
    face_box: Box | None = None
    landmarks: np.ndarray | None = None
    au_prob: dict[str, float] = field(default_factory=dict)
    au_box: dict[str, Box] = field(default_factory=dict)
    face_score: float = 1.0

    def active(self, threshold: float = 0.5) -> dict[str, float]:
        """AUs with probability ≥ threshold, strongest first."""
        items = [(au, p) for au, p in self.au_prob.items() if p >= threshold]
        return dict(sorted(items, key=lambda kv: (-kv[1], kv[0])))

    def top_k(self, k: int, threshold: float = 0.5) -> dict[str, float]:
        """The ``k`` strongest active AUs (fewer when fewer are active)."""
        return dict(list(self.active(threshold).items())[:k])

    def to_json(self) -> dict:
        """A JSON-serialisable dict (the ``tagfer au-cache show`` schema, plus ``face_found``)."""
        return {
            "face_found": bool(self.face_found),
            "face_box": None if self.face_box is None else [float(v) for v in self.face_box],
            "landmarks": None if self.landmarks is None else np.asarray(self.landmarks, dtype=float).tolist(),
            "au_prob": {k: float(v) for k, v in self.au_prob.items()},
            "au_box": {k: [float(v) for v in box] for k, box in self.au_box.items()},
            "face_score": float(self.face_score),
        }

    @classmethod
    def from_json(cls, data: dict) -> AUEvidence:
        landmarks = data.get("landmarks")
        return cls(
            face_found=bool(data.get("face_found", True)),
            face_box=None if data.get("face_box") is None else tuple(data["face_box"]),
            landmarks=None if landmarks is None else np.asarray(landmarks, dtype=np.float32),
            au_prob={k: float(v) for k, v in data.get("au_prob", {}).items()},
            au_box={k: tuple(float(x) for x in v) for k, v in data.get("au_box", {}).items()},
            face_score=float(data.get("face_score", 1.0)),
        )
