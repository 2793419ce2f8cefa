"""Evaluate a pose model (Keras file or any exported model) on a dataset split.

Prints the paper's tables (PCK@0.2 + strict PCP@0.5 for LSP-style sets, PCKh@0.5 for MPII),
writes them as JSON, and saves the predictions (JSON + .mat for the standard scripts).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mssh_keras import SHIPPED_MODEL_DIR

DEFAULT_MODEL = SHIPPED_MODEL_DIR / "model.keras"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(DEFAULT_MODEL),
                    help=".keras, .tflite, .onnx or a SavedModel folder (default: shipped model)")
    ap.add_argument("--dataset", default="lspet",
                    help="lspet, lsp, mpii, lsp+lspet, synthetic, synthetic-mpii")
    ap.add_argument("--split", help="default: the dataset's evaluation split")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir", help="folder with the official dataset files")
    ap.add_argument("--flip-test", action="store_true", help="average with the mirrored input")
    ap.add_argument("--limit", type=int, help="only the first N examples")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--output-dir", default="runs/eval")
    args = ap.parse_args(argv)

    from mssh_keras.evaluation import save_report, write_predictions
    from mssh_keras.evaluator import evaluate_model
    from mssh_keras.metrics import format_table
    from mssh_keras.skeleton import get_skeleton

    try:
        report, preds = evaluate_model(args.model, args.dataset, args.split, args.data_dir,
                                       args.manual_dir, args.limit, args.flip_test,
                                       args.batch_size)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    save_report(out / "report.json", report)
    json_path, mat_path = write_predictions(out / "predictions.json", preds["image_id"],
                                            preds["pred"], preds["conf"],
                                            get_skeleton(report["skeleton"]))
    print(f"{args.dataset} {report['split']}: {report['num_examples']}"
          f" people, model {args.model}{' (flip test)' if args.flip_test else ''}")
    print(format_table(report))
    print(f"report: {out / 'report.json'}; predictions: {json_path}, {mat_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
