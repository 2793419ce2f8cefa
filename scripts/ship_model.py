"""Ship a trained run as the repository's model: weights, verified TFLite, model card.

    python -m scripts.ship_model --run runs/mssh-lite-lspet --weights final.keras \\
        --name mssh-lite-lspet --manual-dir ../shared/data/real/lspet_axelcarlier \\
        --hardware "2-core CPU VM" --wall-minutes 95 --limits limits.md

Writes ``models/NAME/``: ``model.keras``, ``model.tflite`` (+ metadata and verification
sidecars, verified on real validation crops), ``card.json`` (everything measured here:
full-split metrics of the TFLite file, the regression-check number on a fixed subset for
both files, the run's history and command) and ``MODEL_CARD.md`` rendered from it. Nothing
in the card is typed by hand except the hardware line, the wall time and the limits text.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file, not only with -m

from mssh_keras.paths import write_json_atomic  # noqa: E402 - after sys.path

REGRESSION_PEOPLE = 100  # the first N validation people, for tests/test_shipped_model.py

# train.py options worth spelling out in the reproduce command (others are defaults).
_FLAGS = {"preset": "--preset", "dataset": "--dataset", "epochs": "--epochs",
          "batch_size": "--batch-size", "learning_rate": "--lr", "lr_drops": "--lr-drops",
          "optimizer": "--optimizer", "lr_schedule": "--lr-schedule",
          "warmup_steps": "--warmup-steps", "weight_decay": "--weight-decay",
          "sigma": "--sigma", "input_size": "--input-size",
          "steps_per_epoch": "--steps-per-epoch", "val_examples": "--val-examples",
          "fusion": "--fusion", "block": "--block", "rotation": "--rotation",
          "rotation_prob": "--rotation-prob", "zoom_out": "--zoom-out",
          "zoom_out_prob": "--zoom-out-prob", "upright_prob": "--upright-prob",
          "seed": "--seed"}


def train_command(options: dict, epochs: int | None, manual_dir: str) -> str:
    """The train.py command line that reproduces the run (resumes merged into one run).
    ``epochs``: the run's length (None: the preset's, as the run was started)."""
    parts = ["python train.py"]
    for key, flag in _FLAGS.items():
        value = epochs if key == "epochs" else options.get(key)
        if value is None or value == [] or (key, value) in (("seed", 0), ("val_examples", 256)):
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    if options.get("adaptive") is not None:
        parts.append("--adaptive" if options["adaptive"] else "--no-adaptive")
    if options.get("lateral"):
        parts.append("--lateral")
    if options.get("augment") is False:
        parts.append("--no-augment")
    parts.append(f"--manual-dir {manual_dir}")
    parts.append(f"--output-dir runs/{Path(options['output_dir']).name}")
    return " ".join(parts)


def schedule_text(train: dict, steps_per_epoch: int) -> str:
    """The optimiser and learning-rate schedule in words (card.json's train_config, spelled)."""
    name = {"rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}[train.get("optimizer",
                                                                          "rmsprop")]
    text = f"{name} {train['learning_rate']:g}"
    if train.get("warmup_steps"):
        text += f", linear warm-up over {train['warmup_steps']} steps"
    if train.get("lr_schedule") == "cosine":
        text += f", cosine decay over {train['epochs']} epochs"
    elif train.get("lr_drops"):
        text += f", 10x drop after epoch(s) {', '.join(map(str, train['lr_drops']))}"
    if train.get("weight_decay"):
        text += f", weight decay {train['weight_decay']:g}"
    return text + f", {steps_per_epoch} steps per epoch"


