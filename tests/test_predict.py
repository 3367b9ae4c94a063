"""predict: builtin detector + tiny model on a synthetic face, a real photo and an image without a face;
PNGs with predicted and detector boxes, text and JSON output, boxes mapped from model space to pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tagfer.evaluation.commands import predict_config_path
from tagfer.evaluation.predict import drawing_scale

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A synthetic happy face, the astronaut portrait fixture and a flat grey image (no face)."""
    from tagfer.data.synthetic_faces import make_face

    folder = tmp_path_factory.mktemp("predict-images")
    face = make_face(np.random.default_rng(3), "happiness", 160)
    Image.fromarray(face.image).save(folder / "synthetic_face.png")
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(folder / "blank.png")
    return {"synthetic": folder / "synthetic_face.png", "photo": FIXTURES / "astronaut_face.jpg", "blank": folder / "blank.png"}


def test_drawing_scale_keeps_small_faces_legible():
    assert drawing_scale((112, 112)) == 4 and drawing_scale((100, 300)) == 2 and drawing_scale((640, 480)) == 1


def test_predict_config_defaults_to_the_run_config_next_to_the_export(tmp_path):
    from argparse import Namespace

    (tmp_path / "run" / "export").mkdir(parents=True)
    args = Namespace(config=None, checkpoint=str(tmp_path / "run" / "export"))
    assert predict_config_path(args).endswith("eval.yaml")
    (tmp_path / "run" / "config.yaml").write_text("stage: sft\n")
    assert predict_config_path(args) == str((tmp_path / "run" / "config.yaml").resolve())
    assert predict_config_path(Namespace(config="mine.yaml", checkpoint="x")) == "mine.yaml"


def _run(tiny_qwen2_vl_dir, images, out_dir, *extra):
    """``tagfer predict`` with configs/eval.yaml (pixel bounds, AU settings) and the tiny model as checkpoint."""
    from tagfer.cli import main

    config = Path(__file__).parents[1] / "configs" / "eval.yaml"
    argv = ["predict", *map(str, images), "--checkpoint", str(tiny_qwen2_vl_dir), "--config", str(config)]
    return main([*argv, "--out", str(out_dir), "--max-new-tokens", "8", *extra])


def test_predict_prints_json_and_saves_annotated_pngs(tiny_qwen2_vl_dir, tmp_path, images, capsys):
    code = _run(tiny_qwen2_vl_dir, [images["synthetic"], images["photo"], images["blank"]], tmp_path / "png", "--json")
    assert code == 0
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [Path(r["image"]).name for r in results] == ["synthetic_face.png", "astronaut_face.jpg", "blank.png"]
    assert [r["face_found"] for r in results] == [True, True, False]
    assert "blank.png: no face detected" in captured.err
    for result, source in zip(results, (images["synthetic"], images["photo"], images["blank"])):
        png = Path(result["png"])
        assert png.parent == tmp_path / "png" and png.is_file()
        with Image.open(source) as original, Image.open(png) as drawn:
            assert drawn.width == original.width * drawing_scale(original.size)
        assert set(result["faithfulness"]) >= {"cited", "mean_iou", "hallucination_rate"}
        for info in result["active_aus"].values():
            assert info["prob"] >= 0.5 and len(info["box"]) == 4
    photo = results[1]
    assert photo["active_aus"] or photo["face_box"]  # the dlib face of the real photo
    x1, y1, x2, y2 = photo["face_box"]
    with Image.open(images["photo"]) as original:
        assert 0 <= x1 < x2 <= original.width and 0 <= y1 < y2 <= original.height


def test_predict_text_output_names_label_and_grounding(tiny_qwen2_vl_dir, tmp_path, images, capsys):
    assert _run(tiny_qwen2_vl_dir, [images["synthetic"]], tmp_path / "png") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"== {images['synthetic']} ==") and "face found, active AUs:" in out
    assert "label: " in out and "grounding: " in out and f"saved: {tmp_path / 'png' / 'synthetic_face.png'}" in out


def test_an_image_that_cannot_be_decoded_gets_one_line_and_the_others_are_predicted(tiny_qwen2_vl_dir, tmp_path, images, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    assert _run(tiny_qwen2_vl_dir, [broken, images["synthetic"]], tmp_path / "png", "--json") == 1
    captured = capsys.readouterr()
    assert [Path(json.loads(line)["image"]).name for line in captured.out.strip().splitlines()] == ["synthetic_face.png"]
    assert f"{broken}: cannot decode image (UnidentifiedImageError: cannot identify image file '{broken}'); skipped\n" in captured.err
    assert (tmp_path / "png" / "synthetic_face.png").is_file() and not (tmp_path / "png" / "broken.png").exists()


def test_predict_maps_model_boxes_to_pixels(tiny_qwen2_vl_dir, tmp_path, images):
    """A scripted completion citing a norm1000 box comes back in image pixels and is scored against the detector."""
    from fixtures_models import tiny_model_cfg
    from tagfer.au.detectors import create_detector
    from tagfer.data.face_crop import FaceCrop
    from tagfer.evaluation.inference import load_inference_model
    from tagfer.evaluation.predict import predict_images
    from tagfer.metrics.predictions import Prediction

    engine = load_inference_model(tiny_model_cfg(tiny_qwen2_vl_dir), checkpoint=None, think_tags=False, accelerator="cpu")
    text = (
        "Global analysis: A smile.\nVerification loop:\n"
        "Inspect lip corners (AU12) → corners pulled up → <bbox>[250,500,750,1000]</bbox>\n"
        "Final conclusion: Combined AU12 indicate a dominant emotion of happiness.\n<answer> happiness </answer>"
    )
    engine.predict = lambda inputs, max_new_tokens: [Prediction.from_completion(text)] * inputs["input_ids"].shape[0]
    whole = FaceCrop(source="none")  # the model sees the whole image (tests/test_face_crop.py: with the crop)
    (result,) = predict_images(
        engine, create_detector("builtin"), [str(images["synthetic"])], out_dir=tmp_path, max_new_tokens=4, crop=whole
    )
    assert result.prediction.answer == "happiness" and result.prediction.valid and result.crop_box is None
    (step,) = result.steps
    assert step["box_pixels"] == pytest.approx((40.0, 80.0, 120.0, 160.0))  # 160-px image, norm1000 → pixels
    assert result.faithfulness["cited"] == 1 and result.faithfulness["active"] >= 1
    assert Path(result.png).is_file()
