"""``python src/predict.py IMAGE... --checkpoint DIR`` (``tagfer predict``): grounded rationale + label per image.

For each image:

1. the AU detector (``--detector``, default ``builtin``: dlib face + 68 landmarks + the landmark-geometry
   AU estimate) gives the face, AU probabilities and AU region boxes in the photo's pixels. Without a
   detected face the notice says so and the model still runs on the whole image (there are then no
   detector boxes and every AU the model cites counts as hallucinated);
2. the photo is cropped to the detected face (``data.face_crop``; every input counts as a whole photo,
   so ``auto`` crops: :mod:`tagfer.data.face_crop`) and the model answers the task prompt (the classes
   it was trained on) on the crop, greedily;
3. the completion is parsed; its boxes (model space of the crop: norm1000 or resized-input pixels) are
   mapped to crop pixels with the model's :class:`~tagfer.models.space.ModelSpace`, then to the photo's
   pixels (``box_pixels``); grounding is scored in the crop against the detector boxes moved there;
4. the rationale and label are printed (``--json``: one JSON object per line, with ``crop_box``), with
   the grounding faithfulness against the detector, and a PNG of the whole photo with the predicted
   (red) and detector (cyan) boxes is saved under ``--out``.

Settings (pixel bounds, dtype, ``traces.think_tags``, ``au.box_mode``, ``au.threshold``, ``data.face_crop``) come from
``--config``, by default the ``config.yaml`` saved next to the export (``<run_dir>/config.yaml`` for
``<run_dir>/export``), else ``configs/eval.yaml``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tagfer.au.detectors import AUDetector, DetectorSpec
from tagfer.core.config import load_config
from tagfer.core.crop import Window, box_from_crop
from tagfer.core.evidence import AUEvidence
from tagfer.core.records import FaceRecord
from tagfer.core.visualize import draw_grounding
from tagfer.data.face_crop import FaceCrop, apply_face_crop
from tagfer.data.images import CorruptImageError, load_image, reduce_pixels
from tagfer.evaluation.inference import InferenceModel, load_inference_model
from tagfer.metrics import faithfulness_counts, to_json_ready
from tagfer.metrics.predictions import Prediction
from tagfer.models.inputs import boxes_to_model_space, build_generation_inputs


@dataclass
class ImagePrediction:
    """The outcome for one image (``to_json`` is the ``--json`` line)."""

    image: str
    evidence: AUEvidence
    prediction: Prediction
    steps: list[dict]  # region, aus, observation, box (model space of the crop), box_pixels (photo pixels)
    faithfulness: dict
    png: str
    crop_box: Window | None = None  # the face crop the model saw, photo pixels (None: the whole photo)

    def to_json(self, threshold: float) -> dict:
        active = self.evidence.active(threshold)
        return to_json_ready(
            {
                "image": self.image,
                "label": self.prediction.answer,
                "valid": self.prediction.valid,
                "errors": self.prediction.errors,
                "completion": self.prediction.completion,
                "truncated": self.prediction.truncated,
                "steps": self.steps,
                "face_found": self.evidence.face_found,
                "face_box": None if self.evidence.face_box is None else list(self.evidence.face_box),
                "crop_box": None if self.crop_box is None else list(self.crop_box),
                "active_aus": {
                    au: {"prob": p, "box": list(self.evidence.au_box[au])} for au, p in active.items() if au in self.evidence.au_box
                },
                "faithfulness": self.faithfulness,
                "png": self.png,
            }
        )


def drawing_scale(size: tuple[int, int], target: int = 384) -> int:
    """Integer upscaling so the drawn image's longer side reaches about ``target`` px (labels stay legible)."""
    return max(1, math.ceil(target / max(size))) if max(size) < target else 1


def _png_paths(images: Sequence[str], out_dir: Path) -> list[Path]:
    """``<out>/<stem>.png`` per image; repeated stems get ``-2``, ``-3``, ..."""
    paths: list[Path] = []
    for image in images:
        stem, copy = Path(image).stem, 1
        path = out_dir / f"{stem}.png"
        while path in paths:
            copy += 1
            path = out_dir / f"{stem}-{copy}.png"
        paths.append(path)
    return paths


