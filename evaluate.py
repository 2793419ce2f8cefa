"""Evaluate a pose model (Keras file or any exported model) on a dataset split.

Prints the paper's tables (PCK@0.2 + strict PCP@0.5 for LSP-style sets, PCKh@0.5 for MPII),
writes them as JSON, and saves the predictions (JSON + .mat for the standard scripts).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "models/hg-lite-lspet/model.keras"


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

    from mssh_keras.data import datasets
    from mssh_keras.evaluation import save_report, write_predictions
    from mssh_keras.evaluator import predict_dataset, score
    from mssh_keras.metrics import format_table
    from mssh_keras.runtime import PoseEstimator

    try:
        est = PoseEstimator(args.model)
        split = args.split or datasets.EVAL_SPLIT.get(args.dataset, "val")
        skeleton_name = datasets.DATASET_SKELETON.get(args.dataset)
        if skeleton_name is None:
            raise ValueError(f"unknown dataset {args.dataset!r}")
        if skeleton_name != est.skeleton.name:
            raise ValueError(f"{args.model} predicts {est.skeleton.name} joints but "
                             f"{args.dataset} is annotated with {skeleton_name}")
        examples = datasets.load(args.dataset, split, args.data_dir, args.manual_dir,
                                 size=est.input_size, num=args.limit)
        if args.limit:
            examples = examples.take(args.limit)
        preds = predict_dataset(est.heatmaps, examples, est.skeleton, est.input_size,
                                args.flip_test, args.batch_size)
        report = score(preds, est.skeleton, "mpii" if skeleton_name == "mpii16" else "lsp")
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report.update(model=str(args.model), dataset=args.dataset, split=split,
                  flip_test=args.flip_test)
    out = Path(args.output_dir)
    save_report(out / "report.json", report)
    json_path, mat_path = write_predictions(out / "predictions.json", preds["image_id"],
                                            preds["pred"], preds["conf"], est.skeleton)
    print(f"{args.dataset} {split}: {report['num_examples']}"
          f" people, model {args.model}{' (flip test)' if args.flip_test else ''}")
    print(format_table(report))
    print(f"report: {out / 'report.json'}; predictions: {json_path}, {mat_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
