"""Person crops for checking an exported model: verification and int8 calibration.

``SampleCrops`` is what ``mssh_keras.export.export`` takes as ``crops``: the exporter
itself reads no dataset, it asks this object for crops of a skeleton at an input size.
Crops are made the way the runtime makes them (the dataset's centre and scale, bilinear,
zero borders), synthetic (offline, deterministic) or from a prepared dataset split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry
from ..model_file import ExportError
from ..skeleton import Skeleton


def sample_crops(skeleton: Skeleton, input_size: int, n: int, source: str = "synthetic",
                 split: str = "train", seed: int = 0, data_dir: str | None = None,
                 manual_dir: str | None = None) -> np.ndarray:
    """(n, S, S, 3) float32 person crops made the way the runtime makes them.

    ``source`` "synthetic" renders people (offline, deterministic); a dataset name
    (lsp, lspet, mpii...) reads its prepared TFDS split through the evaluation pipeline.
    """
    if n <= 0:
        raise ExportError(f"need at least one sample crop, got n={n}")
    if source == "synthetic":
        import cv2

        from .synthetic import SyntheticPose

        synth = SyntheticPose(skeleton.name, size=input_size,
                              num_train=n if split == "train" else 0,
                              num_val=n if split != "train" else 0, seed=seed)
        split = "train" if split == "train" else "val"
        out = np.empty((n, input_size, input_size, 3), np.float32)
        for i in range(n):
            ex = synth.example(split, i)
            m = geometry.crop_matrix(ex["center"], float(ex["scale"]), input_size)
            out[i] = cv2.warpAffine(ex["image"], m, (input_size, input_size),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out
    from . import datasets
    from .pipeline import eval_pipeline

    try:
        ds = datasets.load(source, split, data_dir, manual_dir)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"cannot read {source}/{split} for sample crops: {e}") from None
    images = [img for img, _ in eval_pipeline(ds.take(n), skeleton, input_size, 32)
              .as_numpy_iterator()]
    if not images:
        raise ExportError(f"{source}/{split} is empty")
    return np.concatenate(images).astype(np.float32)


def eval_split(dataset: str) -> str:
    """The held-out split of a real dataset (verification must not reuse calibration crops)."""
    from . import datasets

    return getattr(datasets, "EVAL_SPLIT", {}).get(dataset, "val")


@dataclass(frozen=True)
class SampleCrops:
    """Verification crops from the held-out split (seed 1), calibration crops from the
    training split, of ``source``: "synthetic" (default, offline) or a dataset name
    (lsp, lspet, mpii, lsp+lspet; ``data_dir`` / ``manual_dir`` as for training)."""

    source: str = "synthetic"
    data_dir: str | None = None
    manual_dir: str | None = None

    def verification(self, skeleton: Skeleton, input_size: int,
                     n: int) -> tuple[np.ndarray, str]:
        """(n, S, S, 3) float32 crops and where they come from, e.g. "synthetic/val: 32 crops"."""
        split = "val" if self.source == "synthetic" else eval_split(self.source)
        crops = sample_crops(skeleton, input_size, n, self.source, split, seed=1,
                             data_dir=self.data_dir, manual_dir=self.manual_dir)
        return crops, f"{self.source}/{split}: {n} crops"

    def calibration(self, skeleton: Skeleton, input_size: int,
                    n: int) -> tuple[np.ndarray, str]:
        """(n, S, S, 3) float32 training-split crops for int8 calibration, and their source."""
        crops = sample_crops(skeleton, input_size, n, self.source, "train",
                             data_dir=self.data_dir, manual_dir=self.manual_dir)
        return crops, f"{self.source}/train: {n} crops"
