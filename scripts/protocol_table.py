"""One model under the three evaluation protocols, and the demo scored from its own JSON.

    python -m scripts.protocol_table                                   # shipped TFLite model
    python -m scripts.protocol_table --model runs/x/model.tflite --out runs/protocols.json
    python -m scripts.protocol_table --limit 200 --demo-photos 200     # quicker

Rows (the same people, the dataset's evaluation split; ``evaluate.py --protocol`` runs
each alone):

- ``gt-box``: the dataset's person box, one pass (the literature's protocol);
- ``gt-box-upright``: that box, then crops turned so that the torso points up;
- ``whole-image``: no ground truth at all, ``PoseEstimator.predict(image)`` searches the
  person coarse to fine;
- ``whole-image-upright``: the same search with the upright stage;
- ``demo (static)``: ``python -m demo --source FOLDER --headless`` on the validation photos
  (static mode: every photo on its own), its JSON's keypoints scored against the ground
  truth (``--demo-photos 0`` skips it).

Columns: PCK@0.2 Total over everyone, over the people whose ground-truth torso (hips ->
shoulders) leans more than ``--lean`` degrees from upright and over the others, the
difference to ``gt-box`` with a 95 % paired bootstrap interval over the people, and the
mean model calls per person. Prints a Markdown table and writes every report to JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, not only with -m
LSPET = ROOT.parent / "shared/data/real/lspet_axelcarlier"


def lean_mask(report: dict, lean: float) -> tuple[np.ndarray, np.ndarray]:
    """(leaning more than ``lean`` deg, the others) among people with an annotated torso."""
    deg = np.array([np.nan if v is None else v for v in report["per_example"]["lean_deg"]],
                   np.float64)
    known = np.isfinite(deg)
    return known & (deg > lean), known & ~(deg > lean)


def table_rows(rows: list[tuple[str, dict]], lean: float, metric: str = "PCK@0.2",
               samples: int = 2000) -> str:
    """Markdown: one row per protocol (see the module docstring)."""
    from mssh_keras.evaluator import subset_pck
    from mssh_keras.metrics import paired_bootstrap

    base = dict(rows)["gt-box"]["per_example"]
    lean_m, rest_m = lean_mask(rows[0][1], lean)
    head = (f"| protocol | {metric} all ({len(base['image_id'])}) | leaning > {lean:g} deg "
            f"({int(lean_m.sum())}) | others ({int(rest_m.sum())}) | vs gt-box, all | "
            f"vs gt-box, leaning > {lean:g} deg | model calls / person |")
    out = [head, "|---" * 7 + "|"]
    for label, report in rows:
        ex = report["per_example"]
        if ex["image_id"] != base["image_id"]:
            raise ValueError(f"{label} and gt-box were scored on different people")
        diffs = []
        counted = np.asarray(base[f"{metric} counted"]) > 0   # the same people for all
        for m in (counted, lean_m & counted):
            if label == "gt-box" or not m.any():
                diffs.append("-")
                continue
            d, lo, hi = paired_bootstrap(*(np.asarray(ex[k])[m] for k in (
                f"{metric} hits", f"{metric} counted")), *(np.asarray(base[k])[m] for k in (
                    f"{metric} hits", f"{metric} counted")), samples)
            diffs.append(f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]")
        calls = ex.get("model_calls")
        out.append(f"| {label} | {report['tables'][metric]['Total']:.1f} | "
                   f"{subset_pck(report, lean_m, metric):.1f} | "
                   f"{subset_pck(report, rest_m, metric):.1f} | {diffs[0]} | {diffs[1]} | "
                   f"{'-' if calls is None else f'{np.mean(calls):.2f}'} |")
    return "\n".join(out) + "\n"


def demo_report(model: Path, records: list[dict], people: list[str], threads: int) -> dict:
    """The demo run headless in static mode on ``records``' photos, scored from its JSON
    (LSP report, per person in the order of ``people``)."""
    from demo import app
    from mssh_keras.metrics import lsp_report
    from mssh_keras.skeleton import LSP14

    by_id = {r["image_id"]: r for r in records}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for image_id in people:
            (folder / image_id).symlink_to(Path(by_id[image_id]["path"]).resolve())
        out = Path(tmp) / "demo.mp4"
        rc = app.main(["--headless", "--static", "--source", str(folder), "--model",
                       str(model), "--threads", str(threads), "--output", str(out)])
        if rc != 0:
            raise RuntimeError(f"the demo failed with status {rc}")
        doc = json.loads(out.with_suffix(".json").read_text())
    frames = {f["name"]: f for f in doc["frames"]}
    missing = [i for i in people if i not in frames]
    if missing:
        raise RuntimeError(f"the demo wrote no frame for {missing[:5]}")
    pred = np.array([np.array(frames[i]["keypoints"])[:, :2] for i in people])
    gt = np.stack([by_id[i]["joints"] for i in people])
    valid = np.stack([by_id[i]["flags"] for i in people]) > 0
    report = lsp_report(pred, gt, valid, LSP14)
    report["per_example"]["image_id"] = list(people)
    report["per_example"]["model_calls"] = [frames[i]["model_calls"] for i in people]
    report["demo_stats"] = doc["stats"]
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path,
                    default=ROOT / "models/hg-lite-lspet/model.tflite",
                    help="any exported model (the demo needs one it can run)")
    ap.add_argument("--dataset", default="lspet")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir", type=Path, default=LSPET)
    ap.add_argument("--limit", type=int, help="only the first N people")
    ap.add_argument("--lean", type=float, default=60.0,
                    help="degrees from upright that count as leaning")
    ap.add_argument("--demo-photos", type=int, default=None,
                    help="score the demo on the first N people (default: all scored; 0: "
                         "no demo row; LSPET only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/protocols/protocols.json"))
    args = ap.parse_args(argv)

    from mssh_keras.evaluator import evaluate_model, subset_pck
    from mssh_keras.paths import portable_path, write_json_atomic
    from mssh_keras.person_search import SearchConfig
    from mssh_keras.result_files import jsonable
    from mssh_keras.runtime import PoseEstimator

    est = PoseEstimator(args.model, num_threads=args.threads)
    runs = (("gt-box", "gt-box", None), ("gt-box-upright", "gt-box-upright", None),
            ("whole-image", "whole-image", None),
            ("whole-image-upright", "whole-image", SearchConfig(upright=True)))
    rows = []
    for label, protocol, search in runs:
        report, _ = evaluate_model(est, args.dataset, None, args.data_dir,
                                   str(args.manual_dir), args.limit, protocol=protocol,
                                   search=search)
        rows.append((label, report))
        print(f"{label}: {report['tables']['PCK@0.2']['Total']:.1f} PCK@0.2 on "
              f"{report['num_examples']} people", file=sys.stderr, flush=True)
    table = table_rows(rows, args.lean)
    n_demo = len(rows[0][1]["per_example"]["image_id"]) if args.demo_photos is None \
        else args.demo_photos
    demo_table = ""
    if n_demo and args.dataset == "lspet":
        from mssh_keras.data.lspet import read_lspet

        people = rows[0][1]["per_example"]["image_id"][:n_demo]
        demo = demo_report(args.model, read_lspet(args.manual_dir, "val"), people,
                           args.threads)
        same = [(label, {**r, "per_example": {k: v[:n_demo] for k, v in
                                              r["per_example"].items()}}) for label, r in rows]
        for label, r in same:  # the protocols' figures on the demo's people
            r["tables"] = {"PCK@0.2": {"Total": subset_pck(r, np.ones(n_demo, bool))}}
        demo_table = table_rows(same + [("demo (static)", demo)], args.lean)
        rows.append(("demo (static)", demo))
        print(f"demo (static): {demo['tables']['PCK@0.2']['Total']:.1f} PCK@0.2 on {n_demo} "
              f"photos, {demo['demo_stats']['mean_fps']} FPS", file=sys.stderr)
    print(table)
    if demo_table:
        print(f"On the {n_demo} photos the demo ran on:\n")
        print(demo_table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, jsonable({
        "model": portable_path(args.model), "dataset": args.dataset, "lean_deg": args.lean,
        "markdown": table, "demo_markdown": demo_table,
        "reports": {label: report for label, report in rows}}), indent=1)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
