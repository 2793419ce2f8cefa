"""Writes the annotated video and the per-frame keypoint JSON of a run.

The video is mp4 (``mp4v``) when this OpenCV build can encode it, otherwise Motion-JPEG
in an .avi, which every build can write. A video needs one frame size, so frames of a
different size (an image folder of mixed photos) are letterboxed into the first frame's.
The JSON is written at close(), also after Ctrl-C, so a run always leaves a usable file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from mssh_keras.paths import write_json_atomic

from .sources import _quiet_opencv

# (extension, fourcc) in order of preference.
_CODECS = ((".mp4", "mp4v"), (".avi", "MJPG"))


def letterbox_placement(image_wh: tuple[int, int], size: tuple[int, int]
                        ) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of an image of ``image_wh`` scaled to fit ``size`` (w, h)
    keeping its aspect ratio, centred."""
    (iw, ih), (w, h) = image_wh, size
    k = min(w / iw, h / ih)
    nw, nh = max(1, int(round(iw * k))), max(1, int(round(ih * k)))
    return (w - nw) // 2, (h - nh) // 2, nw, nh


def letterbox_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize keeping the aspect ratio and pad with black to exactly (width, height)."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    x0, y0, nw, nh = letterbox_placement((iw, ih), size)
    out = np.zeros((h, w, 3), np.uint8)
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoRecorder:
    """Opens lazily on the first frame (its size fixes the video's)."""

    def __init__(self, path: Path, fps: float):
        self.requested = Path(path)
        self.fps = float(fps)
        self.path: Path | None = None
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None

    def _open(self, size: tuple[int, int]) -> None:
        self.requested.parent.mkdir(parents=True, exist_ok=True)
        # Even sizes: several encoders reject odd widths/heights.
        size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        codecs = _CODECS if self.requested.suffix.lower() != ".avi" else _CODECS[1:]
        for ext, fourcc in codecs:
            path = self.requested.with_suffix(ext)
            with _quiet_opencv():
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), self.fps,
                                         size)
            if writer.isOpened():
                if ext != self.requested.suffix.lower():
                    print(f"note: writing {path.name} ({fourcc}) instead of "
                          f"{self.requested.name}: that codec is not available here",
                          file=sys.stderr)
                self._writer, self.path, self._size = writer, path, size
                return
            writer.release()
            path.unlink(missing_ok=True)
        raise OSError(f"cannot write a video to {self.requested}: OpenCV has neither an mp4 "
                      f"nor an MJPG encoder, or the folder is not writable")

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            self._open((image.shape[1], image.shape[0]))
        self._writer.write(letterbox_into(image, self._size))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class KeypointLog:
    """Per-frame keypoints plus run statistics, saved as one JSON document."""

    def __init__(self, path: Path, header: dict):
        self.path = Path(path)
        self.header = header
        self.frames: list[dict] = []

    def add(self, record: dict) -> None:
        self.frames.append(record)

    def close(self, stats: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {**self.header, "stats": stats, "frames": self.frames}
        write_json_atomic(self.path, doc, indent=1, allow_nan=False)


def keypoint_rows(keypoints: np.ndarray, confidence: np.ndarray) -> list[list[float]]:
    """(K, 2) + (K,) -> [[x, y, conf], ...] with plain, JSON-safe floats."""
    rows = []
    for (x, y), c in zip(np.asarray(keypoints, np.float64), np.asarray(confidence, np.float64)):
        rows.append([round(float(x), 2) if np.isfinite(x) else None,
                     round(float(y), 2) if np.isfinite(y) else None,
                     round(float(c), 4) if np.isfinite(c) else None])
    return rows
