"""Demo speed with the whole-frame search against the single whole-frame pass.

The demo searches the whole frame coarse to fine (``mssh_keras.person_search``) on the
first frame, after a track loss and on every frame in static mode; while tracking it runs
one pass in the tracked, rotated crop. This measures what that costs, end to end
(``python -m demo --headless``: decoding, model, tracking, smoothing, drawing, video and
JSON writing) and per frame (``PosePipeline.process`` alone), for:

- ``search``: the default (whole frame, then re-crops around the confident joints of the
  latest pass; the best-scoring pass wins);
- ``single``: ``--no-search``, one letterboxed pass of the whole frame instead;
- ``upright``: ``--upright``, the search also tries crops turned upright.

Clips: ``tracking``, a real LSPET validation photo sliding back and forth across a wider
canvas (the person is tracked; the search runs on the first frame and after losses), and
``static``, a folder of validation photos (every photo searched on its own).

    python benchmarks/demo_speed.py                      # shipped TFLite model, 2 threads
    python benchmarks/demo_speed.py --model runs/x/model.tflite --frames 300

Writes ``benchmarks/results/demo_speed.json``. Rounds are interleaved (each mode once per
round) so load from other jobs hits every mode alike; the load average is recorded.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402 - after the sys.path line
import numpy as np  # noqa: E402

from mssh_keras import SHIPPED_MODEL_DIR  # noqa: E402
from mssh_keras.paths import portable_path, write_json_atomic  # noqa: E402

LSPET = ROOT.parent / "shared/data/real/lspet_axelcarlier"
TRACK_PHOTO = "im00330.jpg"   # one the shipped model holds the track on (tests/test_demo.py)
MODES = {"search": [], "single": ["--no-search"], "upright": ["--upright"]}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR / "model.tflite")
    ap.add_argument("--manual-dir", type=Path, default=LSPET, help="LSPET folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=150, help="frames of the tracking clip")
    ap.add_argument("--photos", type=int, default=30, help="photos of the static folder")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/demo_speed.json")
    return ap.parse_args(argv)


def tracking_clip(records: list[dict], n: int, step: float = 6.0) -> list[np.ndarray]:
    """BGR frames: the photo sliding back and forth on a grey canvas 120 px wider."""
    (rec,) = [r for r in records if r["image_id"] == TRACK_PHOTO]
    image = cv2.imread(str(rec["path"]))
    h, w = image.shape[:2]
    span = 120
    frames = []
    for i in range(n):
        x = int(round(np.abs(((i * step) % (2 * span)) - span)))
        canvas = np.full((h, w + span, 3), 90, np.uint8)
        canvas[:, x:x + w] = image
        frames.append(canvas)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def run_demo(source: Path, model: Path, threads: int, extra: list[str], out: Path) -> dict:
    """``python -m demo --headless`` in this process; its JSON (stats + frames)."""
    from demo import app

    argv = ["--headless", "--source", str(source), "--model", str(model), "--threads",
            str(threads), "--output", str(out), *extra]
    rc = app.main(argv)
    if rc != 0:
        raise SystemExit(f"demo failed ({rc}): {' '.join(argv)}")
    doc = json.loads(out.with_suffix(".json").read_text())
    frames = doc["frames"]
    searched = [f for f in frames if f["box"] is None]
    return {"frames": len(frames), "mean_fps": doc["stats"]["mean_fps"],
            "mean_model_ms": doc["stats"]["mean_model_ms"],
            "mean_model_calls": doc["stats"]["mean_model_calls"],
            "searched_frames": len(searched),
            "calls_per_search": (round(float(np.mean([f["model_calls"] for f in searched])),
                                       3) if searched else None),
            "tracking_frames": sum(f["tracking"] for f in frames)}


def pipeline_times(model: Path, threads: int, frames: list[np.ndarray],
                   clip: list[np.ndarray]) -> dict:
    """Per-frame wall time of PosePipeline.process alone (no decoding, drawing, writing):
    a whole-frame search, a single whole-frame pass (on the photos ``frames``), and one
    pass in a tracked crop (the frames of ``clip`` predicted in the tracked box)."""
    from demo.pipeline import PipelineConfig, PosePipeline
    from mssh_keras.person_search import SearchConfig
    from mssh_keras.runtime import PoseEstimator

    est = PoseEstimator(model, num_threads=threads)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    out = {}
    for name, cfg in (("search_frame", PipelineConfig(static=True)),
                      ("single_pass_frame", PipelineConfig(static=True, search=None)),
                      ("upright_search_frame",
                       PipelineConfig(static=True, search=SearchConfig(upright=True)))):
        pipe = PosePipeline(est, cfg)
        ms, calls = [], []
        for i, img in enumerate(rgb):
            t0 = time.perf_counter()
            res = pipe.process(img, i / 30.0)
            ms.append((time.perf_counter() - t0) * 1000.0)
            calls.append(res.model_calls)
        out[name] = {"median_ms": round(float(np.median(ms)), 2),
                     "mean_calls": round(float(np.mean(calls)), 2)}
    thr = est.metadata.get("thresholds", {})
    from demo.tracker import TrackerConfig
    cfg = PipelineConfig(tracker=TrackerConfig(
        joint_threshold=thr.get("joint_threshold", 0.3),
        track_threshold=thr.get("track_threshold", 0.3)))
    pipe = PosePipeline(est, cfg)
    tracked = []
    for i, img in enumerate(cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in clip):
        t0 = time.perf_counter()
        res = pipe.process(img, i / 30.0)
        if res.box is not None:
            tracked.append((time.perf_counter() - t0) * 1000.0)
    out["tracked_frame"] = {"median_ms": round(float(np.median(tracked)), 2) if tracked
                            else None, "frames": len(tracked), "mean_calls": 1.0}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    from mssh_keras.data.lspet import read_lspet

    records = read_lspet(args.manual_dir, "val")
    load_before = os.getloadavg()
    results: dict = {"tracking": {m: [] for m in MODES}, "static": {m: [] for m in MODES}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip_frames = tracking_clip(records, args.frames)
        clip = write_video(tmp / "tracking.avi", clip_frames)
        folder = tmp / "photos"
        folder.mkdir()
        for r in records[:args.photos]:
            (folder / Path(r["path"]).name).symlink_to(Path(r["path"]).resolve())
        for k in range(args.rounds):
            for clip_name, source in (("tracking", clip), ("static", folder)):
                for mode, extra in MODES.items():
                    res = run_demo(source, args.model, args.threads, extra,
                                   tmp / f"{clip_name}-{mode}-{k}.mp4")
                    results[clip_name][mode].append(res)
                    print(f"round {k} {clip_name:8s} {mode:8s} {res['mean_fps']:6.1f} FPS end "
                          f"to end, {res['mean_model_calls']:.2f} model calls/frame, "
                          f"{res['searched_frames']} searched frames", flush=True)
        per_frame = pipeline_times(args.model, args.threads,
                                   [cv2.imread(str(r["path"])) for r in records[:args.photos]],
                                   clip_frames)
    load_after = os.getloadavg()
    summary = {c: {m: {"median_fps": round(float(np.median([r["mean_fps"] for r in runs])), 2),
                       **{k: runs[-1][k] for k in ("frames", "mean_model_calls",
                                                    "searched_frames", "calls_per_search",
                                                    "tracking_frames")}}
                   for m, runs in modes.items()} for c, modes in results.items()}
    doc = {
        "what": "python -m demo --headless end to end (decode, model, track, smooth, draw, "
                "write video + JSON) per mode, and PosePipeline.process per frame",
        "model": portable_path(args.model),
        "threads": args.threads,
        "clips": {"tracking": f"{TRACK_PHOTO} sliding back and forth, {args.frames} frames",
                  "static": f"the first {args.photos} LSPET validation photos (static mode)"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in load_after],
                    "note": "shared machine: other jobs (a training) were running; compare "
                            "modes within this run"},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "summary": summary,
        "per_frame_pipeline": per_frame,
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, doc, indent=1)
    print(json.dumps({"summary": summary, "per_frame_pipeline": per_frame}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
