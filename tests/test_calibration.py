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
