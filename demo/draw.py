"""Drawing on BGR frames: the skeleton, the tracking box and the status overlay.

Colours follow the person's own sides (skeleton.sides) so a left/right swap by the model
is visible at a glance. Joints below the confidence threshold are not drawn, and a
bone is drawn only when both of its ends are; stronger joints get larger dots.
"""
from __future__ import annotations

import cv2
import numpy as np

from mssh_keras.skeleton import Skeleton

# BGR. Person-left blue, person-right orange, centre line green (as in the synthetic data:
# right limbs warm, left limbs cool).
SIDE_COLORS = {"L": (235, 140, 30), "R": (30, 120, 255), "C": (60, 200, 60)}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def limb_side(skeleton: Skeleton, a: int, b: int) -> str:
    """A bone's colour side: its joints' common side; a side bone joined to the centre
    line (shoulder-neck) keeps its side; a left-right bone (hip-hip) is centre."""
    sa, sb = skeleton.sides[a], skeleton.sides[b]
    if sa == sb:
        return sa
    if "C" in (sa, sb):
        return sb if sa == "C" else sa
    return "C"


def draw_pose(image: np.ndarray, keypoints: np.ndarray, confidence: np.ndarray,
              skeleton: Skeleton, threshold: float = 0.3) -> np.ndarray:
    """Draw bones and joints in place on a BGR uint8 image; returns it for chaining."""
    pts = np.asarray(keypoints, np.float64)
    conf = np.asarray(confidence, np.float64)
    ok = (conf >= threshold) & np.isfinite(pts).all(axis=1)
    scale = max(image.shape[:2]) / 640.0
    thick = max(1, int(round(3 * scale)))
    ipts = np.zeros(pts.shape, np.int64)
    ipts[ok] = np.rint(pts[ok]).astype(np.int64)
    for a, b in skeleton.limbs:
        if ok[a] and ok[b]:
            color = SIDE_COLORS[limb_side(skeleton, a, b)]
            cv2.line(image, tuple(map(int, ipts[a])), tuple(map(int, ipts[b])), color, thick,
                     cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        c = float(np.clip(conf[j], 0.0, 1.0))
        radius = max(2, int(round((2 + 3 * c) * scale)))
        color = SIDE_COLORS[skeleton.sides[j]]
        cv2.circle(image, tuple(map(int, ipts[j])), radius, color, -1, cv2.LINE_AA)
        cv2.circle(image, tuple(map(int, ipts[j])), radius, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def draw_box(image: np.ndarray, box, color=(200, 200, 200),
             rotation: float = 0.0) -> np.ndarray:
    """Outline the tracking box (x0, y0, x1, y1), turned by ``rotation`` degrees about its
    centre as the crop is (geometry.crop_matrix); None draws nothing."""
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        half = np.array([(x1 - x0) / 2.0, (y1 - y0) / 2.0])
        t = np.deg2rad(rotation)
        back = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # crop -> image
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        pts = np.round(center + corners @ back.T).astype(np.int32)
        cv2.polylines(image, [pts.reshape(-1, 1, 2)], True, color, 1, cv2.LINE_AA)
    return image


def draw_hud(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Status text, top left, on a dark band so it stays readable on any background."""
    scale = max(0.4, max(image.shape[:2]) / 1200.0)
    thick = max(1, int(round(scale * 1.5)))
    y = 0
    for text in lines:
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
        y += th + base + 4
        cv2.rectangle(image, (0, y - th - base - 4), (tw + 8, y + 2), (0, 0, 0), -1)
        cv2.putText(image, text, (4, y - base), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image
