"""Landmark-geometry AU estimate: AU probabilities from distances between the 68 landmarks.

This is an **estimate, not a trained AU detector**. It sees only what 2D landmark geometry can show
(brow height, lid opening, lip-corner height, mouth opening, nose–lip distance, lip thickness), it
has no texture (wrinkles, bulges, dimples), and it compares each face with one population neutral
reference, not with the person's own neutral face: a person whose brows sit high reads as a little
AU1/AU2 all the time. Use it as an honest offline baseline; prefer an external detector's output
(OpenFace, py-feat importers) when there is one.

**Face frame.** Landmarks are expressed in a frame that removes position, scale and in-plane rotation:
origin at the midpoint of the two eye centres ``e_l = mean(p36..p41)``, ``e_r = mean(p42..p47)``; x axis
along ``e_r − e_l``; y axis perpendicular, pointing down the face; unit = inter-ocular distance
``iod = ‖e_r − e_l‖``::

    q_i = R · (p_i − (e_l + e_r)/2) / iod,   R = [[c, s], [−s, c]],  (c, s) = (e_r − e_l) / iod

**Features** (:data:`FEATURES`, all in iod units, ``y`` = face-frame y of ``q``, ``x`` = its x):

=================== ======================================================= =====================
feature             formula                                                 grows with
=================== ======================================================= =====================
inner_brow_height   mean(y39 − y21, y42 − y22)                              AU1 (falls: AU4)
outer_brow_height   mean(y36 − mean(y17, y18), y45 − mean(y25, y26))        AU2
brow_gap            x22 − x21                                               (falls: AU4)
eye_opening         mean(y41 − y37, y40 − y38, y47 − y43, y46 − y44)        AU5 (falls: AU7, AU6)
lower_lid_height    mean(y36 + y39, y42 + y45)/2 − mean(y40, y41, y46, y47) AU6, AU7 (lid pushed up)
lip_corner_lift     y62 − mean(y48, y54)  (corners vs upper-lip centre)     AU12 (falls: AU15)
mouth_width         x54 − x48                                               AU12, AU20 (falls: AU23)
lip_gap             mean(y67 − y61, y66 − y62, y65 − y63)                   AU25, AU26
jaw_drop            y8 − y33                                                AU26
nose_to_lip         y51 − y33                                               (falls: AU10, AU9)
nose_height         mean(y31, y35) − y27                                    (falls: AU9)
lip_thickness       (y62 − y51) + (y57 − y66)                               (falls: AU23, AU24)
chin_to_lip         y8 − y57                                                (falls: AU17)
=================== ======================================================= =====================

**AU model.** For each AU a weight vector ``w`` over the features and a bias ``b``::

    z = b + Σ_k w_k · (f_k − f_k^neutral) / σ_k,        p(AU) = 1 / (1 + exp(−z))

with ``f^neutral`` and ``σ`` the mean and standard deviation of each feature over neutral faces of the
calibration set. Weights and biases come from a logistic regression of "AU intensity ≥ 0.5" on the
standardised features over the synthetic faces, where the truth is known
(:mod:`tagfer.au.calibration`); only the features named for an AU above enter its model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tagfer.core.regions import check_landmarks

FEATURES: tuple[str, ...] = (
    "inner_brow_height",
    "outer_brow_height",
    "brow_gap",
    "eye_opening",
    "lower_lid_height",
    "lip_corner_lift",
    "mouth_width",
    "lip_gap",
    "jaw_drop",
    "nose_to_lip",
    "nose_height",
    "lip_thickness",
    "chin_to_lip",
)

#: The features each AU's logistic model may use (the "grows with" column of the module docstring).
AU_FEATURES: dict[str, tuple[str, ...]] = {
    "AU1": ("inner_brow_height", "brow_gap"),
    "AU2": ("outer_brow_height", "inner_brow_height"),
    "AU4": ("inner_brow_height", "brow_gap"),
    "AU5": ("eye_opening",),
    "AU6": ("lower_lid_height", "eye_opening", "lip_corner_lift"),
    "AU7": ("lower_lid_height", "eye_opening"),
    "AU9": ("nose_height", "nose_to_lip", "inner_brow_height"),
    "AU10": ("nose_to_lip", "lip_thickness"),
    "AU12": ("lip_corner_lift", "mouth_width"),
    "AU15": ("lip_corner_lift", "mouth_width"),
    "AU17": ("chin_to_lip", "lip_thickness"),
    "AU20": ("mouth_width", "lip_corner_lift"),
    "AU23": ("lip_thickness", "mouth_width"),
    "AU25": ("lip_gap",),
    "AU26": ("jaw_drop", "lip_gap"),
}


def face_frame(landmarks) -> np.ndarray:
    """The ``[68, 2]`` landmarks in the face frame (module docstring): eye-midpoint origin, eye-line x axis, iod units."""
    points = check_landmarks(landmarks)
    left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    axis = right - left
    iod = float(np.linalg.norm(axis))
    if iod <= 1e-9:
        raise ValueError("degenerate landmarks: the two eye centres coincide")
    c, s = axis / iod
    rotation = np.array([[c, s], [-s, c]])
    return (points - (left + right) / 2) @ rotation.T / iod


def geometry_features(landmarks) -> np.ndarray:
    """The ``[len(FEATURES)]`` feature vector of one face (formulas in the module docstring)."""
    q = face_frame(landmarks)
    x, y = q[:, 0], q[:, 1]
    values = {
        "inner_brow_height": ((y[39] - y[21]) + (y[42] - y[22])) / 2,
        "outer_brow_height": ((y[36] - (y[17] + y[18]) / 2) + (y[45] - (y[25] + y[26]) / 2)) / 2,
        "brow_gap": x[22] - x[21],
        "eye_opening": ((y[41] - y[37]) + (y[40] - y[38]) + (y[47] - y[43]) + (y[46] - y[44])) / 4,
        "lower_lid_height": (y[36] + y[39] + y[42] + y[45]) / 4 - (y[40] + y[41] + y[46] + y[47]) / 4,
        "lip_corner_lift": y[62] - (y[48] + y[54]) / 2,
        "mouth_width": x[54] - x[48],
        "lip_gap": ((y[67] - y[61]) + (y[66] - y[62]) + (y[65] - y[63])) / 3,
        "jaw_drop": y[8] - y[33],
        "nose_to_lip": y[51] - y[33],
        "nose_height": (y[31] + y[35]) / 2 - y[27],
        "lip_thickness": (y[62] - y[51]) + (y[57] - y[66]),
        "chin_to_lip": y[8] - y[57],
    }
    return np.array([values[name] for name in FEATURES], dtype=np.float64)


@dataclass(frozen=True)
class AULogit:
    """One AU's logistic model over standardised features: ``z = bias + Σ weights[f] · f_std``."""

    bias: float
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GeometryModel:
    """Neutral reference (mean, std per feature) and one :class:`AULogit` per AU."""

    version: str
    neutral_mean: dict[str, float]
    neutral_std: dict[str, float]
    aus: dict[str, AULogit]

    @property
    def au_list(self) -> tuple[str, ...]:
        return tuple(self.aus)

    def standardise(self, features: np.ndarray) -> dict[str, float]:
        """``(f − f^neutral) / σ`` per feature name."""
        return {name: (float(value) - self.neutral_mean[name]) / self.neutral_std[name] for name, value in zip(FEATURES, features)}

    def probabilities(self, landmarks) -> dict[str, float]:
        """``{AU: σ(z)}`` for every AU of the model from ``[68, 2]`` landmarks (module docstring)."""
        return self.probabilities_from_features(geometry_features(landmarks))

    def probabilities_from_features(self, features: np.ndarray) -> dict[str, float]:
        """``{AU: σ(z)}`` from a ``[len(FEATURES)]`` feature vector."""
        standard = self.standardise(features)
        result = {}
        for au, logit in self.aus.items():
            z = logit.bias + sum(weight * standard[name] for name, weight in logit.weights.items())
            result[au] = sigmoid(z)
        return result


def sigmoid(z: float) -> float:
    """``1 / (1 + exp(−z))`` without overflow for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
