"""Confidence thresholds fitted to one model on validation people.

Why: a heatmap peak is only a confidence on the scale the model learned. A well trained
hourglass peaks near 1 on joints it finds; a briefly trained one peaks at 0.05-0.2 even
when right. A fixed threshold (0.3) then hides every joint and never lets the demo's
tracker lock on. The threshold that best separates correct from wrong joints on the
validation split (Youden's J: max of true-positive rate minus false-positive rate, with
"correct" = within PCK@0.2) is a property of the model, so it ships in its metadata.
"""
from __future__ import annotations

import numpy as np

from .data.records import MISSING
from .metrics import pck_hits, torso_lengths
from .skeleton import Skeleton


def youden_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(threshold, J) maximising TPR - FPR for ``scores >= threshold`` predicting
    ``positive``. Needs both classes."""
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("calibration needs both correct and wrong joints; got "
                         f"{n_pos} correct and {n_neg} wrong")
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    tpr = np.cumsum(p) / n_pos           # predicting positive for the first k+1 scores
    fpr = np.cumsum(~p) / n_neg
    last = np.r_[s[1:] != s[:-1], True]  # only cut between distinct scores
    j = np.where(last, tpr - fpr, -np.inf)
    k = int(np.argmax(j))
    return float(s[k]), float(j[k])


def calibrate_thresholds(preds: dict, skeleton: Skeleton, pck: float = 0.2) -> dict:
    """Joint and track thresholds for a model from ``evaluator.predict_dataset`` output
    on annotated validation people (LSP-style skeletons: PCK@``pck`` of the torso)."""
    valid = preds["flags"] > MISSING
    ref = torso_lengths(preds["gt"], skeleton, valid)
    hits, counted = pck_hits(preds["pred"], preds["gt"], valid, ref, pck)
    counted = counted.astype(bool)
    conf = np.asarray(preds["conf"], np.float64)
    threshold, j = youden_threshold(conf[counted], hits[counted].astype(bool))
    return {
        "joint_threshold": round(threshold, 4),
        # The tracker keeps a person while the mean clipped confidence stays above this;
        # the same level as a single joint, as in the demo's hand-set defaults (0.3/0.3).
        "track_threshold": round(threshold, 4),
        "youden_j": round(j, 4),
        "joints_used": int(counted.sum()),
        "rule": f"Youden's J on PCK@{pck:g} correctness of validation joints",
    }
