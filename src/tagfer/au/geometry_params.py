"""Parameters of the landmark-geometry AU estimate, fitted by :mod:`tagfer.au.calibration` (do not edit by hand).

Regenerate: ``python -m tagfer.au.calibration --write src/tagfer/au/geometry_params.py``.
"""

from tagfer.au.geometry import AULogit, GeometryModel

GEOMETRY_MODEL = GeometryModel(
    version="landmark-geometry-v1",
    neutral_mean={
        "inner_brow_height": 0.36109,
        "outer_brow_height": 0.3374,
        "brow_gap": 0.40237,
        "eye_opening": 0.18546,
        "lower_lid_height": -0.07944,
        "lip_corner_lift": -0.01305,
        "mouth_width": 0.90402,
        "lip_gap": 0.01255,
        "jaw_drop": 0.91849,
        "nose_to_lip": 0.23391,
        "nose_height": 0.80875,
        "lip_thickness": 0.25331,
        "chin_to_lip": 0.41658,
    },
    neutral_std={
        "inner_brow_height": 0.03553,
        "outer_brow_height": 0.03208,
        "brow_gap": 0.04336,
        "eye_opening": 0.02377,
        "lower_lid_height": 0.0214,
        "lip_corner_lift": 0.03537,
        "mouth_width": 0.04454,
        "lip_gap": 0.02437,
        "jaw_drop": 0.06852,
        "nose_to_lip": 0.04666,
        "nose_height": 0.05693,
        "lip_thickness": 0.06253,
        "chin_to_lip": 0.04987,
    },
    aus={
        "AU1": AULogit(bias=-4.8769, weights={"inner_brow_height": 1.9355, "brow_gap": -1.552}),
        "AU2": AULogit(bias=-4.116, weights={"outer_brow_height": 2.2792, "inner_brow_height": 0.3415}),
        "AU4": AULogit(bias=-3.2862, weights={"inner_brow_height": 0.0869, "brow_gap": -2.1529}),
        "AU6": AULogit(bias=-2.1643, weights={"lower_lid_height": 0.4586, "eye_opening": -0.7355, "lip_corner_lift": 0.6714}),
        "AU12": AULogit(bias=-2.6352, weights={"lip_corner_lift": 2.5042, "mouth_width": 0.3951}),
        "AU15": AULogit(bias=-2.3407, weights={"lip_corner_lift": -1.3752, "mouth_width": -0.235}),
        "AU20": AULogit(bias=-5.4968, weights={"mouth_width": 2.1194, "lip_corner_lift": -0.7727}),
        "AU23": AULogit(bias=-0.9139, weights={"lip_thickness": -0.8874, "mouth_width": -1.3718}),
        "AU26": AULogit(bias=-6.4518, weights={"jaw_drop": 0.6271, "lip_gap": 1.0558}),
    },
)
