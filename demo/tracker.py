"""Single-person region-of-interest tracking from the previous frame's keypoints.

Why: the model sees a fixed-size crop. Letterboxing the whole frame wastes most of the
input on background and makes a distant person tiny. Like BlazePose and MoveNet, once the
person is found, the next frame is cropped around where the body was: the square is
centred on the hips' midpoint (the body's most stable point) and sized to contain both the
torso (scaled up, robust when limbs are missed) and every confidently detected joint. The
box is smoothed over frames so the crop does not jitter; when the mean confidence drops
below a threshold the track is declared lost and the caller goes back to the full frame.

The box returned is the *body* box (no padding). The runtime pads a box by the same
factor as training crops (geometry.box_to_center_scale), so a tracked person fills the
model input exactly like the training people did. Pure numpy, no model here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mssh_keras.skeleton import Skeleton


@dataclass(frozen=True)
class TrackerConfig:
    track_threshold: float = 0.3   # mean joint confidence (clipped to [0, 1]) to keep the track
    joint_threshold: float = 0.3   # a joint counts for the box extent at or above this
    min_joints: int = 4            # fewer confident joints than this: track lost
    torso_factor: float = 1.7      # half side >= this x torso length (shoulders-hips midpoints)
    body_factor: float = 1.15      # half side >= this x farthest confident joint from the centre
    smoothing: float = 0.6         # weight of the new box in the running average (1 = none)
    min_side: float = 16.0         # px, never crop tighter than this

    def __post_init__(self):
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"TrackerConfig.smoothing must be in (0, 1], got {self.smoothing}")
        if self.min_joints < 1:
            raise ValueError(f"TrackerConfig.min_joints must be >= 1, got {self.min_joints}")


def pose_score(confidence: np.ndarray) -> float:
    """Mean joint confidence clipped to [0, 1]: occluded joints may score below 0."""
    c = np.asarray(confidence, np.float64)
    return float(np.clip(c, 0.0, 1.0).mean()) if c.size else 0.0


def _midpoint(points: np.ndarray, ok: np.ndarray, a: int, b: int) -> np.ndarray | None:
    if ok[a] and ok[b]:
        return (points[a] + points[b]) / 2.0
    if ok[a] or ok[b]:
        return points[a] if ok[a] else points[b]
    return None


class RoiTracker:
    """Keeps the body box of the tracked person, or None when searching the full frame."""

    def __init__(self, skeleton: Skeleton, config: TrackerConfig | None = None):
        self.skeleton = skeleton
        self.config = config or TrackerConfig()
        names = skeleton.joints
        try:
            self._hips = (names.index("l_hip"), names.index("r_hip"))
            self._shoulders = (names.index("l_shoulder"), names.index("r_shoulder"))
        except ValueError:
            raise ValueError(f"skeleton {skeleton.name!r} lacks hips/shoulders; the tracker "
                             f"needs l_hip, r_hip, l_shoulder, r_shoulder") from None
        self._center: np.ndarray | None = None
        self._half: float | None = None

    @property
    def tracking(self) -> bool:
        return self._center is not None

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) body box to crop next, or None: use the full frame."""
        if self._center is None:
            return None
        (cx, cy), h = self._center, self._half
        return (cx - h, cy - h, cx + h, cy + h)

    def reset(self) -> None:
        self._center, self._half = None, None

    def body_box(self, keypoints: np.ndarray, confidence: np.ndarray
                 ) -> tuple[np.ndarray, float] | None:
        """Centre and half side of the box this pose calls for (unsmoothed), or None."""
        cfg = self.config
        pts = np.asarray(keypoints, np.float64)
        ok = np.asarray(confidence, np.float64) >= cfg.joint_threshold
        ok &= np.isfinite(pts).all(axis=1)
        if int(ok.sum()) < cfg.min_joints:
            return None
        conf_pts = pts[ok]
        hips = _midpoint(pts, ok, *self._hips)
        center = hips if hips is not None else (conf_pts.min(0) + conf_pts.max(0)) / 2.0
        # Square box: the farthest joint along x or y from the centre sets the half side.
        half = cfg.body_factor * float(np.abs(conf_pts - center).max())
        shoulders = _midpoint(pts, ok, *self._shoulders)
        if hips is not None and shoulders is not None:
            half = max(half, cfg.torso_factor * float(np.linalg.norm(shoulders - hips)))
        return center, max(half, cfg.min_side / 2.0)

    def update(self, keypoints: np.ndarray, confidence: np.ndarray,
               image_size: tuple[int, int]) -> bool:
        """Feed this frame's pose (image coords); returns whether the person is still tracked.

        image_size is (width, height): the centre is kept inside the image and the box no
        larger than twice the image's longer side, so a bad pose cannot run away.
        """
        cfg = self.config
        target = None
        if pose_score(confidence) >= cfg.track_threshold:
            target = self.body_box(keypoints, confidence)
        if target is None:
            self.reset()
            return False
        center, half = target
        w, h = (float(v) for v in image_size)
        center = np.clip(center, [0.0, 0.0], [w - 1.0, h - 1.0])
        half = min(half, max(w, h))
        if self._center is None:
            self._center, self._half = center, half
        else:
            a = cfg.smoothing
            self._center = self._center + a * (center - self._center)
            self._half = self._half + a * (half - self._half)
        return True
