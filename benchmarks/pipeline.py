"""Input pipeline vs training step throughput, measured side by side in one run.

The pipeline must never be the bottleneck: its images/s (decode, crop, augment, per-stack
targets, in parallel) should exceed the training step's images/s for the same preset.

    python benchmarks/pipeline.py --preset mssh-lite --dataset lspet \
        --data-dir /path/tfds --manual-dir ../shared/data/real/lspet_axelcarlier
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mssh_keras.codec import HeatmapCodec  # noqa: E402
from mssh_keras.config import get_preset  # noqa: E402
from mssh_keras.data import datasets  # noqa: E402
from mssh_keras.data.pipeline import training_pipeline  # noqa: E402
from mssh_keras.model import build_network  # noqa: E402
from mssh_keras.paths import write_json_atomic  # noqa: E402
from mssh_keras.skeleton import get_skeleton  # noqa: E402
from mssh_keras.trainer import PoseTrainer, make_optimizer  # noqa: E402


def images_per_second(iterator, batches: int, batch_size: int) -> float:
    next(iterator)  # warm-up: tracing, first file reads
    t0 = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mssh-lite")
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--pipeline-batches", type=int, default=40)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results/pipeline.json"))
    args = ap.parse_args(argv)

    preset = get_preset(args.preset)
    skeleton = get_skeleton(datasets.DATASET_SKELETON[args.dataset])
    cfg = preset.model.replace(num_joints=skeleton.num_joints)
    examples = datasets.load(args.dataset, "train", args.data_dir, args.manual_dir,
                             size=cfg.input_size, num=512)
    pipe = training_pipeline(examples.repeat(), skeleton, HeatmapCodec.from_config(cfg),
                             args.batch_size, shuffle=256)
    pipe_ips = images_per_second(iter(pipe), args.pipeline_batches, args.batch_size)

    # The training step alone, on one cached batch, so data loading is not in its time.
    batch = next(iter(pipe))
    fixed = tf.data.Dataset.from_tensors(batch).repeat()
    trainer = PoseTrainer(build_network(cfg), adaptive=preset.train.adaptive)
    trainer.compile(optimizer=make_optimizer(preset.train, 1))
    trainer.fit(fixed, steps_per_epoch=1, epochs=1, shuffle=False, verbose=0)  # tracing
    t0 = time.perf_counter()
    trainer.fit(fixed, steps_per_epoch=args.train_steps, epochs=1, shuffle=False,
                verbose=0)
    step_ips = args.train_steps * args.batch_size / (time.perf_counter() - t0)

    rows = [("input pipeline", pipe_ips), (f"train step ({args.preset})", step_ips)]
    print(f"{'':28s}{'images/s':>10s}{'ratio':>8s}")
    for name, ips in rows:
        print(f"{name:28s}{ips:10.1f}{ips / step_ips:8.2f}")
    verdict = "OK: the pipeline is not the bottleneck" if pipe_ips > step_ips else \
        "WARNING: the pipeline is slower than the training step"
    print(verdict)
    result = {"preset": args.preset, "dataset": args.dataset, "batch_size": args.batch_size,
              "pipeline_images_per_s": pipe_ips, "train_step_images_per_s": step_ips,
              "ratio": pipe_ips / step_ips, "cpu_threads": tf.config.threading
              .get_intra_op_parallelism_threads(), "keras": keras.__version__,
              "tensorflow": tf.__version__}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.json, result, indent=2)
    return 0 if pipe_ips > step_ips else 1


if __name__ == "__main__":
    sys.exit(main())
