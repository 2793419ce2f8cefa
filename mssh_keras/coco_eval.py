"""COCO keypoint AP (object keypoint similarity) with ground-truth boxes, by pycocotools.

The reference implementation does the scoring (``pycocotools.cocoeval.COCOeval`` with
``iouType="keypoints"``); this module only builds its two inputs from a COCO-format file
and our predictions:

* **ground truth**: the evaluated people of the file, plus the crowd regions and the
  keypoint-less people of the same images (COCOeval ignores those, as on COCO). An
  annotation without ``area`` (the segmentation area COCO's OKS scales by) gets its box's
  w x h, which makes OKS somewhat more lenient than COCO's own files.
* **detections**: one per evaluated person (the ground-truth box protocol: the model runs on
  each annotated box), with score = mean joint confidence clipped to [0, 1].

Sigmas (the per-joint fall-off of OKS): COCO's for joints whose name is one of COCO's 17
under any spelling (``joint_names.canonical``: ``left_knee``, ``l_knee``, ``Left Knee``...),
``DEFAULT_SIGMA`` for the others, or the user's ``--oks-sigmas``. AP on a joint set other
than COCO's is only comparable between models scored with the same sigmas.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from .joint_names import canonical

# COCO's per-keypoint OKS sigmas (pycocotools' Params.setKpParams, cocodataset.org).
COCO_SIGMAS = {
    "nose": 0.026, "l_eye": 0.025, "r_eye": 0.025, "l_ear": 0.035, "r_ear": 0.035,
    "l_shoulder": 0.079, "r_shoulder": 0.079, "l_elbow": 0.072, "r_elbow": 0.072,
    "l_wrist": 0.062, "r_wrist": 0.062, "l_hip": 0.107, "r_hip": 0.107,
    "l_knee": 0.087, "r_knee": 0.087, "l_ankle": 0.089, "r_ankle": 0.089,
}
# For a joint COCO does not annotate: the mean of COCO's 17 sigmas (0.0669), i.e. a joint
# of average difficulty for human annotators.
DEFAULT_SIGMA = 0.067
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def oks_sigmas(joints, override: str | None = None) -> tuple[np.ndarray, str]:
    """(sigmas (K,), how they were chosen). ``override``: one number for every joint or K
    comma-separated numbers, in the joints' order (``--oks-sigmas``)."""
    k = len(joints)
    if override is not None:
        try:
            values = [float(v) for v in str(override).split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--oks-sigmas must be numbers, got {override!r}") from None
        if len(values) == 1:
            values = values * k
        if len(values) != k or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"--oks-sigmas needs 1 or {k} positive numbers (one per joint: "
                             f"{list(joints)}), got {len(values)}")
        return np.array(values, np.float64), "given (--oks-sigmas)"
    names = [canonical(j) for j in joints]
    sigmas = np.array([COCO_SIGMAS.get(n, DEFAULT_SIGMA) for n in names], np.float64)
    matched = sum(n in COCO_SIGMAS for n in names)
    if matched == k:
        how = "COCO's"
    elif matched:
        how = f"COCO's for {matched} of {k} joints, {DEFAULT_SIGMA} for the others"
    else:
        how = f"{DEFAULT_SIGMA} for every joint (the mean of COCO's 17)"
    return sigmas, how


def ground_truth(coco, records: list[dict]) -> tuple[dict, dict, dict]:
    """(pycocotools dataset dict, image id -> int, annotation id -> int) for ``records``
    (the evaluated people) of ``coco`` (a ``data.coco.CocoFile``)."""
    k = coco.skeleton.num_joints
    # Numbered in the order of the file's own ids (numbers numerically), so that tied
    # scores rank as they would in COCOeval on the file itself.
    images = sorted({r["coco_image_id"] for r in records},
                    key=lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)))
    image_ids = {im: n for n, im in enumerate(images, start=1)}
    chosen = {r["ann_id"] for r in records}
    anns, ann_ids = [], {}
    for a in coco.annotations:
        if a["image_id"] not in image_ids:
            continue
        kp = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
        kp[kp[:, 2] <= 0] = 0.0
        n = int((kp[:, 2] > 0).sum())
        crowd = int(bool(a.get("iscrowd", 0)))
        if not crowd and n and a["id"] not in chosen:
            continue  # a person that was not evaluated (skipped, or beyond --limit)
        x, y, w, h = (float(v) for v in a["bbox"])
        area = float(a.get("area") or 0.0) or max(w, 0.0) * max(h, 0.0)
        ann_ids[a["id"]] = len(anns) + 1
        anns.append({"id": len(anns) + 1, "image_id": image_ids[a["image_id"]],
                     "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": n, "iscrowd": crowd, "bbox": [x, y, w, h],
                     "area": area})
    dataset = {"images": [{"id": n} for n in image_ids.values()], "annotations": anns,
               "categories": [{"id": 1, "name": str(coco.category.get("name", "object")),
                               "keypoints": list(coco.skeleton.joints)}]}
    return dataset, image_ids, ann_ids


def detections(records: list[dict], pred, conf, image_ids: dict) -> list[dict]:
    """One keypoint result per record: [x, y, 1] x K in image pixels and the pose score."""
    out = []
    for r, xy, c in zip(records, np.asarray(pred, np.float64), np.asarray(conf, np.float64)):
        kp = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        out.append({"image_id": image_ids[r["coco_image_id"]], "category_id": 1,
                    "keypoints": kp.reshape(-1).tolist(),
                    "score": float(np.clip(c, 0.0, 1.0).mean())})
    return out


def keypoint_ap(coco, records: list[dict], pred, conf, sigmas: np.ndarray) -> dict:
    """COCOeval's 10 keypoint statistics (AP, AP50, AP75, APm, APl, AR, ...), NaN where
    COCOeval says -1 (no person in that size range), and its printed summary."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("COCO keypoint AP needs pycocotools: pip install pycocotools "
                          "(it is in requirements.txt and the [train] extra)") from None
    if len(records) != len(pred):
        raise ValueError(f"{len(records)} people but {len(pred)} predictions")
    dataset, image_ids, _ = ground_truth(coco, records)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(detections(records, pred, conf, image_ids))
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.params.imgIds = sorted(image_ids.values())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    summary = text.getvalue()
    summary = summary[summary.find(" Average Precision"):].rstrip()
    stats = {n: (float(v) * 100.0 if v >= 0 else math.nan)
             for n, v in zip(STAT_NAMES, ev.stats)}
    return {"stats": stats, "summary": summary}


def results_file(records: list[dict], pred, conf, category_id) -> list[dict]:
    """The predictions in COCO's keypoint results format, with the file's own image and
    category ids (``predictions_coco.json``: pycocotools' ``loadRes`` reads it)."""
    out = []
    for r, xy, c in zip(records, np.asarray(pred, np.float64), np.asarray(conf, np.float64)):
        kp = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        out.append({"image_id": r["coco_image_id"], "category_id": category_id,
                    "keypoints": [round(float(v), 2) for v in kp.reshape(-1)],
                    "score": float(np.clip(c, 0.0, 1.0).mean())})
    return out