def read_history(run: Path) -> list[dict]:
    with (run / "history.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def network_summary(network) -> dict:
    from mssh_keras.model import count_flops
    from mssh_keras.model_file import prepare_model

    return {"parameters": int(network.count_params()),
            "gflops": round(count_flops(prepare_model(network)) / 1e9, 3)}


def add_thresholds(out: Path, network, thresholds: dict, preset: str, skeleton: str,
                   tflite_files: tuple[str, ...] = ("model.tflite",)) -> None:
    """Put the calibrated confidence thresholds into every file's metadata: each TFLite
    file's sidecar and embedded copy (the full-int8 file gets the fp32 file's thresholds:
    its heatmaps are the same to a few per cent), and a ``model.keras.json`` sidecar for
    the Keras file."""
    from mssh_keras.model_file import embed_tflite_metadata, network_metadata, prepare_model

    for name in tflite_files:
        side = out / f"{name}.json"
        meta = {**json.loads(side.read_text()), "thresholds": thresholds}
        write_json_atomic(side, meta, indent=1)
        tflite = out / name
        tflite.write_bytes(embed_tflite_metadata(tflite.read_bytes(), meta))
    keras_meta = network_metadata(out / "model.keras", network, prepare_model(network),
                                  skeleton=skeleton, preset=preset)
    write_json_atomic(out / "model.keras.json", {**keras_meta, "thresholds": thresholds},
                      indent=1)


def track_calibration(model: Path, records: list[dict]) -> dict:
    """``calibration.track_threshold`` of ``model`` on ``records``: pose scores in each
    person's GT box and one box away in the same frame."""
    import cv2

    from mssh_keras.calibration import box_one_side_away, track_threshold
    from mssh_keras.evaluator import gt_box
    from mssh_keras.geometry import JOINT_BOX_PADDING
    from mssh_keras.person_search import pose_score
    from mssh_keras.runtime import PoseEstimator

    est = PoseEstimator(model)
    present, absent = [], []
    for r in records:
        image = cv2.cvtColor(cv2.imread(str(r["path"])), cv2.COLOR_BGR2RGB)
        box = gt_box(r["center"], r["scale"], JOINT_BOX_PADDING)
        present.append(pose_score(est.predict(image, box, search=False).confidence))
        away = box_one_side_away(box, image.shape[:2])
        if away is not None:
            absent.append(pose_score(est.predict(image, away, search=False).confidence))
    return track_threshold(present, absent)


def confidence_text(th: dict) -> str:
    """The card's confidence row: both thresholds and how each was calibrated."""
    joint = (f"joint threshold {th['joint_threshold']:g} (calibrated: {th['rule']}, "
             f"J = {th['youden_j']:.2f})")
    if "track_rule" not in th:
        return (f"joint and track thresholds {th['joint_threshold']:g} (calibrated: "
                f"{th['rule']}, J = {th['youden_j']:.2f}); the demo uses them by default")
    return (f"{joint}; track threshold {th['track_threshold']:g} (calibrated: "
            f"{th['track_rule']}; {th['track_absent_kept']:.0%} of crops one box away "
            f"score above it); the demo uses them by default")


def int8_check(int8, data_dir: str | None, manual_dir: str) -> dict:
    """Full-int8 TFLite: shipped (``model_int8.tflite``) only if it passes its moved-joints
    limit, with its validation PCK; removed otherwise (the card says why)."""
    from mssh_keras.evaluator import evaluate_model

    v = int8.verification
    facts = {"file": int8.path.name, "passed": bool(v["passed"]), "criterion": v["criterion"],
             "moved_share": v["moved_share"], "size_mb": v["size_mb"],
             "calibration": int8.metadata.get("calibration")}
    if not v["passed"]:
        for p in int8.path.parent.glob(int8.path.name + "*"):
            p.unlink()
        return {**facts, "file": None}
    report, _ = evaluate_model(int8.path, "lspet", "val", data_dir, manual_dir)
    return {**facts, "PCK@0.2": report["tables"]["PCK@0.2"]["Total"],
            "strict PCP@0.5": report["tables"]["strict PCP@0.5"]["Total"]}


def int8_text(int8: dict | None) -> str:
    """The card's line on the full-int8 file."""
    if not int8:
        return ""
    moved = f"{int8['moved_share']:.1%} of joints moved > 1 heatmap px ({int8['criterion']})"
    if not int8["file"]:
        return f"Full int8: not shipped, it failed its verification: {moved}."
    return (f"Full int8 (`{int8['file']}`, {int8['size_mb']} MB, calibrated on "
            f"{int8['calibration']}): PCK@0.2 {int8['PCK@0.2']:.1f} %, strict PCP@0.5 "
            f"{int8['strict PCP@0.5']:.1f} %; {moved}.")


def flip_text(metrics: dict) -> str:
    """The flip test's line (cards shipped before it was measured have none)."""
    f = metrics.get("lspet_val_flip_test")
    if f is None:
        return ""
    t = f["tables"]
    return (f"With the flip test (`--flip-test`, the mirrored crop averaged in: two model calls "
            f"per person): PCK@0.2 {t['PCK@0.2']['Total']:.1f} %, strict PCP@0.5 "
            f"{t['strict PCP@0.5']['Total']:.1f} %.")


def render_card(card: dict, tables_md: str, limits_md: str) -> str:
    """MODEL_CARD.md from card.json's facts."""
    t, net, reg = card["trained"], card["network"], card["regression_check"]
    ver = card["tflite_verification"]
    rows = [
        ("network", f"`{card['preset']}`: {card['description']} {net['parameters'] / 1e6:.3f} M "
                    f"parameters, {net['gflops']} GFLOPs, {card['input_size']}x"
                    f"{card['input_size']} RGB input"),
        ("joints", f"{card['skeleton']} (person-centric left/right)"),
        ("files", f"`model.keras` (functional network), `model.tflite` (fp32, "
                  f"{ver['size_mb']} MB, max abs heatmap diff vs Keras {ver['max_abs_diff']:.1e}"
                  f" on {ver['sample_source']}) + `model.tflite.json` (metadata)"),
        ("data", f"train: {card['data']['train']}; validation: {card['data']['validation']}"),
        ("training", f"{t['steps']} steps of batch {t['batch_size']} = {t['images_seen']:,} "
                     f"images ({t['passes']:.1f} passes over the training split), "
                     f"{t['schedule']}; shipped weights: `{t['weights']}` ({t['weights_note']})"),
        ("confidence", confidence_text(card["thresholds"])),
        ("hardware / time", f"{t['hardware']}; {t['wall_time_minutes']} min wall"),
        ("command", f"`{card['command']}`"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    m = card["metrics"]["lspet_val"]
    extras = "".join(f"{line}\n\n" for line in (flip_text(card["metrics"]),
                                               int8_text(card.get("int8"))) if line)
    return f"""# {card['name']} — model card

The default model of `evaluate.py`, `export.py` and the demo. Machine-readable twin:
`card.json` (written by `scripts/ship_model.py`; the regression test reads its numbers).

| | |
|---|---|
{table}

## Metrics (LSPET validation split, {m['num_examples']} people, TFLite file, no flip test)

`python evaluate.py --model models/{card['name']}/model.tflite --dataset lspet --manual-dir ../shared/data/real/lspet_axelcarlier`

{tables_md}
{extras}Regression check (`tests/test_shipped_model.py`): PCK@0.2 = {reg['PCK@0.2']:.2f} % on the first
{reg['num_people']} validation people ({reg['first_ids'][0]} ...), TFLite and Keras alike
(Keras: {reg['keras_PCK@0.2']:.2f} %).

## Known limits — read before use

{limits_md.strip()}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="train.py output folder")
    ap.add_argument("--weights", default="final.keras", help="file in --run to ship")
    ap.add_argument("--name", required=True, help="folder under models/")
    ap.add_argument("--manual-dir", required=True, help="LSPET files (validation images)")
    ap.add_argument("--data-dir", help="TFDS data directory")
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--wall-minutes", type=float, required=True)
    ap.add_argument("--limits", type=Path, required=True, help="Markdown: known limits")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = ap.parse_args(argv)

    run, weights = args.run, args.run / args.weights
    for needed in (weights, run / "run_config.json", run / "history.csv", args.limits):
        if not needed.exists():
            print(f"error: {needed} not found", file=sys.stderr)
            return 2

    from mssh_keras.calibration import calibrate_thresholds
    from mssh_keras.config import get_preset
    from mssh_keras.data.lspet import read_lspet
    from mssh_keras.data.sample_crops import SampleCrops
    from mssh_keras.evaluator import evaluate_model, score_records
    from mssh_keras.export import export
    from mssh_keras.model_file import load_network
    from mssh_keras.metrics import markdown_tables
    from mssh_keras.result_files import jsonable
    from mssh_keras.skeleton import get_skeleton

    config = json.loads((run / "run_config.json").read_text())
    opts, history = config["options"], read_history(run)
    latest = json.loads((run / "ckpt" / "latest.json").read_text())
    epochs = int(latest["epoch"])
    out = args.models_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, out / "model.keras")
    network = load_network(out / "model.keras")
    tfl, int8 = export(network, ["tflite"], out, source=out / "model.keras", skeleton=config[
        "skeleton"], preset=opts["preset"], verify_samples=32, quantizations=("fp32", "int8"),
        crops=SampleCrops("lspet", args.data_dir, args.manual_dir), check=False)
    if not tfl.verification["passed"]:
        print(f"error: {tfl.path} failed its verification", file=sys.stderr)
        return 1

    full, full_preds = evaluate_model(tfl.path, "lspet", "val", args.data_dir, args.manual_dir)
    int8_card = int8_check(int8, args.data_dir, args.manual_dir)
    flipped, _ = evaluate_model(tfl.path, "lspet", "val", args.data_dir, args.manual_dir,
                                flip_test=True)
    val_people = read_lspet(args.manual_dir, "val")
    thresholds = calibrate_thresholds(full_preds, get_skeleton(config["skeleton"]),
                                      track=track_calibration(tfl.path, val_people))
    tflite_files = ("model.tflite",) + ((int8_card["file"],) if int8_card["file"] else ())
    add_thresholds(out, network, thresholds, opts["preset"], config["skeleton"], tflite_files)
    records = val_people[:REGRESSION_PEOPLE]
    subset = {name: score_records(out / name, records)["tables"]["PCK@0.2"]["Total"]
              for name in ("model.keras", *tflite_files)}

    batch, planned = config["train"]["batch_size"], config["train"]["epochs"]
    train_people = len(read_lspet(args.manual_dir, "train"))
    steps_per_epoch = opts["steps_per_epoch"] or train_people // batch  # as train.py counts
    best_epoch = max(history, key=lambda h: h["val_pck"])["epoch"] + 1
    if args.weights == "final.keras":
        note = f"after the last epoch, {epochs}"
    else:
        note = f"best validation PCK on {opts['val_examples']} people, epoch {best_epoch:.0f}"
    if epochs < planned:
        note += f"; an interim model: the run stands at epoch {epochs} of its {planned}"
    card = {
        "name": args.name,
        "preset": opts["preset"],
        "description": get_preset(opts["preset"]).description,
        "model_config": config["model"],
        "train_config": config["train"],
        "network": network_summary(network),
        "input_size": config["model"]["input_size"],
        "skeleton": config["skeleton"],
        "data": {
            "train": f"LSPET images whose number is not divisible by 10: {train_people:,} people",
            "validation": f"LSPET images whose number is divisible by 10: "
                          f"{full['num_examples']} people",
            "source": "../shared/data/real/lspet_axelcarlier (7,000 real images)",
        },
        "command": train_command(opts, planned if epochs < planned else epochs,
                                 "../shared/data/real/lspet_axelcarlier"),
        "trained": {
            "epochs_completed": epochs,
            "steps_per_epoch": steps_per_epoch,
            "steps": epochs * steps_per_epoch,
            "batch_size": batch,
            "images_seen": epochs * steps_per_epoch * batch,
            "passes": epochs * steps_per_epoch * batch / train_people,
            "planned_epochs": planned,
            "schedule": schedule_text(config["train"], steps_per_epoch),
            "weights": args.weights,
            "weights_note": note,
            "hardware": args.hardware,
            "wall_time_minutes": args.wall_minutes,
        },
        "history": history,
        "thresholds": thresholds,
        "tflite_verification": {k: tfl.verification[k] for k in
                                ("sample_source", "max_abs_diff", "size_mb", "passed")},
        "int8": int8_card,
        "metrics": {"lspet_val": {k: full[k] for k in
                                  ("num_examples", "tables", "per_joint", "per_limb",
                                   "joint_counts")},
                    "lspet_val_flip_test": {k: flipped[k] for k in
                                            ("num_examples", "tables", "per_joint")}},
        "regression_check": {
            "split": "val", "num_people": len(records),
            "first_ids": [r["image_id"] for r in records[:3]],
            "PCK@0.2": subset["model.tflite"], "keras_PCK@0.2": subset["model.keras"],
            **({"int8_PCK@0.2": subset[int8_card["file"]]} if int8_card["file"] else {}),
            "backend": "model.tflite (model.keras must agree within 0.5 pt)",
        },
    }
    write_json_atomic(out / "card.json", jsonable(card), indent=1)
    md = render_card(card, markdown_tables(full), args.limits.read_text())
    (out / "MODEL_CARD.md").write_text(md)
    print(md)
    print(f"shipped {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
