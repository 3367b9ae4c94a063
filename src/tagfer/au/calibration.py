"""Calibrate the landmark-geometry AU estimate on synthetic faces, where the AU truth is known.

The synthetic generator (:mod:`tagfer.data.synthetic_faces`) places 68 landmarks exactly where an AU
moves them; its AU intensities are the truth. Calibration:

1. Draw ``n`` faces (classes uniform, the generator's own AU sampling, identity and pose); take their
   exact landmarks and add Gaussian jitter of ``jitter × iod`` pixels per coordinate — a stand-in for
   landmark-detector error and for the identity variation real faces have and the generator lacks.
2. Neutral reference: mean and standard deviation of every feature over faces with no AU at all.
3. Per candidate AU (:data:`tagfer.au.geometry.AU_FEATURES`), a logistic regression of "intensity ≥ 0.5"
   on its standardised features, L2 penalty ``1/C``, classes weighted inversely to their frequency (so
   ``p ≥ 0.5`` is the balanced decision, not one skewed towards "absent" for rare AUs).
4. Keep only the AUs geometry can see: ROC AUC ≥ ``min_auc`` on a held-out jittered set. The others
   (e.g. AU5, AU17, AU25 at the shipped settings) are left out of ``au_list`` rather than guessed.

Run ``python -m tagfer.au.calibration --write src/tagfer/au/geometry_params.py`` to refit and rewrite
the shipped parameters; it prints the per-AU agreement on a fresh, unjittered set. scikit-learn (the
``dev`` extra) does the fitting.
"""

from __future__ import annotations

import argparse
import pprint

import numpy as np

from tagfer.au.geometry import AU_FEATURES, FEATURES, AULogit, GeometryModel, geometry_features
from tagfer.core.classes import CLASS_NAMES


def synthetic_samples(n: int, seed: int, jitter: float = 0.0, image_size: int = 112):
    """``(features [n, F], intensity {AU: [n]})`` of ``n`` synthetic faces (landmarks only, no rendering)."""
    from tagfer.data.synthetic_faces import face_landmarks, sample_face

    rng = np.random.default_rng(seed)
    features, intensities = [], []
    for i in range(n):
        spec = sample_face(rng, CLASS_NAMES[i % len(CLASS_NAMES)], image_size)
        points = face_landmarks(spec)
        if jitter > 0:
            iod = np.linalg.norm(points[36:42].mean(axis=0) - points[42:48].mean(axis=0))
            points = points + rng.normal(0.0, jitter * iod, points.shape)
        features.append(geometry_features(points))
        intensities.append(spec.au_intensity)
    aus = sorted({au for item in intensities for au in item})
    return np.array(features), {au: np.array([item.get(au, 0.0) for item in intensities]) for au in aus}


def fit_geometry_model(features: np.ndarray, intensity: dict[str, np.ndarray], version: str, C: float = 1.0) -> GeometryModel:
    """Neutral reference + one class-balanced logistic regression per AU of :data:`AU_FEATURES` (steps 2–3)."""
    from sklearn.linear_model import LogisticRegression

    neutral = np.all(np.stack([values for values in intensity.values()]) == 0.0, axis=0)
    if neutral.sum() < 10:
        raise ValueError(f"only {int(neutral.sum())} AU-free faces to take the neutral reference from; draw more samples")
    mean = features[neutral].mean(axis=0)
    std = np.maximum(features[neutral].std(axis=0), 1e-3)
    standard = (features - mean) / std
    logits = {}
    for au, names in AU_FEATURES.items():
        columns = [FEATURES.index(name) for name in names]
        model = LogisticRegression(C=C, max_iter=1000, class_weight="balanced")
        model.fit(standard[:, columns], intensity[au] >= 0.5)
        logits[au] = AULogit(
            bias=round(float(model.intercept_[0]), 4),
            weights={name: round(float(w), 4) for name, w in zip(names, model.coef_[0])},
        )
    return GeometryModel(
        version=version,
        neutral_mean={name: round(float(v), 5) for name, v in zip(FEATURES, mean)},
        neutral_std={name: round(float(v), 5) for name, v in zip(FEATURES, std)},
        aus=logits,
    )