def _save_png(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def _decode(paths: Sequence[str], pngs: Sequence[Path], notify) -> list[tuple[str, Path, FaceRecord, np.ndarray]]:
    """``(path, png, record, pixels)`` of each image that decodes; ``notify`` gets one line per other image."""
    decoded = []
    for path, png in zip(paths, pngs):
        # label 0 is a placeholder: FaceRecord needs one, and neither the detector nor the model reads it.
        record = FaceRecord(id=Path(path).as_posix(), dataset="predict", split="test", label=0, image_path=Path(path))
        try:
            decoded.append((path, png, record, load_image(record)))
        except CorruptImageError as err:
            notify(f"{err}; skipped")
    return decoded


def predict_images(
    engine: InferenceModel,
    detector: AUDetector,
    images: Sequence[str],
    *,
    out_dir: str | os.PathLike,
    max_new_tokens: int,
    batch_size: int = 8,
    threshold: float = 0.5,
    crop: FaceCrop = FaceCrop(),
    detect_max_pixels: int | None = None,
    notify=print,
) -> list[ImagePrediction]:
    """Detect, crop, generate, parse and draw for every image (see the module docstring).

    ``crop`` is ``data.face_crop`` (inputs are whole photos); the detector reads each photo reduced to at
    most ``detect_max_pixels`` (``au.detect_max_pixels``; None: full size). ``notify`` receives the "no face detected"
    notices and, for an image that cannot be decoded (whatever the decoder raised), one line naming it and
    why; that image is left out of the results.
    """
    crop = crop.for_images(whole_photos=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_pngs = _png_paths(images, out_dir)
    results: list[ImagePrediction] = []
    for start in range(0, len(images), batch_size):
        decoded = _decode(images[start : start + batch_size], all_pngs[start : start + batch_size], notify)
        if not decoded:
            continue
        paths, pngs, records, pixels = (list(column) for column in zip(*decoded))
        # detection on at most detect_max_pixels (a 100-MP photo in seconds), landmarks and boxes in original pixels
        evidence = [detector.detect_decoded(reduce_pixels(image, detect_max_pixels), record) for image, record in zip(pixels, records)]
        for path, found in zip(paths, evidence):
            if not found.face_found:
                notify(
                    f"{path}: no face detected by the {detector.name} detector; the model sees the whole image and there are no detector boxes"
                )
        served = [apply_face_crop(crop, record, image, found) for record, image, found in zip(records, pixels, evidence)]
        inputs = build_generation_inputs(engine.processor, [image for image, _, _ in served], [engine.prompt] * len(paths))
        predictions = engine.predict(inputs, max_new_tokens=max_new_tokens)
        for path, image, found, view, prediction, png in zip(paths, pixels, evidence, served, predictions, pngs):
            results.append(_finish(engine, path, image, found, view, prediction, png, threshold))
    return results


def _finish(
    engine: InferenceModel,
    path: str,
    image: np.ndarray,
    evidence: AUEvidence,
    view: tuple[np.ndarray, AUEvidence, Window | None],
    prediction: Prediction,
    png: Path,
    threshold: float,
) -> ImagePrediction:
    """Map the completion's boxes from the crop the model saw (``view``: image, evidence, window) to the
    photo, score grounding in the crop, draw on the photo."""
    served, served_evidence, window = view
    served_size = (int(served.shape[1]), int(served.shape[0]))
    size = (int(image.shape[1]), int(image.shape[0]))
    steps = []
    for step in prediction.trace.steps:
        box_pixels = None
        if step.box is not None:
            box_pixels = engine.space.to_pixels(step.box, served_size)
            box_pixels = box_pixels if window is None else box_from_crop(box_pixels, window)
        steps.append(
            {"region": step.region, "aus": list(step.aus), "observation": step.observation, "box": step.box, "box_pixels": box_pixels}
        )
    model_boxes = boxes_to_model_space(served_evidence.au_box, served_size, engine.space.input_size(served_size), engine.space.convention)
    counts = faithfulness_counts(prediction.trace, evidence.au_prob, model_boxes, prediction.answer, threshold=threshold)
    predicted = [(",".join(s["aus"]) or s["region"], s["box_pixels"]) for s in steps if s["box_pixels"] is not None]
    detector_boxes = {au: evidence.au_box[au] for au in evidence.active(threshold) if au in evidence.au_box}
    caption = f"pred: {prediction.answer or '-'}" + ("" if evidence.face_found else " (no face detected)")
    _save_png(draw_grounding(image, predicted, detector_boxes, caption=caption, scale=drawing_scale(size)), png)
    return ImagePrediction(
        image=path, evidence=evidence, prediction=prediction, steps=steps, faithfulness=counts.to_json(), png=str(png), crop_box=window
    )


def format_text(result: ImagePrediction, threshold: float) -> str:
    """The human-readable block printed per image."""
    evidence, prediction = result.evidence, result.prediction
    active = ", ".join(f"{au} {p:.2f}" for au, p in evidence.active(threshold).items()) or "none"
    face = f"face found, active AUs: {active}" if evidence.face_found else "no face detected (model ran on the whole image)"
    status = "valid trace" if prediction.valid else "format errors: " + "; ".join(prediction.errors)
    faith = result.faithfulness
    iou = "–" if faith["mean_iou"] is None else f"{faith['mean_iou']:.2f}"
    return "\n".join(
        [
            f"== {result.image} ==",
            face,
            (prediction.completion or "").strip(),
            f"label: {prediction.answer or '(none)'} ({status})",
            f"grounding: {faith['cited']} AUs cited, {faith['cited_active']} active, mean IoU {iou}, {faith['hallucinated']} hallucinated",
            f"saved: {result.png}",
        ]
    )


def run_predict(args: argparse.Namespace, config: str) -> int:
    """The ``predict`` command (arguments: :func:`tagfer.evaluation.commands.add_predict_arguments`;
    ``config``: the run config it resolved, :func:`tagfer.evaluation.commands.predict_config_path`)."""
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:
        print(f"tagfer predict: no such image file(s): {missing}", file=sys.stderr)
        return 2
    cfg = load_config(config)
    detector = DetectorSpec(args.detector, box_mode=cfg.au.box_mode, external=args.external, crop_fallback=args.crop_fallback).create()
    engine = load_inference_model(
        cfg.model, checkpoint=args.checkpoint, think_tags=cfg.traces.think_tags, accelerator=cfg.trainer.accelerator
    )
    threshold = float(cfg.au.threshold)
    results = predict_images(
        engine,
        detector,
        args.images,
        out_dir=args.out,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        threshold=threshold,
        crop=FaceCrop.from_config(cfg.data.face_crop),
        detect_max_pixels=cfg.au.detect_max_pixels,
        notify=lambda text: print(text, file=sys.stderr if args.json else sys.stdout),
    )
    for result in results:
        print(json.dumps(result.to_json(threshold), ensure_ascii=False) if args.json else format_text(result, threshold) + "\n")
    return 0 if len(results) == len(args.images) else 1  # 1: some image could not be decoded (told above)
