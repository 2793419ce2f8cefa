"""Crop geometry shared by the training pipeline, decoding and every runtime (pure numpy).

Pixel convention: a pixel's *centre* has integer coordinates, 0-based (x right, y down).
A heatmap of stride ``s`` (input_size / heatmap_size) has its pixel ``u`` covering input
pixels ``[u*s, (u+1)*s)``, so its centre sits at input coordinate ``u*s + (s-1)/2``.
Horizontal flips map ``x -> W-1-x`` in both spaces, which keeps the two consistent.

A person crop is the square of side ``scale`` pixels around ``center`` (rotated by
``rotation`` degrees, counter-clockwise in the image), resized to ``size`` x ``size``.
"""
from __future__ import annotations

import numpy as np


def heatmap_to_input(u, stride: float):
    """Heatmap pixel coordinate -> input-image coordinate (works on numpy and tf tensors)."""
    return u * stride + (stride - 1.0) / 2.0


def input_to_heatmap(x, stride: float):
    return (x - (stride - 1.0) / 2.0) / stride


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
