"""Command line and main loop of the pose demo (webcam, video file or image folder).

    python -m demo                         # webcam 0, default TFLite model, window
    python -m demo --source clip.mp4 --headless      # annotated video + keypoint JSON
    python -m demo --source photos/ --headless       # image folder (each photo on its own)
    python -m demo --model export/model.onnx --record

Only this module talks to the user; sources/tracker/pipeline/draw/recorder each do one job.
Heavy imports (OpenCV, the runtime) happen after argument parsing, and the default TFLite
path never imports TensorFlow, so the demo starts quickly.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from mssh_keras import SHIPPED_MODEL_DIR

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = SHIPPED_MODEL_DIR
# Where the shipped model of each backend lives inside DEFAULT_MODEL_DIR.
DEFAULT_MODEL_NAMES = {"tflite": "model.tflite", "onnx": "model.onnx",
                       "savedmodel": "model_saved_model", "keras": "model.keras"}
DEFAULT_MODEL = DEFAULT_MODEL_DIR / DEFAULT_MODEL_NAMES["tflite"]
FALLBACK_THRESHOLD = 0.3  # for models without calibrated thresholds in their metadata
WINDOW = "mssh-keras pose demo (q/Esc quit, s smoothing, p/space snapshot)"


class DemoError(Exception):
    """A problem to report in one line, without a traceback (exit status 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``timeout``, ``kill``): stopped like Ctrl-C, so the
    video is finalised and the keypoint JSON written."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn the first SIGTERM into ``Terminated``; later ones are ignored while the run
    finishes its files. Outside the main thread (no signals there) it does nothing."""
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo", description="Single-person pose estimation demo: webcam, "
        "video file or image folder, with tracking and One-Euro smoothing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    io = p.add_argument_group("input / output")
    io.add_argument("--source", default="0",
                    help="camera index, video file, image file or folder of images")
    io.add_argument("--headless", action="store_true",
                    help="no window: write the annotated video and keypoint JSON")
    io.add_argument("--record", action="store_true",
                    help="show the window and also write the video and JSON")
    io.add_argument("--output", type=Path, default=None,
                    help="video path for --headless/--record (the JSON goes next to it); "
                         "default runs/demo/<source>-<time>.mp4")
    io.add_argument("--snapshot-dir", type=Path, default=Path("runs/demo"),
                    help="where p/space saves PNG snapshots")
    io.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    io.add_argument("--fps", type=_positive(float), default=30.0,
                    help="frame rate assumed for image folders (timestamps, recorded video)")
    m = p.add_argument_group("model")
    m.add_argument("--model", type=Path, default=None,
                   help=f"exported model (.tflite, .onnx, SavedModel folder, .keras); default "
                        f"{DEFAULT_MODEL.relative_to(ROOT)} (or its sibling for --backend)")
    m.add_argument("--backend", choices=tuple(DEFAULT_MODEL_NAMES), default=None,
                   help="runtime; default: from the model's extension (tflite for the default "
                        "model)")
    m.add_argument("--threads", type=_positive(int), default=2,
                   help="CPU threads for the runtime")
    m.add_argument("--trust-saved-model", action="store_true",
                   help="run a SavedModel whose graph does more than a pose network (file "
                        "I/O, Python calls...): a SavedModel is a program, so only for files "
                        "from people you trust")
    m.add_argument("--flip-test", action="store_true",
                   help="average with the mirrored image (about 2x model time)")
    t = p.add_argument_group("tracking and smoothing")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--static", action="store_true",
                      help="every frame on its own: full frame, no tracking/smoothing "
                           "(default for image folders)")
    mode.add_argument("--track", action="store_true",
                      help="track and smooth even for an image folder (video frames)")
    t.add_argument("--joint-threshold", type=float, default=None,
                   help="joints below this confidence are not drawn (default: the value "
                        f"calibrated for the model, in its metadata, else {FALLBACK_THRESHOLD})")
    t.add_argument("--track-threshold", type=float, default=None,
                   help="mean confidence below which the track is lost (full-frame search; "
                        "default: calibrated as above)")
    t.add_argument("--roi-smoothing", type=float, default=0.6,
                   help="weight of the new box per frame (1 = no box smoothing)")
    t.add_argument("--no-smoothing", action="store_true", help="start with smoothing off")
    t.add_argument("--min-cutoff", type=float, default=1.0, help="One-Euro min cutoff, Hz")
    t.add_argument("--beta", type=float, default=10.0,
                   help="One-Euro speed coefficient, per body size per second")
    t.add_argument("--d-cutoff", type=float, default=1.0, help="One-Euro derivative cutoff, Hz")
    t.add_argument("--show-box", action="store_true", help="draw the tracking box")
    t.add_argument("--no-search", action="store_true",
                   help="find the person with one letterboxed pass of the whole frame instead "
                        "of the coarse-to-fine search (first frame, track loss, static mode)")
    t.add_argument("--upright", action="store_true",
                   help="the search also tries crops turned so the torso points up (people "
                        "leaning or upside down; about 4 more model calls per search)")
    t.add_argument("--no-rotate", action="store_true",
                   help="track an axis-aligned box instead of a box turned with the torso")
    return p


def resolve_model(model: Path | None, backend: str | None) -> Path:
    if model is None:
        model = DEFAULT_MODEL_DIR / DEFAULT_MODEL_NAMES[backend or "tflite"]
        if not model.exists():
            raise DemoError(
                f"default model {model} is missing: the trained model has not been shipped "
                f"into this checkout yet. Pass --model with an exported model (.tflite, "
                f".onnx, SavedModel folder or .keras).")
    if not model.exists():
        raise DemoError(f"model {model} does not exist")
    return model


def resolve_thresholds(args: argparse.Namespace, metadata: dict) -> tuple[float, float, str]:
    """(joint, track, where from): the command line wins, then the thresholds calibrated
    for this model on validation people (``scripts/ship_model.py`` writes them into the
    metadata), then FALLBACK_THRESHOLD. A briefly trained model's confidences live far
    below a fully trained one's, so one fixed number would hide every joint."""
    calibrated = metadata.get("thresholds") or {}
    joint = (args.joint_threshold if args.joint_threshold is not None
             else calibrated.get("joint_threshold", FALLBACK_THRESHOLD))
    track = (args.track_threshold if args.track_threshold is not None
             else calibrated.get("track_threshold", FALLBACK_THRESHOLD))
    given = [n for n, v in (("joint", args.joint_threshold), ("track", args.track_threshold))
             if v is not None]
    source = "model metadata (calibrated)" if calibrated else "fallback default"
    if given:
        source = ("command line" if len(given) == 2
                  else f"{source}; {given[0]} threshold from the command line")
    return float(joint), float(track), source


