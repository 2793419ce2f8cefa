"""Prediction and report files: writing predictions and metric reports to disk, reading
predictions back (pure numpy/scipy, no TensorFlow). Running a model over a dataset to get
them is ``mssh_keras.evaluator``'s job.

Two prediction formats, written together:
- JSON, ours and readable anywhere: ``{"skeleton", "joint_names", "coordinates",
  "predictions": [{"image_id", "keypoints": [[x, y, score], ...]}, ...]}`` with 0-based
  pixel-centre coordinates of the original image (the example contract).
- MATLAB .mat for the standard evaluation scripts, 1-based coordinates (x + 1, y + 1):
  LSP14 -> variable ``pred`` of shape (2, 14, N), the layout of bearpaw/eval_pose
  ``eval_pck.m`` / ``eval_pcp.m`` (LSP's ``joints(1:2, :, :)``);
  MPII16 -> variable ``preds`` of shape (N, 16, 2), the layout read by the MPII
  ``eval_PCKh.py`` of pytorch-pose / HRNet (``pred.mat``). Those scripts match rows by
  position, so N must follow the annotation file's order.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io

from .paths import write_json_atomic
from .skeleton import Skeleton


def write_predictions(path: str | Path, image_ids: Sequence[str], coords: np.ndarray,
                      conf: np.ndarray, skeleton: Skeleton) -> tuple[Path, Path | None]:
    """Write ``path`` (.json) and the same stem with .mat; returns both paths (the .mat is
    written for LSP14 and MPII16 only; None for other joint sets).

    coords: (N, K, 2) 0-based image pixels; conf: (N, K) joint scores.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise ValueError(f"prediction path must end in .json (the .mat goes beside it): {path}")
    xy = np.asarray(coords, dtype=np.float64)
    score = np.asarray(conf, dtype=np.float64)
    ids = [str(i) for i in image_ids]
    k = skeleton.num_joints
    if xy.shape != (len(ids), k, 2):
        raise ValueError(f"coords must be (N={len(ids)}, K={k}, 2) for {skeleton.name}, "
                         f"got shape {xy.shape}")
    if score.shape != xy.shape[:2]:
        raise ValueError(f"conf must be {xy.shape[:2]}, got shape {score.shape}")

    doc = {
        "skeleton": skeleton.name,
        "joint_names": list(skeleton.joints),
        "coordinates": "original-image pixels, 0-based, pixel centres at integers",
        "predictions": [
            {"image_id": i, "keypoints": [[float(x), float(y), float(s)]
                                          for (x, y), s in zip(xy[n], score[n])]}
            for n, i in enumerate(ids)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, jsonable(doc), indent=None, allow_nan=False)

    mat_path = path.with_suffix(".mat")
    one_based = xy + 1.0
    if skeleton.name == "lsp14":
        mat = {"pred": one_based.transpose(2, 1, 0)}       # (2, K, N)
    elif skeleton.name == "mpii16":
        mat = {"preds": one_based}                         # (N, K, 2)
    else:  # no standard MATLAB script reads other joint sets: the JSON alone
        return path, None
    tmp = mat_path.with_name(f".{mat_path.name}.{os.getpid()}.tmp")
    scipy.io.savemat(tmp, mat, appendmat=False)
    os.replace(tmp, mat_path)
    return path, mat_path


def read_predictions(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Inverse of write_predictions' JSON: (image_ids, coords (N,K,2), conf (N,K), joint names)."""
    try:
        doc = json.loads(Path(path).read_text())
        preds = doc["predictions"]
        kp = np.array([p["keypoints"] for p in preds], dtype=np.float64).reshape(
            len(preds), len(doc["joint_names"]), 3)
        return [p["image_id"] for p in preds], kp[..., :2], kp[..., 2], list(doc["joint_names"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a prediction file written by write_predictions ({e})") from e


def jsonable(obj: Any) -> Any:
    """numpy -> Python, NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def save_report(path: str | Path, report: dict) -> Path:
    """Metric report (metrics.lsp_report / mpii_report) -> JSON, atomically; NaN becomes null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, jsonable(report), indent=2, allow_nan=False)
