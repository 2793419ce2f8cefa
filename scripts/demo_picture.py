"""The README's demo picture: the demo run headless on a few photos, frames side by side.

    python -m scripts.demo_picture ../shared/data/real/lspet_axelcarlier/images/im00020.jpg \\
        ... --out docs/demo.png

Runs ``python -m demo --headless`` (default model and settings unless ``--model`` is given)
on a folder of links to the photos, then tiles the annotated frames it wrote, each scaled
to the same height.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def read_frames(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def tile(frames: list[np.ndarray], height: int = 320, gap: int = 6) -> np.ndarray:
    """Frames scaled to ``height`` and placed left to right on white."""
    scaled = [cv2.resize(f, (round(f.shape[1] * height / f.shape[0]), height),
                         interpolation=cv2.INTER_AREA) for f in frames]
    width = sum(f.shape[1] for f in scaled) + gap * (len(scaled) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for f in scaled:
        out[:, x:x + f.shape[1]] = f
        x += f.shape[1] + gap
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--model", type=Path, help="default: the demo's default model")
    ap.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    ap.add_argument("--height", type=int, default=320)
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.photos if not p.is_file()]
    if missing:
        print(f"error: photos not found: {', '.join(missing)}", file=sys.stderr)
        return 2

    from demo import app

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, photo in enumerate(args.photos):  # numbered links keep the given order
            (folder / f"{i:03d}_{photo.name}").symlink_to(photo.resolve())
        out = Path(tmp) / "run.mp4"
        demo_args = ["--headless", "--source", str(folder), "--output", str(out)]
        if args.model:
            demo_args += ["--model", str(args.model)]
        rc = app.main(demo_args)
        if rc:
            return rc
        video = next(p for p in (out, out.with_suffix(".avi")) if p.exists())
        frames = read_frames(video)
    # Frames of other sizes were letterboxed into the first one's: crop the bars back off.
    crops = [_unletterbox(f, cv2.imread(str(p)).shape[:2]) for f, p in zip(frames, args.photos)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), tile(crops, args.height))
    print(f"wrote {args.out}")
    return 0


def _unletterbox(frame: np.ndarray, photo_hw: tuple[int, int]) -> np.ndarray:
    """The part of ``frame`` holding a photo of size ``photo_hw``, as the recorder placed it."""
    from demo.recorder import letterbox_placement

    x, y, w, h = letterbox_placement((photo_hw[1], photo_hw[0]), frame.shape[1::-1])
    return frame[y:y + h, x:x + w]


if __name__ == "__main__":
    sys.exit(main())
