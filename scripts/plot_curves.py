"""Training curves of several runs side by side (the paper's Appendix A figure).

    python scripts/plot_curves.py RUN_DIR [RUN_DIR ...] --out docs/curves.png

Each RUN_DIR holds the history.csv that train.py writes (epoch, loss, val_pck, ...), or
is a shipped model folder (models/NAME: its card.json keeps the run's history).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_history(run: Path) -> dict[str, list[float]]:
    """A run folder's history.csv, or a shipped model folder's card.json history (a run's
    folder is deleted once its model ships; the card keeps its curve)."""
    path, card = run / "history.csv", run / "card.json"
    if path.exists():
        with path.open() as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    elif card.exists():
        rows = json.loads(card.read_text()).get("history", [])
    else:
        raise FileNotFoundError(f"{path} not found: is {run} a train.py output folder (or a "
                                f"shipped model folder with card.json)?")
    return {k: [float(r[k]) for r in rows] for k in rows[0]} if rows else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    ap.add_argument("--out", type=Path, default=Path("docs/curves.png"))
    ap.add_argument("--title", default="")
    args = ap.parse_args(argv)
    labels = args.labels or [r.name for r in args.runs]
    fig, (ax_loss, ax_pck) = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in zip(args.runs, labels):
        h = read_history(run)
        if not h:
            print(f"{run}: empty history, skipped", file=sys.stderr)
            continue
        epochs = [e + 1 for e in h["epoch"]]
        ax_loss.plot(epochs, h["final_stack_loss"], marker=".", label=label)
        ax_pck.plot(epochs, h["val_pck"], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="final-stack training loss\n(not comparable across "
                "heatmap sizes or targets)")
    ax_pck.set(xlabel="epoch", ylabel="validation PCK@0.2 (%)")
    for ax in (ax_loss, ax_pck):
        ax.grid(alpha=0.3)
        ax.legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
