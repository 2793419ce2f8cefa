"""PCK@0.2 by torso tilt: how a model does on upright, leaning and upside-down people.

    python evaluate.py --model runs/a/final.keras --dataset lspet --manual-dir DIR \\
        --output-dir runs/a/eval
    python -m scripts.errors_by_tilt runs/a/eval/report.json=a runs/b/eval/report.json=b

Reads ``evaluate.py`` reports (their ``per_example`` hits, counted joints and ``lean_deg``,
the ground-truth torso's angle from upright, hips to shoulders) and prints one Markdown
row per model: PCK@0.2 in each tilt band, and the share of people in it. People without
an annotated torso have no angle and count only in "all".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file, not only with -m

BANDS = ((0, 30), (30, 60), (60, 120), (120, 180.01))


def tilt_table(rows: list[tuple[str, dict]], metric: str = "PCK@0.2") -> str:
    """Markdown: ``metric`` per tilt band for each (label, report)."""
    from mssh_keras.evaluator import subset_pck
    lean0 = np.array([math.nan if v is None else v
                      for v in rows[0][1]["per_example"]["lean_deg"]], float)
    names = [f"{lo:.0f}-{min(hi, 180):.0f} deg" for lo, hi in BANDS]
    share = [np.mean((lean0 >= lo) & (lean0 < hi)) * 100 for lo, hi in BANDS]
    out = [f"| {metric} | all | " + " | ".join(names) + " |",
           "|---" * (len(BANDS) + 2) + "|",
           "| share of people | 100 | " + " | ".join(f"{s:.0f}" for s in share) + " |"]
    for label, report in rows:
        lean = np.array([math.nan if v is None else v
                         for v in report["per_example"]["lean_deg"]], float)
        everyone = np.ones(len(lean), bool)
        cells = [subset_pck(report, everyone, metric)]
        cells += [subset_pck(report, (lean >= lo) & (lean < hi), metric) for lo, hi in BANDS]
        out.append(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="REPORT.json[=LABEL]")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.reports:
        path, _, label = spec.partition("=")
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            print(f"error: cannot read the report {path}: {err}", file=sys.stderr)
            return 2
        if "lean_deg" not in report.get("per_example", {}):
            print(f"error: {path} has no per-person lean_deg: re-run evaluate.py",
                  file=sys.stderr)
            return 2
        rows.append((label or Path(path).parent.name, report))
    print(tilt_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
