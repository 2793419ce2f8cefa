"""LSP-extended (LSPET, 10,000 images) reader for the official release files.

Layout (``lspet_dataset.zip``)::

    DIR/joints.mat              variable ``joints``, 14 x 3 x N: joint, [x, y, flag], image
    DIR/images/im00001.jpg ...  DIR/images/im10000.jpg

Conventions decoded here, once:
* flag 1 = visible/annotated -> 2; flag 0 = not annotated -> 0. The coordinates of
  flag-0 joints are placeholders (mostly negative): they are zeroed and must be masked,
  never clipped into the image.
* MATLAB 1-based pixel coordinates -> 0-based (minus 1).
* image ``imNNNNN.jpg`` <-> column NNNNN (1-based) by the number in the file name; N is
  read from the file (partial copies exist), never assumed to be 10,000.
* LSPET has no official split (it is all training data). Our fixed split for model
  selection: ``val`` = image numbers divisible by 10, ``train`` = the others,
  ``all`` = everything (the usual LSP training set uses all of it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mssh_keras.data.lsp import index_dataset, load_joints, records_from_joints
from mssh_keras.data.records import MISSING, VISIBLE

SPLITS = ("train", "val", "all")
VAL_EVERY = 10
URL = "http://sam.johnson.io/research/lspet.html"
LAYOUT = ("DIR/joints.mat (14 x 3 x N) and DIR/images/im00001.jpg ... im10000.jpg "
          f"(from lspet_dataset.zip, {URL})")


def in_split(number: int, split: str) -> bool:
    if split == "all":
        return True
    if split == "val":
        return number % VAL_EVERY == 0
    if split == "train":
        return number % VAL_EVERY != 0
    raise ValueError(f"LSPET split must be one of {SPLITS}, got {split!r}")


def convert_flags(raw: np.ndarray) -> np.ndarray:
    """LSPET flag (1 = visible, 0 = not annotated) -> contract flag (2 / 0)."""
    return np.where(np.asarray(raw) > 0.5, VISIBLE, MISSING).astype(np.int32)


def lspet_records(mat_path: str | os.PathLike, images_dir: str | os.PathLike,
                  split: str = "all", image_paths: dict[int, Path] | None = None) -> list[dict]:
    """Records of ``split`` straight from joints.mat, without looking at the images."""
    in_split(1, split)
    joints = load_joints(mat_path)
    numbers = [n for n in range(1, len(joints) + 1) if in_split(n, split)]
    return records_from_joints(joints, numbers, images_dir, 5, convert_flags, image_paths)


def read_lspet(root: str | os.PathLike, split: str = "all") -> list[dict]:
    """LSPET records of ``split`` ("train", "val", "all") for the images present in root."""
    in_split(1, split)
    mat, images_dir, image_paths = index_dataset(root, "LSPET", LAYOUT, digits=5)
    return lspet_records(mat, images_dir, split, image_paths=image_paths)
