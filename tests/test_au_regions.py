"""AU region boxes: hand-computed boxes from a known landmark set, clipping, region sharing."""

from __future__ import annotations

import numpy as np
import pytest

from tagfer.core.regions import (
    AU_CENTRES,
    REGION_TEMPLATES,
    au_box,
    au_boxes,
    clip_box,
    landmarks_box,
    region_box,
    ruler,
)
from tagfer.core.vocabulary import AU_LIST, AU_REGION, REGIONS


def known_landmarks() -> np.ndarray:
    """Every point at (50, 50) except the ones the hand computations below use."""
    points = np.full((68, 2), 50.0)
    points[39] = (40, 50)  # inner eye corners: ruler = 20
    points[42] = (60, 50)
    points[21] = (45, 40)  # inner brow ends
    points[22] = (55, 40)
    points[48] = (40, 80)  # mouth corners
    points[54] = (60, 80)
    points[41] = (38, 52)
    points[46] = (62, 52)
    return points


def test_ruler_is_the_inner_eye_corner_distance():
    assert ruler(known_landmarks()) == pytest.approx(20.0)


def test_au1_box_by_hand():
    # centres 21, 22 moved up ruler/2 = 10 → (45, 30), (55, 30); squares of side 20 → (35, 20, 65, 40)
    assert au_box(known_landmarks(), "AU1", (200, 200)) == pytest.approx((35, 20, 65, 40))


def test_au6_box_by_hand():
    # centres 41, 46 moved down one ruler → (38, 72), (62, 72); half side 10
    assert au_box(known_landmarks(), "AU6", (200, 200)) == pytest.approx((28, 62, 72, 82))


def test_au20_is_widened_outward():
    # corners (40, 80), (60, 80) plus points ruler/2 = 10 further out: x from 30 to 70, then ± 10
    assert au_box(known_landmarks(), "AU20", (200, 200)) == pytest.approx((20, 70, 80, 90))
    assert au_box(known_landmarks(), "AU12", (200, 200)) == pytest.approx((30, 70, 70, 90))


def test_boxes_are_clipped_to_the_image():
    # AU1 box (35, 20, 65, 40) in a 60 × 30 image
    assert au_box(known_landmarks(), "AU1", (60, 30)) == pytest.approx((35, 20, 60, 30))
    assert clip_box((-5, -3, 500, 7), 100, 50) == (0.0, 0.0, 100.0, 7.0)


def test_region_box_by_hand():
    points = known_landmarks()
    # inner brow group: points 19..24 and 27; 19, 20, 23, 24, 27 sit at (50, 50), 21 = (45, 40), 22 = (55, 40)
    # bbox (45, 40, 55, 50); pad (left 1/4, top 1/2, right 1/4, bottom 1/4) × 20 = (5, 10, 5, 5)
    assert region_box(points, "inner brow", (200, 200)) == pytest.approx((40, 30, 60, 55))


def test_region_mode_shares_one_box_per_region():
    points = known_landmarks()
    boxes = au_boxes(points, AU_LIST, (200, 200), box_mode="region")
    assert boxes["AU1"] == boxes["AU4"]  # both "inner brow"
    assert boxes["AU12"] == boxes["AU15"] == boxes["AU20"]  # "lip corners"
    assert boxes["AU1"] != boxes["AU12"]
    own = au_boxes(points, AU_LIST, (200, 200), box_mode="au")
    assert own["AU1"] != own["AU4"]


def test_every_vocabulary_region_and_au_has_a_template():
    assert set(REGION_TEMPLATES) == set(REGIONS)
    assert set(AU_CENTRES) == set(AU_LIST) == set(AU_REGION)


def test_unknown_aus_are_left_out_and_bad_input_is_named():
    points = known_landmarks()
    assert "AU45" not in au_boxes(points, ["AU12", "AU45"], (100, 100), box_mode="au")
    assert "AU45" not in au_boxes(points, ["AU12", "AU45"], (100, 100), box_mode="region")
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        ruler(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        ruler(np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match="box_mode"):
        au_boxes(points, ["AU1"], (10, 10), box_mode="face")


def test_landmarks_box():
    assert landmarks_box(known_landmarks()) == (38.0, 40.0, 62.0, 80.0)
