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

import logging
import os
from pathlib import Path

import numpy as np

from mssh_keras.data.lsp import check_layout, load_joints, match_report
from mssh_keras.data.records import DatasetFilesError, index_images, make_record

log = logging.getLogger(__name__)

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
    return np.where(np.asarray(raw) > 0.5, 2, 0).astype(np.int32)


def lspet_records(mat_path: str | os.PathLike, images_dir: str | os.PathLike,
                  split: str = "all", image_paths: dict[int, Path] | None = None) -> list[dict]:
    """Records of ``split`` straight from joints.mat, without looking at the images.

    ``image_paths`` (number -> path) restricts the result to images that exist; without it
    every annotated column is listed with path ``images_dir/imNNNNN.jpg``.
    """
    in_split(1, split)
    joints = load_joints(mat_path)
    records = []
    for number in range(1, len(joints) + 1):
        if not in_split(number, split):
            continue
        if image_paths is None:
            path = Path(images_dir) / f"im{number:05d}.jpg"
        elif number in image_paths:
            path = image_paths[number]
        else:
            continue
        j = joints[number - 1]
        records.append(make_record(path, j[:, :2] - 1.0, convert_flags(j[:, 2]), path.name))
    return records


def read_lspet(root: str | os.PathLike, split: str = "all") -> list[dict]:
    """LSPET records of ``split`` ("train", "val", "all") for the images present in root.

    Columns without an image and images without a column are logged (counts and names)
    and left out.
    """
    in_split(1, split)
    mat, images_dir = check_layout(root, "LSPET", LAYOUT)
    image_paths = index_images(images_dir)
    if not image_paths:
        raise DatasetFilesError(f"LSPET: no images named im00001.jpg ... in {images_dir}. "
                                f"Expected {LAYOUT.replace('DIR', str(root))}")
    n = len(load_joints(mat))
    match_report(n, image_paths, "LSPET", images_dir, digits=5)
    return lspet_records(mat, images_dir, split, image_paths=image_paths)
