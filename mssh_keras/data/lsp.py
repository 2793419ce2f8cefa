"""Leeds Sports Pose (LSP, 2,000 images) reader for the official release files.

Layout (``lsp_dataset.zip`` scaled release or ``lsp_dataset_original.zip``, same layout)::

    DIR/joints.mat            variable ``joints``, 3 x 14 x 2000: [x, y, flag], joint, image
    DIR/images/im0001.jpg ... DIR/images/im2000.jpg

Conventions decoded here, once:
* flag 1 means *occluded* (the opposite of LSPET): all 2,000 x 14 joints carry a valid,
  estimated position, so flag 1 -> 1 (occluded), flag 0 -> 2 (visible).
* MATLAB 1-based pixel coordinates -> 0-based (minus 1).
* image ``imNNNN.jpg`` <-> column NNNN (1-based), matched by the number in the file
  name, never by folder order.
* Standard split: images 1-1000 train, 1001-2000 test.
* LSP carries no person box: center/scale come from the joints' box
  (``geometry.center_scale_from_joints``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from mssh_keras.data.records import (OCCLUDED, VISIBLE, DatasetFilesError, index_images,
                                     load_mat_variable, make_record, summarize_names)

log = logging.getLogger(__name__)

NUM_JOINTS = 14
SPLITS = ("train", "test", "all")
TRAIN_IMAGES = 1000  # images 1..1000 train, 1001.. test
URL = "http://sam.johnson.io/research/lsp.html"
LAYOUT = ("DIR/joints.mat (3 x 14 x 2000) and DIR/images/im0001.jpg ... im2000.jpg "
          f"(from lsp_dataset.zip or lsp_dataset_original.zip, {URL})")


def load_joints(mat_path: str | os.PathLike, name: str = "joints.mat") -> np.ndarray:
    """The ``joints`` variable as (N, 14, 3) [x, y, flag] in the file's own units.

    Both official axis orders are accepted (LSP 3 x 14 x N, LSPET 14 x 3 x N), since
    re-distributions of either set sometimes use the other one.
    """
    joints = np.asarray(load_mat_variable(mat_path, "joints"), np.float64)
    if joints.ndim == 3 and joints.shape[:2] == (3, NUM_JOINTS):
        return joints.transpose(2, 1, 0)
    if joints.ndim == 3 and joints.shape[:2] == (NUM_JOINTS, 3):
        return joints.transpose(2, 0, 1)
    raise ValueError(f"{name} at {mat_path}: expected `joints` of shape 3 x 14 x N or "
                     f"14 x 3 x N, got {joints.shape}")


def split_numbers(n: int, split: str) -> list[int]:
    """1-based image numbers of ``split`` among ``n`` annotated images."""
    if split == "train":
        return list(range(1, min(n, TRAIN_IMAGES) + 1))
    if split == "test":
        return list(range(TRAIN_IMAGES + 1, n + 1))
    if split == "all":
        return list(range(1, n + 1))
    raise ValueError(f"LSP split must be one of {SPLITS}, got {split!r}")


def convert_flags(raw: np.ndarray) -> np.ndarray:
    """LSP flag (1 = occluded, 0 = visible) -> contract flag (1 occluded, 2 visible)."""
    return np.where(np.asarray(raw) > 0.5, OCCLUDED, VISIBLE).astype(np.int32)


def records_from_joints(joints: np.ndarray, numbers, images_dir: str | os.PathLike,
                        digits: int, flags_fn, image_paths: dict[int, Path] | None = None
                        ) -> list[dict]:
    """Records of the 1-based image ``numbers`` of an LSP-style (N, 14, 3) joints array.

    Shared by LSP and LSPET, which differ only in split rule, file-name digits and flag
    meaning. ``image_paths`` (number -> path) restricts the result to images that exist;
    without it every number is listed with path ``images_dir/imNNNN.jpg``.
    """
    records = []
    for number in numbers:
        if image_paths is None:
            path = Path(images_dir) / f"im{number:0{digits}d}.jpg"
        elif number in image_paths:
            path = image_paths[number]
        else:
            continue
        j = joints[number - 1]
        records.append(make_record(path, j[:, :2] - 1.0, flags_fn(j[:, 2]), path.name))
    return records


def lsp_records(mat_path: str | os.PathLike, images_dir: str | os.PathLike,
                split: str = "train", image_paths: dict[int, Path] | None = None) -> list[dict]:
    """Records of ``split`` straight from joints.mat, without looking at the images."""
    joints = load_joints(mat_path)
    return records_from_joints(joints, split_numbers(len(joints), split), images_dir, 4,
                               convert_flags, image_paths)


def match_report(n_columns: int, image_paths: dict[int, Path], dataset: str,
                 images_dir: str | os.PathLike, digits: int) -> tuple[list[int], list[str]]:
    """Log (and return) annotation columns without an image and images without a column."""
    missing = [n for n in range(1, n_columns + 1) if n not in image_paths]
    extra = sorted(p.name for n, p in image_paths.items() if not 1 <= n <= n_columns)
    if missing:
        log.warning("%s: %d of %d annotated images are missing from %s: %s", dataset,
                    len(missing), n_columns, images_dir,
                    summarize_names([f"im{n:0{digits}d}.jpg" for n in missing]))
    if extra:
        log.warning("%s: %d images in %s have no column in joints.mat (which has %d) and are "
                    "ignored: %s", dataset, len(extra), images_dir, n_columns,
                    summarize_names(extra))
    return missing, extra


def check_layout(root: str | os.PathLike, dataset: str, layout: str) -> tuple[Path, Path]:
    """(joints.mat, images dir) of ``root`` or a DatasetFilesError saying what goes where."""
    root = Path(root)
    mat, images = root / "joints.mat", root / "images"
    lacking = [str(p) for p in (mat, images) if not p.exists()]
    if lacking:
        raise DatasetFilesError(f"{dataset} not found in {root}: missing {', '.join(lacking)}. "
                                f"Expected {layout.replace('DIR', str(root))}")
    return mat, images


def index_dataset(root: str | os.PathLike, dataset: str, layout: str,
                  digits: int) -> tuple[Path, Path, dict[int, Path]]:
    """(joints.mat, images dir, number -> image path) of an LSP-style folder.

    Clear errors for a missing file or an image folder without imNN..N.jpg names; columns
    without an image and images without a column are logged (counts and names).
    """
    mat, images_dir = check_layout(root, dataset, layout)
    image_paths = index_images(images_dir)
    if not image_paths:
        first = f"im{1:0{digits}d}.jpg"
        raise DatasetFilesError(f"{dataset}: no images named {first} ... in {images_dir}. "
                                f"Expected {layout.replace('DIR', str(root))}")
    match_report(len(load_joints(mat)), image_paths, dataset, images_dir, digits)
    return mat, images_dir, image_paths


def read_lsp(root: str | os.PathLike, split: str = "train") -> list[dict]:
    """LSP records of ``split`` ("train", "test", "all") for the images present in root."""
    split_numbers(TRAIN_IMAGES * 2, split)  # validate the name before touching files
    mat, images_dir, image_paths = index_dataset(root, "LSP", LAYOUT, digits=4)
    return lsp_records(mat, images_dir, split, image_paths=image_paths)
