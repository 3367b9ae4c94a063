"""Detectors: OpenFace / py-feat importers on fixture CSVs in their real column layouts, the synthetic
truth, dataset landmarks, dlib + geometry on a real photo (NASA astronaut portrait, public domain), registry."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from tagfer.au.detectors import DetectorSpec, create_detector
from tagfer.au.detectors.external import NameMatcher, read_csv_rows
from tagfer.au.detectors.openface import openface_probability
from tagfer.core.records import FaceRecord
from tagfer.core.regions import landmarks_box
from tagfer.core.vocabulary import AU_LIST
from tagfer.data.face_geometry import deform, to_image

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = np.zeros((200, 240, 3), dtype=np.uint8)

OPENFACE_R = [
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
    "AU45",
]
OPENFACE_C = sorted(OPENFACE_R + ["AU28"])
PYFEAT_AUS_XGB = [
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU11",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU24",
    "AU25",
    "AU26",
    "AU28",
    "AU43",
]
PYFEAT_AUS_SVM = ["AU01", "AU02", "AU04", "AU06", "AU07", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"]
EMOTIONS = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]


def face_points(centre=(120.0, 100.0), scale=60.0, aus=None) -> np.ndarray:
    return to_image(deform(aus or {}), scale, 0.0, centre)


def record(record_id: str, **kw) -> FaceRecord:
    return FaceRecord(id=record_id, dataset="rafdb", split="test", label=0, **kw)


# ------------------------------------------------------------------------------------------ OpenFace
def openface_header() -> list[str]:
    """FaceLandmarkImg -aus (all outputs on): the RecorderCSV column order of OpenFace 2.x."""
    cols = ["face", "confidence"]
    cols += ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    for name in ("eye_lmk_x_", "eye_lmk_y_", "eye_lmk_X_", "eye_lmk_Y_", "eye_lmk_Z_"):
        cols += [f"{name}{i}" for i in range(56)]
    cols += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    cols += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    cols += [f"{a}_{i}" for a in ("X", "Y", "Z") for i in range(68)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
    cols += [f"{au}_r" for au in OPENFACE_R] + [f"{au}_c" for au in OPENFACE_C]
    return cols


def openface_row(header, face_id, confidence, points, intensity: dict, presence: dict) -> list[str]:
    values = {"face": face_id, "confidence": confidence}
    values.update({f"x_{i}": points[i, 0] for i in range(68)})
    values.update({f"y_{i}": points[i, 1] for i in range(68)})
    values.update({f"{au}_r": intensity.get(au, 0.0) for au in OPENFACE_R})
    values.update({f"{au}_c": presence.get(au, 0.0) for au in OPENFACE_C})
    # eye landmarks look like face landmarks to a careless parser: give them wrong values on purpose
    values.update({f"eye_lmk_x_{i}": -999.0 for i in range(56)})
    return [f"{values.get(name, 0.5):.3f}" if not isinstance(values.get(name), int) else str(values[name]) for name in header]


def write_openface(path: Path, rows: list[list[str]], header: list[str], separator: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(separator.join(line) for line in [header, *rows]) + "\n")


@pytest.fixture
def openface_dir(tmp_path) -> Path:
    out = tmp_path / "openface"
    header = openface_header()
    small, big = face_points((60, 60), 30), face_points((150, 100), 60, {"AU12": 1.0})
    # two faces: the second has the higher confidence and must win
    write_openface(
        out / "train_00001_aligned.csv",
        [
            openface_row(header, 0, 0.55, small, {"AU04": 4.0}, {"AU04": 1}),
            openface_row(header, 1, 0.98, big, {"AU12": 2.5, "AU06": 1.0}, {"AU12": 1, "AU45": 1}),
        ],
        header,
    )
    # older build: ", " separators, names with a leading space
    write_openface(out / "train_00002_aligned.csv", [openface_row(header, 0, 0.9, big, {"AU01": 5.0}, {"AU01": 1})], header, ", ")
    # image where OpenFace found no face: header only
    write_openface(out / "train_00003_aligned.csv", [], header)
    return out


def test_openface_importer_picks_the_most_confident_face(openface_dir):
    detector = create_detector("openface", external=str(openface_dir))
    assert detector.au_list == (
        "AU1",
        "AU2",
        "AU4",
        "AU5",
        "AU6",
        "AU7",
        "AU9",
        "AU10",
        "AU12",
        "AU14",
        "AU15",
        "AU17",
        "AU20",
        "AU23",
        "AU25",
        "AU26",
    )
    evidence = detector.detect(IMAGE, record("Image/aligned/train_00001_aligned.jpg"))
    assert evidence.face_found and evidence.face_score == pytest.approx(0.98)
    np.testing.assert_allclose(evidence.landmarks, face_points((150, 100), 60, {"AU12": 1.0}), atol=1e-3)
    assert evidence.face_box == pytest.approx(landmarks_box(evidence.landmarks), abs=1e-3)
    assert evidence.au_prob["AU12"] == pytest.approx((1 + 2.5 / 5) / 2)  # presence and intensity
    assert evidence.au_prob["AU6"] == pytest.approx((0 + 1.0 / 5) / 2)
    assert evidence.au_prob["AU4"] == pytest.approx(0.0)  # the other face's AU4 is not taken
    assert "AU45" not in evidence.au_prob and "AU28" not in evidence.au_prob
    assert set(evidence.au_box) == set(AU_LIST)
    assert all(0 <= v for box in evidence.au_box.values() for v in box)


def test_openface_importer_reads_the_comma_space_variant(openface_dir):
    header, rows = read_csv_rows(openface_dir / "train_00002_aligned.csv")
    assert header[:3] == ["face", "confidence", "gaze_0_x"] and "AU01_r" in header
    evidence = create_detector("openface", external=str(openface_dir)).detect(IMAGE, record("Image/aligned/train_00002_aligned.jpg"))
    assert evidence.au_prob["AU1"] == pytest.approx(1.0)
    assert evidence.face_score == pytest.approx(0.9)


def test_openface_no_face_and_missing_output(openface_dir):
    detector = create_detector("openface", external=str(openface_dir))
    assert not detector.detect(IMAGE, record("Image/aligned/train_00003_aligned.jpg")).face_found
    assert not detector.detect(IMAGE, record("Image/aligned/train_09999_aligned.jpg")).face_found
    records = [record(f"Image/aligned/train_0000{i}_aligned.jpg") for i in (1, 2, 3, 4)]
    assert detector.missing(records) == ["Image/aligned/train_00004_aligned.jpg"]


def test_openface_video_layout_skips_failed_frames(tmp_path):
    header = ["frame", "face_id", "timestamp", "confidence", "success"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    header += [f"{au}_r" for au in OPENFACE_R] + [f"{au}_c" for au in OPENFACE_C]
    points = face_points()

    def row(confidence, success, au12):
        values = {"frame": 1, "face_id": 0, "timestamp": 0.0, "confidence": confidence, "success": success, "AU12_r": au12}
        values.update({f"x_{i}": points[i, 0] for i in range(68)} | {f"y_{i}": points[i, 1] for i in range(68)})
        return [str(values.get(name, 0)) for name in header]

    write_openface(tmp_path / "clip.csv", [row(0.99, 0, 5.0), row(0.7, 1, 2.0)], header, ", ")
    evidence = create_detector("openface", external=str(tmp_path)).detect(IMAGE, record("clip.jpg"))
    assert evidence.face_score == pytest.approx(0.7)
    assert evidence.au_prob["AU12"] == pytest.approx((0 + 2.0 / 5) / 2)


def test_openface_probability_formula():
    assert openface_probability(5.0, 1.0) == 1.0
    assert openface_probability(0.0, 1.0) == 0.5
    assert openface_probability(7.0, math.nan) == 1.0
    assert openface_probability(-1.0, math.nan) == 0.0
    assert openface_probability(math.nan, 1.0) == 1.0
    assert math.isnan(openface_probability(math.nan, math.nan))


# ------------------------------------------------------------------------------------------- py-feat
def pyfeat_rows(header, rows):
    lines = [",".join(header)]
    for values in rows:
        lines.append(",".join(str(values.get(name, "")) for name in header))
    return "\n".join(lines) + "\n"


def pyfeat_values(points, box, score, aus, image_input, frame=0):
    values = {"FaceRectX": box[0], "FaceRectY": box[1], "FaceRectWidth": box[2], "FaceRectHeight": box[3], "FaceScore": score}
    values.update({f"x_{i}": points[i, 0] for i in range(68)} | {f"y_{i}": points[i, 1] for i in range(68)})
    values.update({"Pitch": 1.0, "Roll": -2.0, "Yaw": 0.5, "input": image_input, "frame": frame})
    values.update(aus)
    values.update({e: 1 / 7 for e in EMOTIONS})
    return values


@pytest.fixture
def pyfeat_csv(tmp_path) -> Path:
    # Detector.detect_image(...).to_csv(path): pandas index column first, then the Fex columns
    header = ["", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
    header += [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)] + ["Pitch", "Roll", "Yaw"]
    header += PYFEAT_AUS_XGB + EMOTIONS + ["input", "frame"]
    near, far = face_points((60, 60), 30), face_points((150, 100), 60)
    rows = [
        {"": 0, **pyfeat_values(near, (30, 30, 60, 70), 0.91, {"AU12": 0.2, "AU04": 0.9}, "/data/raf/Image/aligned/test_0001_aligned.jpg")},
        {
            "": 1,
            **pyfeat_values(
                far, (90, 40, 120, 130), 0.99, {"AU12": 0.8, "AU04": 0.1, "AU43": 0.7}, "/data/raf/Image/aligned/test_0001_aligned.jpg"
            ),
        },
        # an image without a face: py-feat writes one row of NaNs
        {
            "": 2,
            **{k: "nan" for k in header if k not in ("", "input", "frame")},
            "input": "/data/raf/Image/aligned/test_0002_aligned.jpg",
            "frame": 0,
        },
        # same file name in two folders: matched by the longer path
        {"": 3, **pyfeat_values(far, (90, 40, 120, 130), 0.95, {"AU12": 0.3}, "C:\\faces\\a\\img.png")},
        {"": 4, **pyfeat_values(far, (90, 40, 120, 130), 0.95, {"AU12": 0.6}, "C:\\faces\\b\\img.png")},
    ]
    path = tmp_path / "fex.csv"
    path.write_text(pyfeat_rows(header, rows))
    return path


def test_pyfeat_importer_best_face_box_and_aus(pyfeat_csv):
    detector = create_detector("pyfeat", external=str(pyfeat_csv))
    assert detector.au_list == (
        "AU1",
        "AU2",
        "AU4",
        "AU5",
        "AU6",
        "AU7",
        "AU9",
        "AU10",
        "AU12",
        "AU14",
        "AU15",
        "AU17",
        "AU20",
        "AU23",
        "AU24",
        "AU25",
        "AU26",
    )
    evidence = detector.detect(IMAGE, record("Image/aligned/test_0001_aligned.jpg"))
    assert evidence.face_found and evidence.face_score == pytest.approx(0.99)
    assert evidence.face_box == pytest.approx((90, 40, 210, 170))
    assert evidence.au_prob["AU12"] == pytest.approx(0.8) and evidence.au_prob["AU4"] == pytest.approx(0.1)
    np.testing.assert_allclose(evidence.landmarks, face_points((150, 100), 60), atol=1e-4)
    assert set(evidence.au_box) == set(AU_LIST)


def test_pyfeat_no_face_unmatched_and_path_disambiguation(pyfeat_csv):
    detector = create_detector("pyfeat", external=str(pyfeat_csv))
    assert not detector.detect(IMAGE, record("Image/aligned/test_0002_aligned.jpg")).face_found
    assert detector.missing([record("Image/aligned/test_0002_aligned.jpg"), record("Image/aligned/test_0003_aligned.jpg")]) == [
        "Image/aligned/test_0003_aligned.jpg"
    ]
    assert detector.detect(IMAGE, record("b/img.jpg")).au_prob["AU12"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="several external outputs"):
        detector.detect(IMAGE, record("img.png"))


def test_pyfeat_older_layout_frame_first_svm_aus(tmp_path):
    header = ["frame", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore"]
    header += (
        [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)] + PYFEAT_AUS_SVM + ["Pitch", "Roll", "Yaw"] + EMOTIONS + ["input"]
    )
    path = tmp_path / "old.csv"
    path.write_text(pyfeat_rows(header, [pyfeat_values(face_points(), (60, 40, 120, 120), 0.97, {"AU06": 0.7}, "F:\\x\\face.jpg", 0.0)]))
    detector = create_detector("pyfeat", external=str(tmp_path))
    assert detector.au_list == ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
    assert detector.detect(IMAGE, record("faces/face.jpg")).au_prob["AU6"] == pytest.approx(0.7)


def test_pyfeat_rejects_other_csvs(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a py-feat Fex CSV"):
        create_detector("pyfeat", external=str(tmp_path / "x.csv"))


def test_name_matcher_prefers_path_suffix_and_strips_extensions():
    matcher = NameMatcher(["out/a/img.csv", "out/b/img.csv", "out/c/other.csv"])
    assert matcher.match("b/img.jpg") == "out/b/img.csv"
    assert matcher.match("x/other.png") == "out/c/other.csv"
    assert matcher.match("missing.jpg") is None


# ------------------------------------------------------------------------------ landmarks / synthetic
def test_synthetic_truth_passes_the_generator_annotations():
    points = face_points(aus={"AU12": 0.8})
    rec = record(
        "train/images/000001.png", landmarks=points, face_box=(10, 10, 200, 190), extra={"au_intensity": {"AU12": 0.8, "AU6": 0.4}}
    )
    evidence = create_detector("synthetic", box_mode="au").detect(IMAGE, rec)
    assert evidence.au_prob["AU12"] == pytest.approx(0.8) and evidence.au_prob["AU6"] == pytest.approx(0.4)
    assert evidence.au_prob["AU4"] == 0.0 and set(evidence.au_prob) == set(AU_LIST)
    assert evidence.face_box == (10, 10, 200, 190)
    assert evidence.au_box["AU12"] != evidence.au_box["AU20"]  # box_mode="au": own boxes
    with pytest.raises(ValueError, match="synthetic ground truth"):
        create_detector("synthetic").detect(IMAGE, record("x.jpg"))


def test_dataset_landmarks_detector_uses_the_geometry_estimate():
    detector = create_detector("dataset_landmarks")
    assert "landmark-geometry" in detector.version
    smile = detector.detect(IMAGE, record("a.jpg", landmarks=face_points(aus={"AU12": 1.0}), face_box=(1, 2, 3, 4)))
    neutral = detector.detect(IMAGE, record("b.jpg", landmarks=face_points()))
    assert smile.face_box == (1, 2, 3, 4) and smile.au_prob["AU12"] > 0.9 > 0.1 > neutral.au_prob["AU12"]
    assert not detector.detect(IMAGE, record("c.jpg")).face_found
    assert not detector.detect(IMAGE, record("d.jpg", landmarks=np.zeros((68, 2)))).face_found  # degenerate


def test_builtin_detector_on_a_real_smiling_face():
    pytest.importorskip("dlib")
    image = cv2.cvtColor(cv2.imread(str(FIXTURES / "astronaut_face.jpg")), cv2.COLOR_BGR2RGB)
    detector = create_detector("builtin")
    assert detector.version.startswith("landmark-geometry-v1+dlib-")
    evidence = detector.detect(image, record("astronaut_face.jpg"))
    assert evidence.face_found and 0.5 < evidence.face_score <= 1.0
    x1, y1, x2, y2 = evidence.face_box
    assert 20 < x1 < x2 < 160 and 20 < y1 < y2 < 170  # the face is in the middle of the 180 × 180 crop
    assert evidence.au_prob["AU12"] > 0.8  # she smiles
    assert evidence.au_prob["AU4"] < 0.2 and evidence.au_prob["AU15"] < 0.2
    blank = np.full((120, 120, 3), 128, dtype=np.uint8)
    assert not detector.detect(blank, record("blank.png")).face_found


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown AU detector"):
        DetectorSpec("mediapipe")
    with pytest.raises(ValueError, match="--external"):
        DetectorSpec("openface")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_detector("openface", external="/nonexistent/openface")