def select_visible(model: GeometryModel, features: np.ndarray, intensity: dict[str, np.ndarray], min_auc: float) -> GeometryModel:
    """``model`` restricted to the AUs whose ROC AUC on (held-out) ``features`` is at least ``min_auc`` (step 4)."""
    report = agreement(model, features, intensity)
    kept = {au: logit for au, logit in model.aus.items() if report[au]["auc"] >= min_auc}
    return GeometryModel(model.version, model.neutral_mean, model.neutral_std, kept)


def agreement(model: GeometryModel, features: np.ndarray, intensity: dict[str, np.ndarray], threshold: float = 0.5) -> dict[str, dict]:
    """Per AU: positives (intensity ≥ threshold), accuracy, balanced accuracy and F1 of ``p ≥ threshold``,
    ROC AUC of ``p``, and the Pearson correlation of ``p`` with the intensity."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    probs = [model.probabilities_from_features(row) for row in features]
    report = {}
    for au in model.au_list:
        p = np.array([item[au] for item in probs])
        truth = intensity[au] >= threshold
        predicted = p >= threshold
        both = truth.any() and (~truth).any()
        report[au] = {
            "positives": int(truth.sum()),
            "accuracy": float((predicted == truth).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)) if both else float("nan"),
            "f1": float(f1_score(truth, predicted, zero_division=0.0)),
            "auc": float(roc_auc_score(truth, p)) if both else float("nan"),
            "pearson": float(np.corrcoef(p, intensity[au])[0, 1]),
        }
    return report


def model_source(model: GeometryModel) -> str:
    """Python source of ``geometry_params.py`` holding ``model``."""
    aus = ",\n".join(f"        {au!r}: AULogit(bias={logit.bias!r}, weights={logit.weights!r})" for au, logit in model.aus.items())
    return (
        '"""Parameters of the landmark-geometry AU estimate, fitted by :mod:`tagfer.au.calibration` (do not edit by hand).\n\n'
        "Regenerate: ``python -m tagfer.au.calibration --write src/tagfer/au/geometry_params.py``.\n"
        '"""\n\n'
        "from tagfer.au.geometry import AULogit, GeometryModel\n\n"
        "GEOMETRY_MODEL = GeometryModel(\n"
        f"    version={model.version!r},\n"
        f"    neutral_mean={pprint.pformat(model.neutral_mean, width=100, sort_dicts=False)},\n"
        f"    neutral_std={pprint.pformat(model.neutral_std, width=100, sort_dicts=False)},\n"
        "    aus={\n" + aus + ",\n    },\n)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--eval-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jitter", type=float, default=0.03, help="landmark jitter, fraction of the inter-ocular distance")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 penalty of the logistic regressions")
    parser.add_argument("--min-auc", type=float, default=0.85, help="keep AUs with at least this held-out ROC AUC")
    parser.add_argument("--version", default="landmark-geometry-v1")
    parser.add_argument("--write", help="write the fitted parameters as Python source to this file")
    args = parser.parse_args(argv)
    features, intensity = synthetic_samples(args.samples, args.seed, args.jitter)
    model = fit_geometry_model(features, intensity, args.version, C=args.C)
    held_out = synthetic_samples(args.eval_samples, args.seed + 1, args.jitter)
    model = select_visible(model, *held_out, args.min_auc)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write(model_source(model))
    for title, jitter in (("exact landmarks", 0.0), (f"landmarks jittered by {args.jitter} iod", args.jitter)):
        print(f"agreement on {args.eval_samples} fresh synthetic faces, {title} (truth: intensity >= 0.5)")
        print_agreement(agreement(model, *synthetic_samples(args.eval_samples, args.seed + 2, jitter)))
    return 0


def print_agreement(report: dict[str, dict]) -> None:
    print(f"{'AU':6s} {'pos':>5s} {'acc':>6s} {'bal.acc':>7s} {'F1':>6s} {'AUC':>6s} {'r':>6s}")
    for au, row in report.items():
        print(
            f"{au:6s} {row['positives']:5d} {row['accuracy']:6.3f} {row['balanced_accuracy']:7.3f} "
            f"{row['f1']:6.3f} {row['auc']:6.3f} {row['pearson']:6.3f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
