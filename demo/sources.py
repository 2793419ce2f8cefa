"""Frame sources: a webcam, a video file, an image folder or a single image.

All of them yield :class:`Frame` (BGR uint8, as OpenCV reads and writes) with a timestamp
in seconds, which the smoothing filter needs. Bad input never surfaces as an OpenCV
traceback: a camera that cannot be opened, a missing path or an unreadable video raise
:class:`SourceError` with a message that names the problem; a corrupt image inside a
folder is skipped with a warning so one bad file does not end a long run.
"""
from __future__ import annotations

import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message is meant for the user."""


@dataclass
class Frame:
    index: int          # 0-based position among the frames actually delivered
    timestamp: float    # seconds since the first frame
    image: np.ndarray   # (H, W, 3) uint8 BGR
    name: str           # file name, or "camera 0" / "video.mp4#12"


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@contextmanager
def _quiet_opencv():
    """Silence OpenCV's own WARN lines while probing: the demo prints a clearer message."""
    log = cv2.utils.logging
    old = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(old)


class FrameSource:
    """Base: iterate to get frames, then close(). ``fps`` is the nominal rate (recording)."""
    fps: float = 30.0
    description: str = ""
    is_stream: bool = False   # True for live cameras (no natural end)
    is_still: bool = False    # True for unrelated still images (tracking across them is moot)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CameraSource(FrameSource):
    is_stream = True

    def __init__(self, index: int):
        self.description = f"camera {index}"
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(index)
            ok = self._cap.isOpened()
            first = self._cap.read()[1] if ok else None
        if first is None:
            self._cap.release()
            raise SourceError(
                f"cannot open camera {index}: no camera at that index, or it is busy or "
                f"not permitted. Try another --source index, or a video file / image folder.")
        self._first = first
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 1 <= fps <= 240 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        image, i = self._first, 0
        while image is not None:
            yield Frame(i, time.monotonic() - start, image, f"{self.description}#{i}")
            ok, image = self._cap.read()
            image = image if ok else None
            i += 1

    def close(self) -> None:
        self._cap.release()


class VideoSource(FrameSource):
    def __init__(self, path: Path):
        self.description = str(path)
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(str(path))
            ok = self._cap.isOpened()
            first = self._cap.read()[1] if ok else None
        if first is None:
            self._cap.release()
            raise SourceError(f"cannot read video {path}: not a video OpenCV can decode, "
                              f"or the file is empty/corrupt")
        self._first, self._name = first, path.name
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 1 <= fps <= 240 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        # Timestamps from the nominal rate: deterministic, unlike decoder-reported times.
        image, i = self._first, 0
        while image is not None:
            yield Frame(i, i / self.fps, image, f"{self._name}#{i}")
            with _quiet_opencv():
                ok, image = self._cap.read()
            image = image if ok else None
            i += 1

    def close(self) -> None:
        self._cap.release()


def _natural_key(path: Path):
    """frame2.png before frame10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class ImageFolderSource(FrameSource):
    """Images of a folder in natural name order; unreadable ones are skipped with a warning."""

    def __init__(self, paths: list[Path], description: str, fps: float = 30.0,
                 warn: Callable[[str], None] = _warn_stderr, still: bool = True):
        if not paths:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {description}")
        self._paths, self.description, self.fps, self._warn = paths, description, fps, warn
        self.is_still = still
        self.skipped: list[Path] = []

    @classmethod
    def from_folder(cls, folder: Path, fps: float = 30.0,
                    warn: Callable[[str], None] = _warn_stderr) -> "ImageFolderSource":
        paths = sorted((p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key)
        return cls(paths, str(folder), fps, warn)

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        for path in self._paths:
            with _quiet_opencv():
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                self.skipped.append(path)
                self._warn(f"skipping unreadable or corrupt image {path}")
                continue
            yield Frame(i, i / self.fps, image, path.name)
            i += 1
        if i == 0:
            raise SourceError(f"none of the {len(self._paths)} images in {self.description} "
                              f"could be read")


def open_source(spec: str | int, fps: float = 30.0,
                warn: Callable[[str], None] = _warn_stderr) -> FrameSource:
    """'0' / 0 -> camera 0; a folder -> its images; an image file -> that image; else a video."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return CameraSource(int(spec))
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source {spec!r} does not exist (give a camera index, a video file "
                          f"or a folder of images)")
    if path.is_dir():
        return ImageFolderSource.from_folder(path, fps, warn)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        src = ImageFolderSource([path], str(path), fps, warn)
        if cv2.imread(str(path)) is None:
            raise SourceError(f"cannot read image {path}: not an image OpenCV can decode, "
                              f"or the file is corrupt")
        return src
    return VideoSource(path)
