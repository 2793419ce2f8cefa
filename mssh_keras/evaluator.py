"""Score a model on a dataset split the way the literature does, in original-image pixels.

The model is any callable ``batch (B, S, S, 3) float32 RGB 0..255 -> heatmaps (B, h, w, K)``
(a ``PoseEstimator``'s ``heatmaps``, whatever its backend), so an exported file is scored
exactly like the Keras network. Crops use the dataset's centre/scale (no augmentation);
predictions are decoded, mapped back through the inverse crop and compared with the
original annotations: PCK@0.2 + strict PCP@0.5 for LSP-14 sets, PCKh@0.5 for MPII.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from .data.pipeline import eval_pipeline
from .decode import decode_heatmaps, flip_back, heatmap_coords_to_image
from .metrics import lsp_report, mpii_report
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
        coords, conf = decode_heatmaps(heat)
        stride = input_size / heat.shape[1]
        out["pred"].append(heatmap_coords_to_image(coords, stride, meta["matrix"]))
        out["conf"].append(conf)
        out["gt"].append(meta["joints"])
        out["flags"].append(meta["flags"])
        out["image_id"].extend(i.decode() if isinstance(i, bytes) else str(i)
                               for i in meta["image_id"])
        out["head_size"].append(meta.get("head_size", np.full(len(images), np.nan)))
    if not out["pred"]:
        raise ValueError("the evaluation split is empty")
    return {k: (v if k == "image_id" else np.concatenate(v)) for k, v in out.items()}


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


def evaluate_model(model, dataset: str, split: str | None = None, data_dir: str | None = None,
                   manual_dir: str | None = None, limit: int | None = None,
                   flip_test: bool = False, batch_size: int = 16) -> tuple[dict, dict]:
    """(report, predictions) of ``model`` (a path or a PoseEstimator) on a dataset split.

    One place for what evaluate.py, model shipping and ablation tables all do, so their
    numbers are computed the same way. Raises ValueError for a skeleton/dataset mismatch.
    """
    from .data import datasets
    from .runtime import PoseEstimator

    est = model if isinstance(model, PoseEstimator) else PoseEstimator(model)
    split = split or datasets.EVAL_SPLIT.get(dataset, "val")
    skeleton_name = datasets.DATASET_SKELETON.get(dataset)
    if skeleton_name is None:
        raise ValueError(f"unknown dataset {dataset!r}")
    if skeleton_name != est.skeleton.name:
        raise ValueError(f"{model} predicts {est.skeleton.name} joints but {dataset} is "
                         f"annotated with {skeleton_name}")
    examples = datasets.load(dataset, split, data_dir, manual_dir, size=est.input_size,
                             num=limit)
    if limit:
        examples = examples.take(limit)
    preds = predict_dataset(est.heatmaps, examples, est.skeleton, est.input_size, flip_test,
                            batch_size)
    report = score(preds, est.skeleton, "mpii" if skeleton_name == "mpii16" else "lsp")
    report.update(model=str(model), dataset=dataset, split=split, flip_test=flip_test)
    return report, preds


def score_records(model, records: list[dict]) -> dict:
    """LSP-protocol report of ``model`` (a path or a PoseEstimator) on in-memory records,
    e.g. a fixed subset from a dataset reader: the shipped model's regression check."""
    from .data.datasets import from_records
    from .runtime import PoseEstimator

    est = model if isinstance(model, PoseEstimator) else PoseEstimator(model)
    preds = predict_dataset(est.heatmaps, from_records(records), est.skeleton, est.input_size)
    return score(preds, est.skeleton, "lsp")
