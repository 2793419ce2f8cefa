"""Train an MSSH (or hourglass) pose network.

`python train.py` trains mssh-lite on the embedded synthetic dataset, offline (about 10
minutes on 2 CPU cores, 3 x 40 steps) and prints the validation PCK.
"""
from __future__ import annotations

import argparse
import sys

from mssh_keras.config import PRESETS


def parse_args(argv=None) -> argparse.Namespace:
    presets = "\n".join(f"  {p.name:10s} {p.description}" for p in PRESETS.values())
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets:\n{presets}\n\ndatasets: synthetic (default, offline), "
               "synthetic-mpii, lsp, lspet, mpii, lsp+lspet")
    ap.add_argument("--preset", default="mssh-lite", choices=sorted(PRESETS))
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int,
                    help="GLOBAL batch, split over all GPUs/workers; without --lr the "
                         "preset's rate is scaled by sqrt(batch / preset batch)")
    ap.add_argument("--lr", type=float, dest="learning_rate")
    ap.add_argument("--lr-drops", type=lambda v: tuple(int(e) for e in v.split(",") if e),
                    help="comma-separated epochs after which the rate drops 10x, e.g. 150,170")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--steps-per-epoch", type=int)
    ap.add_argument("--val-examples", type=int, default=256,
                    help="validation PCK each epoch on this many examples")
    ap.add_argument("--output-dir", help="default: runs/<preset>-<dataset>")
    ap.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    ap.add_argument("--no-adaptive", dest="adaptive", action="store_const", const=False,
                    help="uniform keypoint weights instead of Algorithm 1")
    ap.add_argument("--adaptive", dest="adaptive", action="store_const", const=True)
    ap.add_argument("--fusion", choices=["add", "concat"])
    ap.add_argument("--lateral", action="store_const", const=True,
                    help="FPN-like lateral links in the pre-processing network")
    ap.add_argument("--block", choices=["residual", "ira", "irb"])
    ap.add_argument("--no-augment", dest="augment", action="store_false")
    ap.add_argument("--data-dir", help="TFDS data directory (prepared datasets)")
    ap.add_argument("--manual-dir", help="folder with the official dataset files")
    ap.add_argument("--synthetic-train", type=int, default=2000)
    ap.add_argument("--strategy", default="auto",
                    choices=["auto", "default", "mirrored", "multiworker"],
                    help="tf.distribute strategy; auto = multiworker when TF_CONFIG names "
                         "several tasks, mirrored with >1 GPU, else default")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mssh_keras.metrics import format_table
    from mssh_keras.training import RunOptions, TrainingError, train

    kw = dict(vars(args))
    if kw["output_dir"] is None:
        kw["output_dir"] = f"runs/{args.preset}-{args.dataset}"
    if args.dataset.startswith("synthetic"):
        # The offline default must finish in a few minutes on a laptop CPU: a short run
        # with a higher rate than the paper's (2.5e-4 is for 100+ epochs).
        for key, quick in (("epochs", 3), ("steps_per_epoch", 40), ("learning_rate", 1e-3)):
            if kw[key] is None:
                kw[key] = quick
    try:
        result = train(RunOptions(**kw))
    except (TrainingError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result["report"] is None:  # a non-chief worker of a multi-worker run
        print(f"worker done, {result['seconds']:.0f} s of training; the chief validates and "
              f"saves")
        return 0
    print(f"\nvalidation ({args.dataset}), {result['seconds']:.0f} s of training:")
    print(format_table(result["report"]))
    print(f"saved in {result['output_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
