"""Score several models on one validation split, side by side (the README's ablation table).

    python scripts/compare_models.py runs/mssh-lite-lspet/final.keras=mssh-lite \\
        runs/hg-lite-lspet/final.keras=hg-lite --dataset lspet \\
        --manual-dir ../shared/data/real/lspet_axelcarlier --out docs/ablation.json

Each model is scored by the same code as ``evaluate.py`` (or its ``report.json`` is reused) (the paper's columns: PCK@0.2 and
strict PCP@0.5 for LSP-style sets). Prints a Markdown table, writes every report to JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, not only with -m


def parse_model(spec: str) -> tuple[Path, str]:
    """``PATH=LABEL`` (or just PATH, labelled by its run folder)."""
    path, _, label = spec.partition("=")
    path = Path(path)
    return path, label or f"{path.parent.name}/{path.name}"


def comparison_table(rows: list[tuple[str, dict]]) -> str:
    """One Markdown table per metric (the paper's columns), one row per model."""
    out = []
    for title, table in rows[0][1]["tables"].items():
        cols = list(table)
        out += [f"| {title} | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        out += [f"| {label} | " + " | ".join(f"{report['tables'][title][c]:.1f}"
                                             for c in cols) + " |" for label, report in rows]
        out.append("")
    return "\n".join(out)


def difference_table(rows: list[tuple[str, dict]], baseline: str, samples: int = 2000) -> str:
    """Markdown, one table per metric: each model minus the baseline in every column of
    the paper's tables, in points, with a 95 % paired bootstrap interval over the people
    (both scored on the same people, same order; metrics.paired_columns)."""
    from mssh_keras.metrics import paired_columns
    from mssh_keras.skeleton import get_skeleton

    reports = dict(rows)
    if baseline not in reports:
        raise ValueError(f"--baseline {baseline!r} is not one of the labels {list(reports)}")
    base = reports[baseline]
    diffs = {}
    for label, report in rows:
        if label == baseline:
            continue
        ex = report["per_example"]
        if ex["image_id"] != base["per_example"]["image_id"]:
            raise ValueError(f"{label} and {baseline} were scored on different people")
        try:
            diffs[label] = paired_columns(ex, base["per_example"],
                                          get_skeleton(base["skeleton"]), samples=samples)
        except ValueError as err:
            raise ValueError(f"{label} vs {baseline}: {err}") from None
    out = []
    for metric in next(iter(diffs.values()), {}):
        cols = list(next(iter(diffs.values()))[metric])
        out += [f"| {metric}: minus {baseline} | " + " | ".join(cols) + " |",
                "|---" * (len(cols) + 1) + "|"]
        out += [f"| {label} | " + " | ".join(
            f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, lo, hi in table[metric].values()) + " |"
                for label, table in diffs.items()]
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+",
                    help="PATH[=LABEL]: .keras or any exported model, or the report.json "
                         "of an earlier evaluate.py run (reused, not re-scored)")
    ap.add_argument("--dataset", default="lspet")
    ap.add_argument("--split", help="default: the dataset's evaluation split")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir")
    ap.add_argument("--limit", type=int, help="only the first N examples")
    ap.add_argument("--out", type=Path, help="JSON with every report")
    ap.add_argument("--baseline", help="label to compare every model with: differences "
                                       "in every column, with paired bootstrap intervals")
    args = ap.parse_args(argv)

    from mssh_keras.evaluator import evaluate_model
    from mssh_keras.paths import portable_path, write_json_atomic
    from mssh_keras.result_files import jsonable
    from mssh_keras.runtime import ModelLoadError

    specs = [parse_model(m) for m in args.models]
    missing = [str(p) for p, _ in specs if not p.exists()]
    if missing:
        print(f"error: model files not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    for path, label in specs:
        if path.suffix == ".json":  # an evaluate.py report: scored before, reused as is
            rows.append((label, json.loads(path.read_text())))
            continue
        try:
            report, _ = evaluate_model(path, args.dataset, args.split, args.data_dir,
                                       args.manual_dir, args.limit)
        except (FileNotFoundError, ValueError, OSError, ModelLoadError) as err:
            print(f"error: {label}: {err}", file=sys.stderr)
            return 2
        rows.append((label, report))
        print(f"{label}: {report['num_examples']} people scored", file=sys.stderr)
    table = comparison_table(rows)
    if args.baseline:
        try:
            table += "\n" + difference_table(rows, args.baseline)
        except (ValueError, KeyError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, {
            "dataset": args.dataset, "split": rows[0][1]["split"], "markdown": table,
            "models": [{"label": label, "path": portable_path(path),
                        "report": jsonable(report)}
                       for (path, label), (_, report) in zip(specs, rows)]}, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
