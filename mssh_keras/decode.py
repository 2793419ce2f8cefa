"""Heatmaps -> joint coordinates, shared by every runtime (pure numpy, no TensorFlow).

Pixel convention (see geometry.py): a heatmap pixel's *centre* has integer coordinates,
0-based, x to the right and y down, so the peak of a Gaussian drawn at pixel (u, v) decodes
to exactly (u, v). ``geometry.heatmap_to_input`` maps those coordinates into the network's
input crop, and the inverse crop matrix maps the crop into the original image.

The quarter-pixel shift (Newell et al. 2016, HRNet's ``get_final_preds``) moves the argmax
0.25 px toward the higher of its two neighbours, separately in x and in y. For a symmetric
peak at sub-pixel offset ``d`` (|d| <= 0.5) from the argmax pixel, the per-axis error drops
from |d| (plain argmax, mean 0.25 px) to |d - 0.25 sign(d)| <= 0.25 px (mean 0.125 px).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import geometry


def _check_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    hm = np.asarray(heatmaps)
    if hm.ndim not in (3, 4):
        raise ValueError(f"heatmaps must be (h, w, K) or (B, h, w, K), got shape {hm.shape}")
    if hm.shape[-3] < 1 or hm.shape[-2] < 1 or hm.shape[-1] < 1:
        raise ValueError(f"heatmaps have an empty axis: shape {hm.shape}")
    if not np.issubdtype(hm.dtype, np.number):
        raise ValueError(f"heatmaps must be numeric, got dtype {hm.dtype}")
    return hm


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint argmax plus the quarter-pixel shift.

    heatmaps: (h, w, K) or (B, h, w, K). Returns ``coords`` (..., K, 2) float32 as (x, y)
    in heatmap pixels (pixel centres at integers, see module docstring) and ``conf``
    (..., K) float32, the maximum of each heatmap. The shift is applied on an axis only when
    both neighbours exist (0 < x < w-1, resp. 0 < y < h-1); ties (equal neighbours) do not
    shift. An all-constant heatmap decodes to its first pixel (0, 0) with conf = that value:
    callers judge low-confidence joints by ``conf``.
    """
    hm = _check_heatmaps(heatmaps)
    single = hm.ndim == 3
    if single:
        hm = hm[None]
    b, h, w, k = hm.shape
    if np.isnan(hm).any():
        raise ValueError("heatmaps contain NaN; the model output is broken")
    flat = np.moveaxis(hm, -1, 1).reshape(b, k, h * w)           # (B, K, h*w)
    idx = np.argmax(flat, axis=-1)                                # (B, K)
    conf = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    ys, xs = np.divmod(idx, w)

    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
    x = xs.astype(np.float64)
    y = ys.astype(np.float64)
    inner_x = (xs > 0) & (xs < w - 1)
    inner_y = (ys > 0) & (ys < h - 1)
    # Clipped neighbour indices keep the gathers in bounds; masks discard the border cases.
    right = hm[bi, ys, np.minimum(xs + 1, w - 1), ki].astype(np.float64)
    left = hm[bi, ys, np.maximum(xs - 1, 0), ki].astype(np.float64)
    down = hm[bi, np.minimum(ys + 1, h - 1), xs, ki].astype(np.float64)
    up = hm[bi, np.maximum(ys - 1, 0), xs, ki].astype(np.float64)
    x += np.where(inner_x, 0.25 * np.sign(right - left), 0.0)
    y += np.where(inner_y, 0.25 * np.sign(down - up), 0.0)

    coords = np.stack([x, y], axis=-1).astype(np.float32)
    conf = conf.astype(np.float32)
    if single:
        return coords[0], conf[0]
    return coords, conf


def heatmap_coords_to_image(coords: np.ndarray, stride: float,
                            crop_matrix: np.ndarray) -> np.ndarray:
    """Heatmap (x, y) -> input crop (geometry.heatmap_to_input) -> original image.

    coords: (K, 2) with crop_matrix (2, 3), or (B, K, 2) with crop_matrix (2, 3) shared or
    (B, 2, 3) per example. ``crop_matrix`` is the image->crop matrix used to make the input
    (geometry.crop_matrix, flip included), so a flipped crop is undone here as well.
    """
    pts = np.asarray(coords, dtype=np.float64)
    m = np.asarray(crop_matrix, dtype=np.float64)
    if pts.shape[-1] != 2 or pts.ndim not in (2, 3):
        raise ValueError(f"coords must be (K, 2) or (B, K, 2), got shape {pts.shape}")
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    crop_pts = geometry.heatmap_to_input(pts, float(stride))
    if m.shape == (2, 3):
        return geometry.transform_points(crop_pts, geometry.invert_affine(m))
    if m.ndim == 3 and m.shape[1:] == (2, 3) and pts.ndim == 3 and m.shape[0] == pts.shape[0]:
        return np.stack([geometry.transform_points(p, geometry.invert_affine(mi))
                         for p, mi in zip(crop_pts, m)])
    raise ValueError(f"crop_matrix must be (2, 3) or (B, 2, 3) matching coords {pts.shape}, "
                     f"got shape {m.shape}")


def flip_back(heatmaps: np.ndarray, flip_permutation: Sequence[int]) -> np.ndarray:
    """Undo a horizontal input flip on predicted heatmaps: mirror x, swap left/right channels.

    Flip test: ``(hm + flip_back(hm_of_flipped_input, skeleton.flip_permutation)) / 2``.
    With geometry's convention a flip is x -> W-1-x in input *and* heatmap space (heatmap
    pixel u covers input pixels [u*s, (u+1)*s), which the flip maps onto heatmap pixel
    w-1-u exactly), so no extra one-pixel shift is needed, unlike HRNet's flip_back.
    """
    hm = _check_heatmaps(heatmaps)
    perm = np.asarray(list(flip_permutation), dtype=np.int64)
    k = hm.shape[-1]
    if perm.shape != (k,) or sorted(perm.tolist()) != list(range(k)):
        raise ValueError(f"flip_permutation must be a permutation of range({k}) "
                         f"(the heatmaps' channels), got {perm.tolist()}")
    return hm[..., ::-1, :][..., perm]


def encode_gaussian(coord_xy: Sequence[float], size_hw: tuple[int, int],
                    sigma: float) -> np.ndarray:
    """Unnormalised Gaussian (peak 1 at ``coord_xy``) on an (h, w) grid of pixel centres.

    For round-trip tests of the decoder only; the training targets are made in the data
    pipeline. Uses the same convention: pixel (u, v) is evaluated at (x, y) = (u, v).
    """
    h, w = (int(s) for s in size_hw)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    cx, cy = (float(c) for c in coord_xy)
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)[:, None]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2.0 * sigma ** 2)).astype(np.float32)
