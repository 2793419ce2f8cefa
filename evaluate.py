"""Evaluate a pose model (Keras file or any exported model) on a dataset split.

Prints the paper's tables (PCK@0.2 + strict PCP@0.5 for LSP-style sets, PCKh@0.5 for MPII),
writes them as JSON, and saves the predictions (JSON + .mat for the standard scripts).
"""
from __future__ import annotations

import argparse
import sys

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.cli import positive_int

DEFAULT_MODEL = SHIPPED_MODEL_DIR / "model.keras"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(DEFAULT_MODEL),
                    help=".keras, .tflite, .onnx or a SavedModel folder (default: shipped model)")
    ap.add_argument("--trust-saved-model", action="store_true",
                    help="run a SavedModel whose graph does more than a pose network (file "
                         "I/O, Python calls...): a SavedModel is a program, so only for "
                         "files from people you trust")
    ap.add_argument("--dataset", default="lspet",
                    help="lspet, lsp, mpii, lsp+lspet, synthetic, synthetic-mpii")
    ap.add_argument("--split", help="default: the dataset's evaluation split")
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

    from mssh_keras.evaluator import evaluate_model
    from mssh_keras.export import ExportError
    from mssh_keras.metrics import format_table
    from mssh_keras.paths import writable_dir
    from mssh_keras.result_files import save_report, write_predictions
    from mssh_keras.runtime import ModelLoadError
    from mssh_keras.skeleton import get_skeleton

    try:
        out = writable_dir(args.output_dir, "output folder", "--output-dir")  # before the work
        report, preds = evaluate_model(args.model, args.dataset, args.split, args.data_dir,
                                       args.manual_dir, args.limit, args.flip_test,
                                       args.batch_size, args.trust_saved_model,
                                       protocol=args.protocol)
    except (FileNotFoundError, ValueError, OSError, ModelLoadError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    save_report(out / "report.json", report)
    json_path, mat_path = write_predictions(out / "predictions.json", preds["image_id"],
                                            preds["pred"], preds["conf"],
                                            get_skeleton(report["skeleton"]))
    print(f"{args.dataset} {report['split']}: {report['num_examples']}"
          f" people, model {args.model}{' (flip test)' if args.flip_test else ''}, protocol "
          f"{args.protocol} ({report['inference']['mean_model_calls']:.2f} model calls per "
          f"person)")
    print(format_table(report))
    print(f"report: {out / 'report.json'}; predictions: {json_path}, {mat_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