def gui_problem() -> str | None:
    """Why no window can be opened, or None. The pip 'headless' OpenCV has no imshow."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:") and line.split(":", 1)[1].strip().upper() == "NONE":
            return ("this OpenCV build has no GUI support (opencv-python-headless), so no "
                    "window can be shown. Install the GUI build (pip uninstall "
                    "opencv-python-headless && pip install opencv-python) or run with "
                    "--headless to write a video and keypoint JSON instead.")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error as e:
        return (f"cannot open a window ({str(e).strip().splitlines()[-1]}); is a display "
                f"available? Use --headless to write a video and keypoint JSON instead.")
    return None


def default_output(source_description: str) -> Path:
    stem = Path(source_description.rstrip("/")).stem or "source"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)
    return Path("runs/demo") / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}.mp4"


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    show = not args.headless
    write = args.headless or args.record
    model_path = resolve_model(args.model, args.backend)

    import cv2
    import numpy as np

    from .draw import draw_box, draw_hud, draw_pose
    from .one_euro import OneEuroFilter
    from .pipeline import PipelineConfig, PosePipeline
    from .recorder import KeypointLog, VideoRecorder, keypoint_rows
    from .sources import SourceError, open_source
    from .tracker import TrackerConfig
    from mssh_keras.person_search import SearchConfig

    try:  # bad tuning values are reported before anything is opened
        cfg = PipelineConfig(
            tracker=TrackerConfig(smoothing=args.roi_smoothing, rotate=not args.no_rotate),
            min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff,
            smoothing=not args.no_smoothing, flip_test=args.flip_test,
            search=None if args.no_search else SearchConfig(upright=args.upright))
        OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
    except ValueError as e:
        raise DemoError(str(e)) from None
    if show:
        problem = gui_problem()
        if problem:
            raise DemoError(problem)
    try:
        source = open_source(args.source, fps=args.fps)
    except SourceError as e:
        raise DemoError(str(e)) from None

    from mssh_keras.paths import portable_path
    from mssh_keras.runtime import PoseEstimator

    t_load = time.perf_counter()
    try:
        estimator = PoseEstimator(str(model_path), backend=args.backend,
                                  num_threads=args.threads,
                                  trust_saved_model=args.trust_saved_model)
    except ImportError as e:
        source.close()
        raise DemoError(f"the runtime for {model_path} is not installed: {e}") from None
    except Exception as e:  # noqa: BLE001 - any load failure is a user-facing problem
        source.close()
        if type(e).__name__ == "ModelLoadError":  # already names the file and the problem
            raise DemoError(str(e)) from None
        raise DemoError(f"cannot load model {model_path}: not a usable "
                        f"{args.backend or model_path.suffix.lstrip('.') or 'model'} file "
                        f"({type(e).__name__}: {e})") from None
    load_s = time.perf_counter() - t_load

    joint_threshold, track_threshold, thresholds_from = resolve_thresholds(
        args, estimator.metadata)
    cfg.tracker = dataclasses.replace(cfg.tracker, joint_threshold=joint_threshold,
                                      track_threshold=track_threshold)
    static = args.static or (source.is_still and not args.track)
    cfg.static = static
    pipeline = PosePipeline(estimator, cfg)
    skeleton = estimator.skeleton

    recorder = log = None
    if write:
        out = args.output or default_output(source.description)
        recorder = VideoRecorder(out, source.fps)
        log = KeypointLog(out.with_suffix(".json"), {
            "source": source.description, "model": portable_path(model_path),
            "backend": estimator.backend, "input_size": estimator.input_size,
            "skeleton": skeleton.to_dict(), "static": static, "flip_test": args.flip_test,
            "smoothing": {"min_cutoff": args.min_cutoff, "beta": args.beta,
                          "d_cutoff": args.d_cutoff},
            "joint_threshold": joint_threshold, "track_threshold": track_threshold,
            "thresholds_from": thresholds_from,
            "search": None if cfg.search is None else dataclasses.asdict(cfg.search),
            "rotate": cfg.tracker.rotate,
            "keypoint_format": "[x, y, confidence], image pixels, 0-based pixel centres"})

    fps_ema, model_ms_all, calls_all, startup_s = None, [], [], None
    t_prev = t_first = None
    n = 0
    try:
        for frame in source:
            rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
            res = pipeline.process(rgb, frame.timestamp)
            now = time.perf_counter()
            if startup_s is None:
                startup_s, t_first = now - t_start, now
            if t_prev is not None:
                inst = 1.0 / max(now - t_prev, 1e-6)
                fps_ema = inst if fps_ema is None else 0.9 * fps_ema + 0.1 * inst
            t_prev = now
            model_ms_all.append(res.model_ms)
            calls_all.append(res.model_calls)

            vis = frame.image.copy()
            if args.show_box:
                draw_box(vis, pipeline.tracker.box, rotation=pipeline.tracker.rotation)
            draw_pose(vis, res.keypoints, res.confidence, skeleton, joint_threshold)
            mode = "static" if static else ("tracking" if res.tracking else "searching")
            draw_hud(vis, [f"FPS {fps_ema:5.1f}" if fps_ema else "FPS   -  ",
                           f"model {res.model_ms:5.1f} ms, {res.model_calls} call"
                           f"{'s' if res.model_calls > 1 else ''}",
                           f"{mode}, smoothing {'on' if pipeline.smoothing else 'off'}"])
            if recorder is not None:
                recorder.write(vis)
                log.add({"index": frame.index, "timestamp": round(frame.timestamp, 4),
                         "name": frame.name, "image_size": [rgb.shape[1], rgb.shape[0]],
                         "keypoints": keypoint_rows(res.keypoints, res.confidence),
                         "raw_keypoints": keypoint_rows(res.raw_keypoints, res.confidence),
                         "box": None if res.box is None else [round(float(v), 2)
                                                              for v in res.box],
                         "tracking": res.tracking, "score": round(res.score, 4),
                         "model_ms": round(res.model_ms, 3), "model_calls": res.model_calls,
                         "rotation": round(res.rotation, 2),
                         "roi": None if res.roi is None else {
                             "box": [round(float(v), 2) for v in res.roi[0]],
                             "rotation": round(res.roi[1], 2)},
                         "fps": None if fps_ema is None else round(fps_ema, 2)})
            n += 1
            if show:
                cv2.imshow(WINDOW, vis)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    break
                if key == ord("s"):
                    pipeline.toggle_smoothing()
                elif key in (ord("p"), ord(" ")):
                    args.snapshot_dir.mkdir(parents=True, exist_ok=True)
                    snap = args.snapshot_dir / f"snapshot-{datetime.now():%Y%m%d-%H%M%S-%f}.png"
                    cv2.imwrite(str(snap), vis)
                    print(f"saved {snap}")
                if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    break
            if args.max_frames is not None and n >= args.max_frames:
                break
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): finish the files
        print("terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted",
              file=sys.stderr)
    except SourceError as e:
        raise DemoError(str(e)) from None
    except OSError as e:  # the video cannot be written (codec, disk, permissions)
        raise DemoError(str(e)) from None
    finally:
        source.close()
        elapsed = (time.perf_counter() - t_first) if t_first is not None else 0.0
        stats = {"frames": n,
                 "mean_fps": round((n - 1) / elapsed, 2) if n > 1 and elapsed > 0 else None,
                 "mean_model_ms": round(float(np.mean(model_ms_all)), 3) if n else None,
                 "median_model_ms": round(float(np.median(model_ms_all)), 3) if n else None,
                 "mean_model_calls": round(float(np.mean(calls_all)), 3) if n else None,
                 "model_load_s": round(load_s, 3),
                 "startup_s": None if startup_s is None else round(startup_s, 3)}
        if recorder is not None:
            recorder.close()
            if n:  # no frame (unreadable source): leave no empty files behind
                log.close(stats)
        if show:
            cv2.destroyAllWindows()
    if recorder is not None and n:
        print(f"wrote {recorder.path} and {log.path}")
    fps_txt = f"{stats['mean_fps']:.1f}" if stats["mean_fps"] else "-"
    model_txt = f"{stats['mean_model_ms']:.1f}" if stats["mean_model_ms"] is not None else "-"
    print(f"{n} frames, {fps_txt} FPS end to end, model {model_txt} ms/frame, "
          f"first frame after {startup_s or 0:.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 1:
        print("error: --max-frames must be >= 1", file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt():
            return run(args)
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # before the first frame: nothing written yet
        print("terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
