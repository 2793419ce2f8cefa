"""Evaluate a pose model (Keras file or any exported model) on a dataset split.

Prints the paper's tables (PCK@0.2 + strict PCP@0.5 for LSP-style sets, PCKh@0.5 for MPII;
for a COCO-format file, box-normalised PCK, torso PCK and COCO keypoint AP by pycocotools),
writes them as JSON, and saves the predictions (JSON + .mat for the standard scripts, or
+ COCO results JSON).
"""
from __future__ import annotations

import argparse
import sys

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.cli import add_coco_arguments, positive_int

DEFAULT_MODEL = SHIPPED_MODEL_DIR / "model.keras"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(DEFAULT_MODEL),
                    help=".keras, .tflite, .onnx or a SavedModel folder (default: shipped model)")
    ap.add_argument("--trust-saved-model", action="store_true",
                    help="run a SavedModel whose graph does more than a pose network (file "
                         "I/O, Python calls...): a SavedModel is a program, so only for "
                         "files from people you trust")
    ap.add_argument("--dataset",
                    help="lspet (default), lsp, mpii, lsp+lspet, synthetic, synthetic-mpii, "
                         "or coco (default when --annotations / --val-annotations is given)")
    ap.add_argument("--split", help="default: the dataset's evaluation split (coco: val, its "
                                    "validation file or hold-out; 'all' for a whole file)")
    coco = add_coco_arguments(ap, "validation file (the 'val' split); without it 'val' is "
                                  "the hold-out of --annotations, as in training")
    coco.add_argument("--oks-sigmas", metavar="S[,S...]",
                      help="OKS sigmas for AP: one for all joints or one per joint; default: "
                           "COCO's for COCO's joints, 0.067 for others")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir", help="folder with the official dataset files")
    ap.add_argument("--flip-test", action="store_true", help="average with the mirrored input")
    ap.add_argument("--protocol", default="gt-box",
                    choices=["gt-box", "gt-box-upright", "whole-image"],
                    help="gt-box: the dataset's person box (the literature's protocol); "
                         "gt-box-upright: that box, then crops turned so the torso points up; "
                         "whole-image: no ground truth at all, the person is searched coarse "
                         "to fine (PoseEstimator.predict without a box)")
    ap.add_argument("--limit", type=positive_int, help="only the first N examples")
    ap.add_argument("--batch-size", type=positive_int, default=16)
    ap.add_argument("--output-dir", default="runs/eval")
    args = ap.parse_args(argv)
    if args.dataset is None:
        args.dataset = "coco" if (args.annotations or args.val_annotations) else "lspet"

    from mssh_keras.evaluator import evaluate_model
    from mssh_keras.metrics import format_table
    from mssh_keras.model_file import ModelFileError
    from mssh_keras.paths import writable_dir
    from mssh_keras.result_files import save_report, write_predictions
    from mssh_keras.skeleton import get_skeleton

    try:
        out = writable_dir(args.output_dir, "output folder", "--output-dir")  # before the work
        coco = None
        if args.dataset == "coco" and (args.annotations or args.val_annotations):
            from mssh_keras.data.coco import CocoSource
            coco = CocoSource(args.annotations or args.val_annotations, args.images,
                              args.val_annotations, args.val_images, args.category)
        report, preds = evaluate_model(args.model, args.dataset, args.split, args.data_dir,
                                       args.manual_dir, args.limit, args.flip_test,
                                       args.batch_size, args.trust_saved_model,
                                       protocol=args.protocol, coco=coco,
                                       oks_sigmas=args.oks_sigmas)
    except (FileNotFoundError, ValueError, OSError, ModelFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    save_report(out / "report.json", report)
    json_path, mat_path = write_predictions(out / "predictions.json", preds["image_id"],
                                            preds["pred"], preds["conf"],
                                            preds.get("skeleton")
                                            or get_skeleton(report["skeleton"]))
    if "coco_results" in preds:  # what pycocotools' loadRes reads
        from mssh_keras.paths import write_json_atomic
        mat_path = write_json_atomic(out / "predictions_coco.json", preds["coco_results"])
    print(f"{args.dataset} {report['split']}: {report['num_examples']}"
          f" people, model {args.model}{' (flip test)' if args.flip_test else ''}, protocol "
          f"{args.protocol} ({report['inference']['mean_model_calls']:.2f} model calls per "
          f"person)")
    print(format_table(report))
    print(f"report: {out / 'report.json'}; predictions: {json_path}, {mat_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
