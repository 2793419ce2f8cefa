"""Score a model on a dataset split the way the literature does, in original-image pixels.

The model is any callable ``batch (B, S, S, 3) float32 RGB 0..255 -> heatmaps (B, h, w, K)``
(a ``PoseEstimator``'s ``heatmaps``, whatever its backend), so an exported file is scored
exactly like the Keras network. Crops use the dataset's centre/scale (no augmentation);
predictions are decoded, mapped back through the inverse crop and compared with the
original annotations: PCK@0.2 + strict PCP@0.5 for LSP-14 sets, PCKh@0.5 for MPII.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from .codec import HeatmapCodec
from .data.pipeline import eval_pipeline
from .decode import flip_back
from .metrics import lsp_report, mpii_report
from .person_search import lean_angle
from .skeleton import Skeleton

HeatmapFn = Callable[[np.ndarray], np.ndarray]


def predict_dataset(heatmap_fn: HeatmapFn, examples: tf.data.Dataset, skeleton: Skeleton,
                    input_size: int, flip_test: bool = False, batch_size: int = 16) -> dict:
    """Run the model over ``examples``; returns predictions and ground truth as arrays."""
    out = {k: [] for k in ("pred", "conf", "gt", "flags", "image_id", "head_size")}
    for images, meta in eval_pipeline(examples, skeleton, input_size,
                                      batch_size).as_numpy_iterator():
        heat = np.asarray(heatmap_fn(images), np.float32)
        if flip_test:
            flipped = np.asarray(heatmap_fn(np.ascontiguousarray(images[:, :, ::-1])),
                                 np.float32)
            heat = (heat + flip_back(flipped, skeleton.flip_permutation)) / 2.0
        pred, conf = HeatmapCodec(input_size, (heat.shape[1],)).decode(heat, meta["matrix"])
        out["pred"].append(pred)
        out["conf"].append(conf)
        out["gt"].append(meta["joints"])
        out["flags"].append(meta["flags"])
        out["image_id"].extend(i.decode() if isinstance(i, bytes) else str(i)
                               for i in meta["image_id"])
        out["head_size"].append(meta.get("head_size", np.full(len(images), np.nan)))
    if not out["pred"]:
        raise ValueError("the evaluation split is empty")
    return {k: (v if k == "image_id" else np.concatenate(v)) for k, v in out.items()}


# How the person is cropped at evaluation: the dataset's box in one batched pass (the
# literature's protocol), that box then turned upright (person_search), or the whole image
# with no ground truth at all (the coarse-to-fine search of PoseEstimator.predict).
PROTOCOLS = ("gt-box", "gt-box-upright", "whole-image")


def gt_box(center, scale, padding: float) -> tuple[float, float, float, float]:
    """The body box whose padded square (geometry.box_to_center_scale) is the dataset's
    crop of ``center`` / ``scale``: the same crop the batched gt-box protocol takes."""
    cx, cy = (float(v) for v in center)
    h = float(scale) / padding / 2.0
    return (cx - h, cy - h, cx + h, cy + h)


def predict_images(estimator, examples: tf.data.Dataset, protocol: str,
                   flip_test: bool = False, search=None) -> dict:
    """Per-image predictions through ``PoseEstimator.predict`` for ``protocol``
    "gt-box-upright" (the dataset's box, then crops turned upright) or "whole-image"
    (``predict(image)``: the ground truth is used for scoring only). ``search``: a
    ``person_search.SearchConfig`` or None (predict's default). Same keys as
    ``predict_dataset``, plus ``model_calls`` and ``rotation`` per person."""
    if protocol not in ("gt-box-upright", "whole-image"):
        raise ValueError(f"predict_images runs gt-box-upright or whole-image, got {protocol!r}")
    out = {k: [] for k in ("pred", "conf", "gt", "flags", "image_id", "head_size",
                           "model_calls", "rotation")}
    for ex in examples.as_numpy_iterator():
        if protocol == "whole-image":
            pose = estimator.predict(ex["image"], None, flip_test, search=search)
        else:
            box = gt_box(ex["center"], ex["scale"], estimator.box_padding)
            pose = estimator.predict(ex["image"], box, flip_test, upright=True, search=search)
        out["pred"].append(pose.keypoints.astype(np.float64))
        out["conf"].append(pose.confidence)
        out["gt"].append(ex["joints"])
        out["flags"].append(ex["flags"])
        iid = ex["image_id"]
        out["image_id"].append(iid.decode() if isinstance(iid, bytes) else str(iid))
        out["head_size"].append(ex.get("head_size", np.nan))
        out["model_calls"].append(pose.model_calls)
        out["rotation"].append(pose.rotation)
    if not out["pred"]:
        raise ValueError("the evaluation split is empty")
    return {k: (v if k == "image_id" else np.stack(v)) for k, v in out.items()}


def subset_pck(report: dict, mask, metric: str = "PCK@0.2") -> float:
    """Pooled ``metric`` over the people where ``mask`` is true (``per_example`` order)."""
    ex = report["per_example"]
    m = np.asarray(mask, bool)
    counted = np.asarray(ex[f"{metric} counted"], np.float64)[m].sum()
    return float(100.0 * np.asarray(ex[f"{metric} hits"], np.float64)[m].sum() / counted
                 ) if counted else float("nan")


def score(preds: dict, skeleton: Skeleton, protocol: str) -> dict:
    """Metric report for ``protocol`` 'lsp' (PCK@0.2, strict PCP@0.5) or 'mpii' (PCKh)."""
    annotated = preds["flags"] > 0
    if protocol == "mpii":
        if not np.isfinite(preds["head_size"]).all():
            raise ValueError("PCKh needs MPII head sizes; this split has none")
        # The official protocol counts every annotated joint (visible or not).
        return mpii_report(preds["pred"], preds["gt"], annotated, preds["head_size"], skeleton)
    report = lsp_report(preds["pred"], preds["gt"], annotated, skeleton)
    report["per_example"]["image_id"] = list(preds["image_id"])
    return report


def score_coco(preds: dict, records: list[dict], coco, skeleton: Skeleton,
               sigmas: str | None = None) -> dict:
    """Report for a COCO-format file (``data.coco``): box-normalised PCK and, with a torso,
    LSP's torso PCK (metrics.keypoint_report), plus COCO keypoint AP with the ground-truth
    boxes, computed by pycocotools (coco_eval; ``sigmas``: ``--oks-sigmas``). ``records``
    are the evaluated people in prediction order."""
    from .coco_eval import keypoint_ap, oks_sigmas
    from .metrics import box_sizes, keypoint_report
    from .paths import portable_path

    if [r["image_id"] for r in records] != list(preds["image_id"]):
        raise ValueError("predictions and COCO records are not in the same order")
    boxes = box_sizes(np.stack([r["bbox"] for r in records]))
    report = keypoint_report(preds["pred"], preds["gt"], preds["flags"] > 0, boxes, skeleton)
    values, how = oks_sigmas(skeleton.joints, sigmas)
    ap = keypoint_ap(coco, records, preds["pred"], preds["conf"], values)
    report["protocol"] = "coco"
    report["tables"]["OKS (GT boxes)"] = {k: ap["stats"][k] for k in
                                          ("AP", "AP50", "AP75", "APm", "APl", "AR")}
    report["coco"] = {"annotations": portable_path(coco.path), "stats": ap["stats"],
                      "sigmas": dict(zip(skeleton.joints, values.tolist())),
                      "sigmas_from": how, "summary": ap["summary"]}
    report["definitions"]["OKS (GT boxes)"] = (
        "COCO keypoint AP/AR (pycocotools COCOeval, iouType keypoints), one prediction per "
        "annotated box, score = mean joint confidence clipped to [0, 1]; area = the "
        "annotation's, else its box's w x h")
    report["per_example"]["image_id"] = list(preds["image_id"])
    return report


def evaluate_model(model, dataset: str, split: str | None = None, data_dir: str | None = None,
                   manual_dir: str | None = None, limit: int | None = None,
                   flip_test: bool = False, batch_size: int = 16,
                   trust_saved_model: bool = False, protocol: str = "gt-box",
                   search=None, coco=None, oks_sigmas: str | None = None
                   ) -> tuple[dict, dict]:
    """(report, predictions) of ``model`` (a path or a PoseEstimator) on a dataset split.

    One place for what evaluate.py, model shipping and ablation tables all do, so their
    numbers are computed the same way. Raises ValueError for a skeleton/dataset mismatch,
    ModelLoadError for a model file that cannot be used (``trust_saved_model``: see
    PoseEstimator). ``protocol`` is one of PROTOCOLS (``search``, a
    person_search.SearchConfig, applies to the two per-image ones); the report's
    ``inference`` names it with the mean model calls per person, and for LSP skeletons
    ``per_example`` also holds each person's ground-truth torso lean (degrees,
    person_search.lean_angle) and model calls, for scoring subsets (``subset_pck``).

    ``dataset`` "coco" reads ``coco`` (a ``data.coco.CocoSource``; split default "val": its
    validation file or hold-out) and scores with ``score_coco`` (``oks_sigmas``); the
    predictions then also hold ``coco_results``, the COCO keypoint results format.
    """
    from .data import datasets
    from .paths import portable_path
    from .runtime import PoseEstimator

    est = model if isinstance(model, PoseEstimator) else PoseEstimator(
        model, trust_saved_model=trust_saved_model)
    if dataset == "coco":
        if coco is None:
            raise ValueError("--dataset coco needs --annotations FILE.json (or "
                             "--val-annotations FILE.json)")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
        split = split or "val"
        coco_file, records = coco.records(split)
        if tuple(coco_file.skeleton.joints) != tuple(est.skeleton.joints):
            raise ValueError(f"{model} predicts the joints {list(est.skeleton.joints)} but "
                             f"{coco_file.path} annotates {list(coco_file.skeleton.joints)}")
        records = records[:limit] if limit else records
        examples = datasets.from_records(records)
        skeleton_name = est.skeleton.name
    else:
        split = split or datasets.EVAL_SPLIT.get(dataset, "val")
        skeleton_name = datasets.DATASET_SKELETON.get(dataset)
        if skeleton_name is None:
            raise ValueError(f"unknown dataset {dataset!r}")
        if skeleton_name != est.skeleton.name:
            raise ValueError(f"{model} predicts {est.skeleton.name} joints but {dataset} is "
                             f"annotated with {skeleton_name}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
        examples = datasets.load(dataset, split, data_dir, manual_dir, size=est.input_size,
                                 num=limit)
        if limit:
            examples = examples.take(limit)
    if protocol == "gt-box":
        preds = predict_dataset(est.heatmaps, examples, est.skeleton, est.input_size,
                                flip_test, batch_size)
        preds["model_calls"] = np.ones(len(preds["pred"]), np.int64)
    else:
        preds = predict_images(est, examples, protocol, flip_test, search)
    if dataset == "coco":
        from .coco_eval import results_file
        report = score_coco(preds, records, coco_file, est.skeleton, oks_sigmas)
        preds["coco_results"] = results_file(records, preds["pred"], preds["conf"],
                                             coco_file.category["id"])
    else:
        report = score(preds, est.skeleton, "mpii" if skeleton_name == "mpii16" else "lsp")
    report.update(model=portable_path(est.path), dataset=dataset, split=split,
                  flip_test=flip_test)
    report["inference"] = {"protocol": protocol,
                           "mean_model_calls": float(np.mean(preds["model_calls"])),
                           "search": None if search is None else dataclasses.asdict(search)}
    preds["skeleton"] = est.skeleton  # the model's joint set (write_predictions)
    if "per_example" in report:
        report["per_example"]["lean_deg"] = [
            lean_angle(g, f > 0, est.skeleton) for g, f in zip(preds["gt"], preds["flags"])]
        report["per_example"]["model_calls"] = [int(c) for c in preds["model_calls"]]
    return report, preds


def score_records(model, records: list[dict]) -> dict:
    """LSP-protocol report of ``model`` (a path or a PoseEstimator) on in-memory records,
    e.g. a fixed subset from a dataset reader: the shipped model's regression check."""
    from .data.datasets import from_records
    from .runtime import PoseEstimator

    est = model if isinstance(model, PoseEstimator) else PoseEstimator(model)
    preds = predict_dataset(est.heatmaps, from_records(records), est.skeleton, est.input_size)
    return score(preds, est.skeleton, "lsp")
