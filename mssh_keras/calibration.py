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


def box_one_side_away(box, image_size: tuple[int, int]) -> tuple | None:
    """``box`` (x0, y0, x1, y1) moved by its own width right, left, or its height down, up:
    the first whose centre is in the image (``image_size`` = (height, width)), or None.
    Around a person's ground-truth box, a crop of the same frame without that person in
    its middle."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    height, width = image_size
    for dx, dy in ((w, 0.0), (-w, 0.0), (0.0, h), (0.0, -h)):
        if 0 <= cx + dx < width and 0 <= cy + dy < height:
            return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)
    return None


def track_threshold(present: np.ndarray, absent: np.ndarray, keep: float = 0.95) -> dict:
    """The pose score (mean clipped joint confidence, ``person_search.pose_score``) above
    which a tracker keeps a person: the one that ``keep`` of the validation people score
    in their ground-truth box. Recall first: a lost track costs a whole-frame search (about
    18 model calls) while a kept empty crop scores lower on the next frames and is dropped
    then. The share of ``absent`` crops (the same frames one box away) that would be kept
    is reported. A joint's threshold does not fit here: a pose's mean confidence includes
    its weak joints, and a well trained model scores most present people below it."""
    present = np.asarray(present, np.float64)
    absent = np.asarray(absent, np.float64)
    if present.size == 0:
        raise ValueError("track calibration needs crops of present people")
    threshold = float(np.quantile(present, 1.0 - keep))
    return {"track_threshold": round(threshold, 4),
            "track_absent_kept": round(float((absent >= threshold).mean()), 4)
            if absent.size else None,
            "track_crops": [int(present.size), int(absent.size)],
            "track_rule": f"kept by {keep:.0%} of validation people in their GT box"}


def calibrate_thresholds(preds: dict, skeleton: Skeleton, pck: float = 0.2,
                         track: dict | None = None) -> dict:
    """Joint and track thresholds for a model from ``evaluator.predict_dataset`` output
    on annotated validation people (LSP-style skeletons: PCK@``pck`` of the torso).
    ``track``: ``track_threshold``'s result; without it the track threshold is the joint
    threshold (the demo's hand-set defaults are 0.3 / 0.3)."""
    valid = preds["flags"] > MISSING
    ref = torso_lengths(preds["gt"], skeleton, valid)
    hits, counted = pck_hits(preds["pred"], preds["gt"], valid, ref, pck)
    counted = counted.astype(bool)
    conf = np.asarray(preds["conf"], np.float64)
    threshold, j = youden_threshold(conf[counted], hits[counted].astype(bool))
    return {
        "joint_threshold": round(threshold, 4),
        "track_threshold": round(threshold, 4),
        "youden_j": round(j, 4),
        "joints_used": int(counted.sum()),
        "rule": f"Youden's J on PCK@{pck:g} correctness of validation joints",
        **(track or {}),
    }
