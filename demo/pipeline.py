"""Per-frame pose pipeline: crop from the track -> model -> track update -> smoothing.

Why a separate piece: the window/recording app and the tests drive the same logic, and
this is the part that decides what the model sees. Order per frame:
  1. crop the tracked body box, turned by the tracked angle (one model call); when not
     tracking, search the whole frame coarse to fine (mssh_keras.person_search: the
     whole frame, then re-crops around the confident joints of the latest pass);
  2. if a tracked crop scores below the threshold, the person was lost: search the full
     frame again *on this frame* (BlazePose re-runs its detector the same way);
  3. update the box and its angle from the new keypoints; on loss, reset them and the filter;
  4. One-Euro smoothing of the keypoints, speeds measured in body sizes per second.
``static`` mode treats every frame on its own (the whole-frame search, no smoothing): the
right thing for a folder of unrelated photos. ``search=None`` makes every search a single
letterboxed pass of the whole frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mssh_keras.person_search import SearchConfig

from .one_euro import OneEuroFilter
from .tracker import RoiTracker, TrackerConfig, pose_score


@dataclass
class PipelineConfig:
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    min_cutoff: float = 1.0    # One-Euro, Hz
    beta: float = 10.0         # One-Euro, per (body size / s)
    d_cutoff: float = 1.0      # One-Euro, Hz
    smoothing: bool = True
    static: bool = False
    flip_test: bool = False
    # Whole-frame search on the first frame, after a track loss and in static mode; None:
    # one letterboxed pass of the whole frame.
    search: SearchConfig | None = field(default_factory=SearchConfig)


@dataclass
class FrameResult:
    keypoints: np.ndarray       # (K, 2) image coords, smoothed when smoothing is on
    confidence: np.ndarray      # (K,)
    raw_keypoints: np.ndarray   # (K, 2) straight from the model
    box: tuple | None           # tracked body box the pose was predicted in; None = found
    #                             by the whole-frame search
    tracking: bool              # a person is tracked after this frame
    score: float                # pose_score of the final pose
    model_ms: float             # model time summed over this frame's inferences
    inferences: int             # 1, or 2 when the full frame was searched again
    rotation: float = 0.0       # degrees the final pose's crop was turned (roi's angle)
    model_calls: int = 1        # crops run through the network this frame (search included)
    roi: tuple | None = None    # (body box, rotation) of the final pose's crop; None = the
    #                             letterboxed whole frame


class PosePipeline:
    def __init__(self, estimator, config: PipelineConfig | None = None):
        self.estimator = estimator
        self.config = config or PipelineConfig()
        self.tracker = RoiTracker(estimator.skeleton, self.config.tracker)
        self.filter = OneEuroFilter(self.config.min_cutoff, self.config.beta,
                                    self.config.d_cutoff)
        self.smoothing = self.config.smoothing and not self.config.static

    def toggle_smoothing(self) -> bool:
        self.smoothing = not self.smoothing
        self.filter.reset()
        return self.smoothing

    def reset(self) -> None:
        self.tracker.reset()
        self.filter.reset()

    def _predict(self, image_rgb: np.ndarray, box, rotation: float = 0.0):
        """One pass in the tracked crop, or the whole-frame search (``box`` None)."""
        if box is None:
            search = False if self.config.search is None else self.config.search
            return self.estimator.predict(image_rgb, box=None,
                                          flip_test=self.config.flip_test, search=search)
        return self.estimator.predict(image_rgb, box=box, flip_test=self.config.flip_test,
                                      rotation=rotation)

    def process(self, image_rgb: np.ndarray, timestamp: float) -> FrameResult:
        cfg = self.config
        box = None if cfg.static else self.tracker.box
        rotation = self.tracker.rotation if box is not None else 0.0
        pose = self._predict(image_rgb, box, rotation)
        model_ms, inferences = float(pose.model_ms), 1
        calls = int(getattr(pose, "model_calls", 1))
        if box is not None and pose_score(pose.confidence) < cfg.tracker.track_threshold:
            self.reset()
            box, rotation = None, 0.0
            pose = self._predict(image_rgb, None)
            model_ms += float(pose.model_ms)
            inferences += 1
            calls += int(getattr(pose, "model_calls", 1))
        crop_box = getattr(pose, "box", box)
        roi = None if crop_box is None else (tuple(crop_box),
                                             float(getattr(pose, "rotation", rotation)))
        kp = np.asarray(pose.keypoints, np.float32)
        conf = np.asarray(pose.confidence, np.float32)
        h, w = image_rgb.shape[:2]
        tracking = False if cfg.static else self.tracker.update(kp, conf, (w, h))
        out = kp
        if self.smoothing and tracking:
            x0, y0, x1, y1 = self.tracker.box
            body = max(x1 - x0, 1.0)
            out = self.filter(timestamp, kp, value_scale=1.0 / body).astype(np.float32)
        else:
            self.filter.reset()
        return FrameResult(out, conf, kp, box, tracking, pose_score(conf), model_ms, inferences,
                           rotation=0.0 if roi is None else roi[1], model_calls=calls,
                           roi=roi)
