"""Crop geometry shared by the training pipeline, decoding and every runtime (pure numpy).

Pixel convention: a pixel's *centre* has integer coordinates, 0-based (x right, y down).
Horizontal flips map ``x -> W-1-x``. Heatmap pixels and their stride: ``mssh_keras.codec``.

A person crop is the square of side ``scale`` pixels around ``center`` (rotated by
``rotation`` degrees, counter-clockwise in the image), resized to ``size`` x ``size``.
"""
from __future__ import annotations

import numpy as np


def crop_matrix(center, scale: float, size: int, rotation: float = 0.0,
                flip: bool = False) -> np.ndarray:
    """2x3 affine matrix mapping original-image pixels to crop pixels.

    Pixel *centres* map to pixel centres: the crop's centre (size-1)/2 receives ``center``.
    ``flip`` mirrors the crop horizontally (x -> size-1-x) after the rotation.
    """
    cx, cy = float(center[0]), float(center[1])
    k = size / float(scale)
    t = np.deg2rad(rotation)
    cos, sin = np.cos(t) * k, np.sin(t) * k
    # Rotate about the person's centre; positive angles turn the person counter-clockwise.
    a = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    c = (size - 1) / 2.0
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = a
    m[:, 2] = np.array([c, c]) - a @ np.array([cx, cy])
    if flip:
        m[0, :] = -m[0, :]
        m[0, 2] += size - 1
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points of shape (..., 2)."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def box_to_center_scale(box, padding: float = 1.25) -> tuple[np.ndarray, float]:
    """(x0, y0, x1, y1) box -> centre and square side (the longer side times ``padding``)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0], dtype=np.float32)
    return center, max(x1 - x0, y1 - y0, 1.0) * padding


def check_box(box, image_wh: tuple[int, int],
              require_overlap: bool = True) -> tuple[float, float, float, float]:
    """A person box checked and normalised by the one rule every runtime applies.

    ``box`` is (x0, y0, x1, y1), corners in image pixels (not (x, y, width, height)).
    ValueError, naming the box and the image size, when it is not 4 finite numbers, when
    x1 <= x0 or y1 <= y0 (reversed or empty) or, with ``require_overlap``, when it lies
    wholly outside the image [0, W] x [0, H]. A box may reach past the image's edges (the
    crop is padded with black, as training crops of people at the border are), but by at
    most the image's longer side L: its coordinates are clipped to [-L, W + L] x
    [-L, H + L], which turns a huge box (e.g. +-1e30) into a bounded one.
    """
    w, h = (float(v) for v in image_wh)
    try:
        values = np.asarray(box, np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size != 4 or not np.isfinite(values).all():
        raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box!r} is reversed or empty: it needs x0 < x1 and y0 < y1 "
                         f"(corners (x0, y0, x1, y1), not (x, y, width, height))")
    if require_overlap and (x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h):
        raise ValueError(f"box {box!r} lies wholly outside the {w:g}x{h:g} image")
    reach = max(w, h)
    x0, x1 = (min(max(v, -reach), w + reach) for v in (x0, x1))
    y0, y1 = (min(max(v, -reach), h + reach) for v in (y0, y1))
    return x0, y0, x1, y1


# LSP/LSPET carry no person box: the box of the annotated joints (head top to ankles) is
# the body's extent; 1.25 adds room for hands/feet beyond the wrist/ankle joints and
# matches MPII's hourglass convention (scale x 1.25).
JOINT_BOX_PADDING = 1.25


def center_scale_from_joints(joints: np.ndarray, valid: np.ndarray,
                             padding: float = JOINT_BOX_PADDING) -> tuple[np.ndarray, float]:
    """Person centre/scale from its annotated joints; raises if none is annotated."""
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise ValueError("no annotated joint to derive a person box from")
    pts = np.asarray(joints, np.float64)[valid]
    return box_to_center_scale((*pts.min(0), *pts.max(0)), padding)
