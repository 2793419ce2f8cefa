"""Tests of the per-model confidence thresholds (mssh_keras.calibration)."""
from __future__ import annotations

import numpy as np
import pytest

from mssh_keras.calibration import calibrate_thresholds, youden_threshold
from mssh_keras.skeleton import LSP14


def test_youden_separable_scores_cut_between_the_classes():
    scores = np.array([0.9, 0.05, 0.2, 0.12, 0.03, 0.15])
    positive = np.array([1, 0, 1, 1, 0, 0], bool)
    t, j = youden_threshold(scores, positive)
    assert j == pytest.approx(2 / 3)  # 0.15 (wrong) sits above 0.12 (right)
    assert t == pytest.approx(0.12)
    t, j = youden_threshold(np.array([0.8, 0.7, 0.1, 0.2]), np.array([1, 1, 0, 0], bool))
    assert (t, j) == (pytest.approx(0.7), pytest.approx(1.0))


def test_youden_ties_are_not_split_and_one_class_is_an_error():
    t, j = youden_threshold(np.array([0.5, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0], bool))
    assert t == 0.5 and j == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both correct and wrong"):
        youden_threshold(np.ones(3), np.ones(3, bool))


def test_calibrated_threshold_follows_the_models_confidence_scale():
    """A model whose right joints peak at ~0.1 and wrong ones at ~0.03 gets a threshold
    between the two, not the 0.3 a well trained model would use."""
    rng = np.random.default_rng(0)
    n = 200
    gt = rng.uniform(50, 150, (n, 14, 2))
    gt[:, 9] = gt[:, 2] + [40.0, 60.0]              # l_shoulder - r_hip: 72 px torso
    right = rng.random((n, 14)) < 0.4
    pred = gt + np.where(right[..., None], 2.0, 60.0)
    conf = np.where(right, rng.normal(0.1, 0.01, (n, 14)), rng.normal(0.03, 0.01, (n, 14)))
    flags = np.full((n, 14), 2)
    flags[:, 0] = 0                                  # unannotated joints do not count
    conf[:, 0] = 5.0
    out = calibrate_thresholds({"pred": pred, "gt": gt, "conf": conf, "flags": flags}, LSP14)
    assert 0.04 < out["joint_threshold"] < 0.09 and out["youden_j"] > 0.9
    assert out["track_threshold"] == out["joint_threshold"]
    assert out["joints_used"] == n * 13


def test_track_threshold_keeps_95_percent_of_present_people():
    """The track threshold is a recall level on present people's pose scores; the share
    of empty crops above it is reported."""
    from mssh_keras.calibration import track_threshold

    present = np.linspace(0.3, 0.5, 101)            # the 5 % quantile: 0.31
    out = track_threshold(present, np.r_[np.full(9, 0.2), 0.35])
    assert out["track_threshold"] == pytest.approx(0.31)
    assert out["track_absent_kept"] == pytest.approx(0.1)
    assert out["track_crops"] == [101, 10]
    merged = calibrate_thresholds(
        {"pred": np.zeros((2, 14, 2)), "gt": np.tile(np.arange(28.0).reshape(14, 2), (2, 1, 1)),
         "conf": np.array([[0.9] * 14, [0.1] * 14]), "flags": np.full((2, 14), 2)},
        LSP14, track=out)
    assert merged["track_threshold"] == out["track_threshold"]


def test_absent_boxes_move_one_side_away_inside_the_frame():
    from mssh_keras.calibration import box_one_side_away

    # A 40 px box: right is inside; at the right edge: left; bigger than the frame: none.
    assert box_one_side_away((30, 30, 70, 70), (200, 200)) == pytest.approx(
        (70.0, 30.0, 110.0, 70.0))
    assert box_one_side_away((170, 30, 210, 70), (200, 200)) == pytest.approx(
        (130.0, 30.0, 170.0, 70.0))
    assert box_one_side_away((-100, -100, 300, 300), (200, 200)) is None
