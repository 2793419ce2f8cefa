"""Training images/s of the lite presets under each compute setting, side by side.

    python benchmarks/train_speed.py                      # both lite presets, all settings
    python benchmarks/train_speed.py --presets hg-lite --settings fp32,bf16 --repeats 3

What is timed is the train step ``train.py`` runs (``training.build_trainer``: the
network, PoseTrainer's custom step, the optimizer, the compute setting) fed by the real
training pipeline (crop, augmentation, per-stack targets) on the offline synthetic set.
Thread pools and logical devices can only be set before TensorFlow starts, so each
group of settings lives in its own child process; the parent interleaves blocks of steps
over all settings and repeats (a block of each setting, then the next round), so a slow
minute of a shared machine hits every setting alike. Reported: median images/s over the
repeats, ratio to ``fp32`` (train.py's default before this benchmark: fp32, no XLA,
TensorFlow's default threads, batch 16) measured in the same run, CPU utilisation during
the timed steps (process CPU time / wall time / cores) and the first step's trace +
compile time. Writes ``benchmarks/results/train_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mssh_keras.paths import write_json_atomic  # noqa: E402 - stdlib only, no TF

# name -> (process group, precision, jit, batch). Groups: "tf" = TensorFlow's defaults
# (as train.py ran before this benchmark); "onednn" = the same with oneDNN's CPU kernels
# on (TF_ENABLE_ONEDNN_OPTS=1, train.py's default now); "onednn-t2" = that with 2 threads
# per op, one op at a time; "onednn-mirrored" = two logical CPU devices (one replica
# each, 1 thread per op, 2 ops at a time: one per replica); "onednn-t1" = one thread in
# all, as each of two runs side by side (`train.py --threads 1`).
SETTINGS = {
    "fp32": ("tf", "fp32", False, 16),
    "xla": ("tf", "fp32", True, 16),
    "bf16": ("tf", "bf16", False, 16),
    "bf16+xla": ("tf", "bf16", True, 16),
    "oneDNN fp32": ("onednn", "fp32", False, 16),
    "oneDNN bf16": ("onednn", "bf16", False, 16),
    "oneDNN fp32 b32": ("onednn", "fp32", False, 32),
    "oneDNN fp32 2 threads": ("onednn-t2", "fp32", False, 16),
    "oneDNN fp32 mirrored 2x1": ("onednn-mirrored", "fp32", False, 16),
    "oneDNN fp32 1 thread": ("onednn-t1", "fp32", False, 16),
    "oneDNN bf16 1 thread": ("onednn-t1", "bf16", False, 16),
}
BASELINE = "fp32"


# ----------------------------------------------------------------------------- child
def child(group: str) -> None:
    """Serve 'prepare'/'run' requests (JSON lines on stdin) for one process group."""
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if group.startswith("onednn") else "0"
    import tensorflow as tf
    if group.endswith(("t1", "t2")):
        tf.config.threading.set_intra_op_parallelism_threads(int(group[-1]))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif group.endswith("mirrored"):
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(2)
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from mssh_keras.codec import HeatmapCodec
    from mssh_keras.config import get_preset
    from mssh_keras.data.datasets import load
    from mssh_keras.data.pipeline import Augment, training_pipeline
    from mssh_keras.precision import ComputeSettings
    from mssh_keras.skeleton import get_skeleton
    from mssh_keras.training import build_trainer

    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
                if group.endswith("mirrored")
                else tf.distribute.get_strategy())
    live: dict[str, tuple] = {}
    skeleton = get_skeleton("lsp14")

    def prepare(key: str, preset: str, precision: str, jit: bool, batch: int) -> float:
        p = get_preset(preset)
        mcfg = p.model.replace(num_joints=skeleton.num_joints)
        keras.utils.set_random_seed(0)
        examples = load("synthetic", "train", size=mcfg.input_size, num=512)
        ds = training_pipeline(examples.repeat(), skeleton, HeatmapCodec.from_config(mcfg),
                               batch, augment=Augment(), shuffle=256, seed=0)
        with strategy.scope():
            trainer = build_trainer(mcfg, p.train, ComputeSettings(precision, jit), 100)
        trainer._maybe_symbolic_build()
        step = trainer.make_train_function()
        it = iter(strategy.experimental_distribute_dataset(ds))
        t0 = time.perf_counter()
        _sync(step(it))
        live[key] = (step, it)
        return time.perf_counter() - t0

    def run(key: str, steps: int) -> dict:
        step, it = live[key]
        _sync(step(it))  # one untimed step: the pipeline's prefetch refills
        c0, t0 = _cpu_seconds(), time.perf_counter()
        for _ in range(steps):
            logs = step(it)
        _sync(logs)
        wall = time.perf_counter() - t0
        return {"seconds": wall, "cpu": (_cpu_seconds() - c0) / wall / os.cpu_count()}

    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "prepare":
                out = {"first_step_s": prepare(req["key"], req["preset"], req["precision"],
                                               req["jit"], req["batch"])}
            else:
                out = run(req["key"], req["steps"])
        except Exception as err:  # noqa: BLE001 - a setting that fails is a result too
            out = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
        print("RESULT " + json.dumps(out), flush=True)


def _sync(logs) -> None:
    """Wait for a step: read its loss back (Keras may wrap the logs in an Optional)."""
    if hasattr(logs, "get_value"):
        logs = logs.get_value()
    float(next(iter(logs.values())))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------------------- parent
class Group:
    def __init__(self, name: str):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=REPO)

    def ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError(f"benchmark child exited ({self.proc.wait()})")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="hg-lite,mssh-lite")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per block")
    ap.add_argument("--output", default=str(REPO / "benchmarks/results/train_speed.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        ap.error(f"--settings: unknown {unknown}; known: {list(SETTINGS)}")
    if BASELINE not in names:
        names.insert(0, BASELINE)
    presets = [p.strip() for p in args.presets.split(",")]
    groups = {g: Group(g) for g in dict.fromkeys(SETTINGS[n][0] for n in names)}
    rows: dict[tuple, dict] = {}
    try:
        for preset in presets:
            for name in names:
                group, precision, jit, batch = SETTINGS[name]
                key = f"{preset}/{name}"
                out = groups[group].ask({"op": "prepare", "key": key, "preset": preset,
                                         "precision": precision, "jit": jit, "batch": batch})
                rows[preset, name] = {"preset": preset, "setting": name, "batch": batch,
                                      "runs": [], **out}
                print(f"prepared {key}: {out}", flush=True)
        for r in range(args.repeats):
            for (preset, name), row in rows.items():
                if "error" in row:
                    continue
                out = groups[SETTINGS[name][0]].ask(
                    {"op": "run", "key": f"{preset}/{name}", "steps": args.steps})
                if "error" in out:
                    row["error"] = out["error"]
                    continue
                row["runs"].append({"images_per_s": args.steps * row["batch"] / out["seconds"],
                                    "cpu": out["cpu"]})
                print(f"  {preset}/{name}: {row['runs'][-1]['images_per_s']:.1f} img/s, "
                      f"CPU {out['cpu']:.0%}", flush=True)
            print(f"round {r + 1}/{args.repeats} done", flush=True)
    finally:
        for g in groups.values():
            g.close()
    table = []
    for (preset, name), row in rows.items():
        if row["runs"]:
            row["median_images_per_s"] = statistics.median(x["images_per_s"] for x in row["runs"])
            row["median_cpu"] = statistics.median(x["cpu"] for x in row["runs"])
        table.append(row)
    for row in table:
        base = rows.get((row["preset"], BASELINE), {}).get("median_images_per_s")
        if base and "median_images_per_s" in row:
            row["ratio_vs_fp32"] = row["median_images_per_s"] / base
    print(f"\n{'preset':10s} {'setting':20s} {'img/s':>7s} {'ratio':>6s} {'CPU':>5s} "
          f"{'1st step s':>10s}")
    for row in table:
        if "median_images_per_s" not in row:
            print(f"{row['preset']:10s} {row['setting']:20s} failed: {row.get('error')}")
            continue
        print(f"{row['preset']:10s} {row['setting']:20s} {row['median_images_per_s']:7.1f} "
              f"{row.get('ratio_vs_fp32', float('nan')):6.2f} {row['median_cpu']:5.0%} "
              f"{row['first_step_s']:10.1f}")
    from mssh_keras.precision import cpu_has_native_bf16
    result = {"what": "training images/s, median of interleaved blocks", "cores": os.cpu_count(),
              "cpu": _cpu_model(), "cpu_native_bf16": cpu_has_native_bf16(),
              "repeats": args.repeats, "steps_per_block": args.steps, "baseline": BASELINE,
              "load_average_at_end": os.getloadavg(), "rows": table}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, result, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
