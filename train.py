"""Train an MSSH (or hourglass) pose network.

`python train.py` trains mssh-lite on the embedded synthetic dataset, offline (about 10
minutes on 2 CPU cores, 3 x 40 steps) and prints the validation PCK.
"""
from __future__ import annotations

import argparse
import sys

from mssh_keras.cli import (add_coco_arguments, non_negative_float, non_negative_int, positive_float,
                            positive_int, positive_int_list, unit_interval)
from mssh_keras.config import OPTIMIZERS, PRESETS
from mssh_keras.precision import JIT, PRECISIONS, use_onednn

use_onednn()  # before anything imports TensorFlow


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {p.name:10s} {p.description}" for p in PRESETS.values())
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"presets:\n{presets}\n\ndatasets: synthetic (default, offline), "
               "synthetic-mpii, lsp, lspet, mpii, lsp+lspet, and coco: any COCO keypoints "
               "JSON (--annotations, --images; docs/your-own-data.md)")
    ap.add_argument("--preset", default="mssh-lite", choices=sorted(PRESETS))
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--epochs", type=positive_int)
    ap.add_argument("--batch-size", type=positive_int,
                    help="GLOBAL batch, split over all GPUs/workers; without --lr the "
                         "preset's rate is scaled by sqrt(batch / preset batch)")
    ap.add_argument("--lr", type=positive_float, dest="learning_rate",
                    help="peak learning rate")
    ap.add_argument("--optimizer", choices=list(OPTIMIZERS))
    ap.add_argument("--lr-schedule", choices=["step", "cosine"],
                    help="step: /10 after each --lr-drops epoch; cosine: --warmup-steps of "
                         "linear warm-up, then a half cosine to 0 at the last epoch")
    ap.add_argument("--warmup-steps", type=non_negative_int)
    ap.add_argument("--weight-decay", type=non_negative_float,
                    help="decoupled weight decay (adamw)")
    ap.add_argument("--sigma", type=positive_float,
                    help="target Gaussian std, in heatmap pixels of every stack")
    ap.add_argument("--lr-drops", type=positive_int_list,
                    help="comma-separated epochs after which the rate drops 10x, e.g. 150,170")
    ap.add_argument("--input-size", type=positive_int)
    ap.add_argument("--steps-per-epoch", type=positive_int)
    ap.add_argument("--val-examples", type=positive_int, default=256,
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
    ap.add_argument("--rotation", type=non_negative_float,
                    help="augmentation: max rotation (degrees)")
    ap.add_argument("--rotation-prob", type=unit_interval,
                    help="share of examples rotated (0 to 1)")
    ap.add_argument("--zoom-out", type=positive_float,
                    help="augmentation: whole-frame-like views, the person down to 1/ZOOM_OUT "
                         "of a normal crop and anywhere in it (>= 1; with --zoom-out-prob)")
    ap.add_argument("--zoom-out-prob", type=unit_interval,
                    help="share of examples zoomed out (0 to 1)")
    ap.add_argument("--upright-prob", type=unit_interval,
                    help="augmentation: share of examples whose crop is turned so the torso "
                         "points up (as predict(..., upright=True) crops), plus the "
                         "--rotation jitter (0 to 1)")
    ap.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                    help="bf16 computes in bfloat16 with float32 weights (saved and "
                         "exported as float32); auto = fp32 (see benchmarks/README.md)")
    ap.add_argument("--jit", default="auto", choices=list(JIT),
                    help="XLA-compile the train step; auto = on for GPU, off for CPU")
    ap.add_argument("--threads", type=positive_int,
                    help="CPU threads per op (e.g. 1 to run two trainings side by side)")
    ap.add_argument("--data-dir", help="TFDS data directory (prepared datasets)")
    ap.add_argument("--manual-dir", help="folder with the official dataset files")
    coco = add_coco_arguments(ap, "validation file; default: a fixed ~10%% of --annotations' "
                                  "images (CRC-32 of the file name divisible by 10)")
    coco.add_argument("--flip-pairs", metavar="A:B,...",
                      help="left/right joint pairs swapped by mirroring, by name or 1-based "
                           "number, or 'none'; default: derived from left_/right_ names")
    ft = ap.add_argument_group("fine-tuning")
    ft.add_argument("--init", metavar="MODEL.keras",
                    help="start from this trained network (its architecture and, without "
                         "--preset, its preset's recipe); heatmap heads are rebuilt when the "
                         "joints differ, keeping the joints of the same name")
    ft.add_argument("--freeze-trunk-epochs", type=non_negative_int, default=0, metavar="N",
                    help="with --init: keep the pre-processing network frozen for the first "
                         "N epochs")
    ap.add_argument("--synthetic-train", type=positive_int, default=2000)
    ap.add_argument("--strategy", default="auto",
                    choices=["auto", "default", "mirrored", "multiworker"],
                    help="tf.distribute strategy; auto = multiworker when TF_CONFIG names "
                         "several tasks, mirrored with >1 GPU, else default")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def explicit_options(argv=None) -> set[str]:
    """The options the command line names (not argparse's defaults)."""
    ap = build_parser()
    for action in ap._actions:
        action.default = argparse.SUPPRESS
    return set(vars(ap.parse_args(argv)))


def resumed_options(kw: dict, argv=None) -> dict:
    """``--resume`` continues the run as it was started: the saved options, except those
    this command line names (e.g. ``--epochs`` to extend a run, ``--threads``)."""
    from mssh_keras.training import saved_options
    saved = saved_options(kw["output_dir"])
    if saved is None:
        return kw
    given = explicit_options(argv)
    return {**kw, **{k: v for k, v in saved.items() if k in kw and k not in given},
            "output_dir": kw["output_dir"], "resume": True}


def main(argv=None) -> int:
    args = parse_args(argv)
    from mssh_keras.metrics import format_table
    from mssh_keras.training import RunOptions, TrainingError, train

    kw = dict(vars(args))
    if args.init and not args.resume and "preset" not in explicit_options(argv):
        from mssh_keras.config import PRESETS
        from mssh_keras.finetune import describe_init
        found = describe_init(args.init)["preset"]
        if found in PRESETS:  # the recipe the init model was trained with
            kw["preset"] = found
    if kw["output_dir"] is None:
        kw["output_dir"] = f"runs/{kw['preset']}-{args.dataset}"
    if args.resume:
        try:
            kw = resumed_options(kw, argv)
        except TrainingError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    elif args.dataset.startswith("synthetic"):
        # The offline default must finish in a few minutes on a laptop CPU: a short run
        # (the lite presets' recipe, its warm-up shortened to 10 % of the 120 steps).
        for key, quick in (("epochs", 3), ("steps_per_epoch", 40), ("warmup_steps", 12)):
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
