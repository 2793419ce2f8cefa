"""Export a trained pose network to SavedModel, TFLite and/or ONNX, then verify each file.

    python export.py --format all                      # the shipped model -> exports/hg-lite-lspet/
    python export.py --model runs/x/best.keras --format tflite --quantize all
    python export.py --model best.keras --format onnx --stack 2     # early exit at stack 2
    python export.py --preset mssh-lite --format tflite              # UNTRAINED, for testing

Each file gets ``<file>.json`` (joints, skeleton, input size, stride, normalisation...) and
``<file>.verify.json`` (its outputs in its own runtime vs Keras). Exit status: 0 all files
verified, 1 a file failed verification (it is kept; see its .verify.json), 2 bad input.

Files go to ``exports/<model's folder name>/`` (``exports/<preset>/`` for --preset) unless
--output-dir says otherwise. Never into ``models/``: a shipped model's files and their
calibrated metadata are written only by ``scripts/ship_model.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.cli import positive_int
from mssh_keras.model_file import FORMATS, QUANTIZATIONS
from mssh_keras.paths import portable_path

ROOT = Path(__file__).resolve().parent
SHIPPED_MODEL = SHIPPED_MODEL_DIR / "model.keras"
MODELS_DIR = SHIPPED_MODEL_DIR.parent  # shipped models: scripts/ship_model.py writes here
EXPORTS_DIR = ROOT / "exports"         # the default destination (git-ignored)


def _list(choices: tuple[str, ...]):
    def parse(value: str) -> list[str]:
        items = list(choices) if value == "all" else [v.strip() for v in value.split(",") if v]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{value!r}: use 'all' or a comma list of "
                                             f"{', '.join(choices)}")
        return items
    return parse


def _limit(value: str) -> tuple[str, float]:
    q, _, share = value.partition("=")
    try:
        if q not in QUANTIZATIONS[1:]:
            raise ValueError
        return q, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected QUANT=SHARE, e.g. int8=0.2, "
                                         f"QUANT one of {QUANTIZATIONS[1:]}") from None


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", type=_list(FORMATS), default=["tflite"],
                    help="savedmodel, tflite, onnx, a comma list, or all (default tflite)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help=f".keras model or .weights.h5 (default: the shipped "
                                     f"{portable_path(SHIPPED_MODEL)})")
    src.add_argument("--preset", help="export an UNTRAINED network of this preset (for "
                                      "latency tests only: its keypoints are noise)")
    ap.add_argument("--quantize", type=_list(QUANTIZATIONS), default=["fp32"],
                    help="TFLite: fp32, fp16, dynamic, int8, a comma list or all (default fp32)")
    ap.add_argument("--stack", type=positive_int, help="early exit: heatmaps of this stack "
                                                       "(1-based; default the last)")
    ap.add_argument("--batch-size", type=positive_int, default=1, help="fixed batch (default 1)")
    ap.add_argument("--input-size", type=positive_int,
                    help="input side in px (default the model's)")
    ap.add_argument("--output-dir", help="default: exports/<the model's folder name> "
                                         "(exports/<preset> for --preset); never models/")
    ap.add_argument("--name", help="base file name (default: the model file's stem)")
    ap.add_argument("--skeleton", help="joint set, if run_config.json cannot tell (lsp14, mpii16)")
    ap.add_argument("--representative", default="synthetic",
                    help="crops for int8 calibration and verification: synthetic (default, "
                         "offline) or a dataset name (lsp, lspet, mpii, lsp+lspet)")
    ap.add_argument("--calibration-samples", type=positive_int, default=100)
    ap.add_argument("--verify-samples", type=positive_int, default=32)
    ap.add_argument("--max-moved", type=_limit, action="append", default=[],
                    metavar="QUANT=SHARE", help="override a quantized file's limit on the "
                    "share of joints moving > 1 heatmap px (e.g. int8=0.25)")
    ap.add_argument("--no-check", action="store_true",
                    help="report verification failures but exit 0")
    ap.add_argument("--data-dir", help="TFDS data dir, for --representative <dataset>")
    ap.add_argument("--manual-dir", help="official dataset files, for --representative <dataset>")
    ap.add_argument("--threads", type=positive_int, default=2,
                    help="runtime threads for verification")
    return ap.parse_args(argv)


def output_dir(args: argparse.Namespace, model: Path | None) -> Path:
    """Where the files go: --output-dir, else exports/<model's folder> (or <preset>)."""
    if args.output_dir:
        return Path(args.output_dir)
    return EXPORTS_DIR / (args.preset if args.preset else model.resolve().parent.name)


def check_destination(out: Path) -> None:
    """Refuse models/ (shipped models) and unwritable folders before any conversion."""
    from mssh_keras.paths import OutputDirError, writable_dir

    target = Path(os.path.abspath(out))
    if target == MODELS_DIR or MODELS_DIR in target.parents:
        raise OutputDirError(f"--output-dir {out} is inside {portable_path(MODELS_DIR)}/, "
                             f"which holds shipped models and their calibrated metadata and "
                             f"is written only by scripts/ship_model.py: choose another "
                             f"--output-dir")
    writable_dir(out, "output folder", "--output-dir")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mssh_keras import export as ex
    from mssh_keras.data.sample_crops import SampleCrops
    from mssh_keras.model_file import ModelFileError
    from mssh_keras.paths import OutputDirError

    try:
        if args.preset:
            from mssh_keras.config import get_preset
            from mssh_keras.model import build_network

            preset = get_preset(args.preset)
            print(f"WARNING: exporting an UNTRAINED {args.preset} network (random weights): "
                  f"its keypoints are meaningless and quantized files will likely fail "
                  f"verification. Use --model for a trained one.", file=sys.stderr)
            out = output_dir(args, None)
            check_destination(out)
            network = build_network(preset.model, name=args.preset.replace("-", "_"))
            source, name = None, args.name or args.preset
        else:
            model = Path(args.model) if args.model else SHIPPED_MODEL
            if not model.exists():
                hint = ("" if args.model else " (the shipped model is not in this checkout "
                        "yet)")
                print(f"error: model {model} not found{hint}; pass --model PATH.keras, or "
                      f"--preset NAME to export an untrained network", file=sys.stderr)
                return 2
            out = output_dir(args, model)
            check_destination(out)
            network = ex.load_network(model)
            source = model
            name = args.name or model.name.removesuffix(".keras").removesuffix(".weights.h5")
        limits = dict(ex.MOVED_LIMITS, **dict(args.max_moved))
        # The crops to verify (and calibrate int8) with; export reads no dataset itself.
        crops = SampleCrops(args.representative, args.data_dir, args.manual_dir)
        results = ex.export(
            network, args.format, out, crops=crops, source=source,
            quantizations=args.quantize, stack=args.stack, batch_size=args.batch_size,
            input_size=args.input_size, skeleton=args.skeleton, preset=args.preset,
            base_name=name, calibration_samples=args.calibration_samples,
            verify_samples=args.verify_samples, num_threads=args.threads, limits=limits,
            check=False)
    except (ModelFileError, OutputDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.verification["passed"]]
    print(f"\n{len(results)} file(s) in {out}: "
          + ", ".join(f"{r.path.name} ({ex.file_size_mb(r.path):.2f} MB)" for r in results))
    if failed:
        print(f"verification FAILED for {', '.join(r.path.name for r in failed)} "
              f"(files kept; see *.verify.json)", file=sys.stderr)
        return 0 if args.no_check else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
