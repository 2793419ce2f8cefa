"""Single-person region-of-interest tracking from the previous frame's keypoints.

Why: the model sees a fixed-size crop. Letterboxing the whole frame wastes most of the
input on background and makes a distant person tiny. Like BlazePose and MoveNet, once the
person is found, the next frame is cropped around where the body was: the square is
centred on the hips' midpoint (the body's most stable point) and sized to contain both the
torso (scaled up, robust when limbs are missed) and every confidently detected joint. The
box is smoothed over frames so the crop does not jitter; when the mean confidence drops
below a threshold the track is declared lost and the caller goes back to the full frame.

With ``rotate`` (the default) the region is a *rotated* square, as in BlazePose: its angle
turns the torso (hips midpoint -> shoulders midpoint) upright in the crop, and the box's
extent is measured along those rotated axes, so a person leaning, cartwheeling or upside
down is seen upright by the model from frame to frame. The angle is smoothed like the box
(along the shorter way round) and kept when the torso is not confidently seen.

The box returned is the *body* box (no padding). The runtime pads a box by the same
factor as training crops (geometry.box_to_center_scale), so a tracked person fills the
model input exactly like the training people did. Pure numpy, no model here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# pose_score: mean joint confidence clipped to [0, 1], the search's score (one definition).
from mssh_keras.person_search import (confident_joints, pose_score, rotation_matrix, torso,
                                      torso_joints, upright_rotation)
from mssh_keras.skeleton import Skeleton


@dataclass(frozen=True)
class TrackerConfig:
    track_threshold: float = 0.3   # mean joint confidence (clipped to [0, 1]) to keep the track
    joint_threshold: float = 0.3   # a joint counts for the box extent at or above this
    min_joints: int = 4            # fewer confident joints than this: the most confident
    #                                this many shape the box (as the search's crops); the
    #                                track is lost by the pose score alone (track_threshold)
    torso_factor: float = 1.7      # half side >= this x torso length (shoulders-hips midpoints)
    body_factor: float = 1.15      # half side >= this x farthest confident joint from the centre
    smoothing: float = 0.6         # weight of the new box in the running average (1 = none)
    min_side: float = 16.0         # px, never crop tighter than this
    rotate: bool = True            # rotated ROI: the torso upright in the crop (BlazePose)
    rotate_deadband: float = 20.0  # degrees of torso lean left alone (noisy torsos of
    #                                upright people do not turn their crops; training covers
    #                                +-30 deg); from there to twice it the crop turns in
    #                                part, beyond by the whole lean

    def __post_init__(self):
        if not 0.0 < self.smoothing <= 1.0:
            raise ValueError(f"TrackerConfig.smoothing must be in (0, 1], got {self.smoothing}")
        if self.min_joints < 1:
            raise ValueError(f"TrackerConfig.min_joints must be >= 1, got {self.min_joints}")


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
        # Hips and shoulders under any spelling (left_hip, Left Hip...: joint_names). A
        # joint set without them (an animal, an object) is tracked by the box of its
        # confident joints alone, without the torso floor or the upright rotation.
        found = torso_joints(skeleton)
        self._hips, self._shoulders = found if found is not None else (None, None)
        self._center: np.ndarray | None = None
        self._half: float | None = None
        self._rotation = 0.0

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

    @property
    def rotation(self) -> float:
        """Degrees the crop of ``box`` is turned about its centre (geometry.crop_matrix's
        convention; 0 without ``rotate`` or while searching)."""
        return self._rotation if self._center is not None else 0.0

    def reset(self) -> None:
        self._center, self._half, self._rotation = None, None, 0.0

    def upright_angle(self, keypoints: np.ndarray, confidence: np.ndarray) -> float | None:
        """Crop rotation that turns this pose's confident torso upright, or None."""
        ok = np.asarray(confidence, np.float64) >= self.config.joint_threshold
        ok &= np.isfinite(np.asarray(keypoints, np.float64)).all(axis=1)
        return upright_rotation(*torso(keypoints, ok, self.skeleton))

    def body_box(self, keypoints: np.ndarray, confidence: np.ndarray,
                 rotation: float = 0.0) -> tuple[np.ndarray, float] | None:
        """Centre and half side of the box this pose calls for (unsmoothed), or None.
        The extent is measured along the crop's axes, turned by ``rotation`` degrees."""
        cfg = self.config
        pts = np.asarray(keypoints, np.float64)
        ok = confident_joints(confidence, cfg.joint_threshold, cfg.min_joints)
        ok &= np.isfinite(pts).all(axis=1)
        if int(ok.sum()) < 2:
            return None
        conf_pts = pts[ok]
        hips = _midpoint(pts, ok, *self._hips) if self._hips else None
        center = hips if hips is not None else (conf_pts.min(0) + conf_pts.max(0)) / 2.0
        # Square box: the farthest joint along the crop's x or y from the centre sets the
        # half side.
        along = (conf_pts - center) @ rotation_matrix(rotation).T
        half = cfg.body_factor * float(np.abs(along).max())
        shoulders = _midpoint(pts, ok, *self._shoulders) if self._shoulders else None
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
        rotation = self._rotation if self._center is not None else 0.0
        if cfg.rotate:
            found = self.upright_angle(keypoints, confidence)
            if found is not None:
                d = cfg.rotate_deadband
                if d > 0:  # continuous: 0 up to d, the whole lean from 2d on
                    found *= min(1.0, max(0.0, (abs(found) - d) / d))
                if self._center is None:
                    rotation = found
                else:  # smoothed along the shorter way round
                    turn = (found - rotation + 180.0) % 360.0 - 180.0
                    rotation = rotation + cfg.smoothing * turn
                rotation = (rotation + 180.0) % 360.0 - 180.0
        if pose_score(confidence) >= cfg.track_threshold:
            target = self.body_box(keypoints, confidence, rotation)
        if target is None:
            self.reset()
            return False
        self._rotation = rotation
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
