"""Tests of the maintenance scripts: ablation tables and model shipping (card + command)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mssh_keras.metrics import lsp_report, markdown_tables, outcome_key
from scripts.compare_models import comparison_table, difference_table, parse_model
from scripts.ship_model import render_card, schedule_text, train_command

ROOT = Path(__file__).resolve().parents[1]


def _report(shift: float) -> dict:
    gt = np.tile(np.linspace(0, 130, 14)[None, :, None], (3, 1, 2)).astype(np.float64)
    gt[..., 0] += np.arange(14) * 3.0  # a non-degenerate torso
    return lsp_report(gt + shift, gt, np.ones((3, 14), bool))


def test_comparison_table_one_row_per_model_per_metric():
    table = comparison_table([("exact", _report(0.0)), ("far", _report(500.0))]).splitlines()
    assert table[0] == "| PCK@0.2 | Head | Sho. | Elb. | Wri. | Hip | Knee | Ank. | Total |"
    assert table[2].startswith("| exact | 100.0 |") and table[2].endswith("| 100.0 |")
    assert table[3].startswith("| far | 0.0 |") and table[3].endswith("| 0.0 |")
    assert table[5].startswith("| strict PCP@0.5 | Torso |")
    assert len(table) == 9 and table[4] == ""


def test_difference_table_pairs_the_same_people():
    exact, far = _report(0.0), _report(500.0)
    for r in (exact, far):
        r["per_example"]["image_id"] = ["a", "b", "c"]
    table = difference_table([("exact", exact), ("far", far)], baseline="far").splitlines()
    assert table[0] == ("| PCK@0.2: minus far | Head | Sho. | Elb. | Wri. | Hip | Knee | "
                        "Ank. | Total |")
    assert table[2] == "| exact |" + " +100.0 [+100.0, +100.0] |" * 8
    assert table[4].startswith("| strict PCP@0.5: minus far | Torso |")
    assert table[6] == "| exact |" + " +100.0 [+100.0, +100.0] |" * 7
    del exact["per_example"][outcome_key("PCK@0.2", "joint")]
    with pytest.raises(ValueError, match="no per-joint results"):
        difference_table([("exact", exact), ("far", far)], baseline="far")
    far["per_example"]["image_id"] = ["a", "b", "d"]
    with pytest.raises(ValueError, match="different people"):
        difference_table([("exact", exact), ("far", far)], baseline="far")
    with pytest.raises(ValueError, match="not one of the labels"):
        difference_table([("exact", exact)], baseline="nope")


def test_compare_models_runs_as_a_file_on_saved_reports(tmp_path):
    """``python scripts/compare_models.py`` (its docstring's command) finds the package."""
    import subprocess
    import sys
    paths = []
    for label, shift in (("exact", 0.0), ("far", 500.0)):
        report = {**_report(shift), "split": "val"}
        report["per_example"]["image_id"] = ["a", "b", "c"]
        paths.append(tmp_path / f"{label}.json")
        paths[-1].write_text(json.dumps(report))
    out = subprocess.run([sys.executable, "scripts/compare_models.py", f"{paths[0]}=exact",
                          f"{paths[1]}=far", "--baseline", "far", "--out",
                          str(tmp_path / "table.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| exact |" + " +100.0 [+100.0, +100.0] |" * 8 in out.stdout
    assert json.loads((tmp_path / "table.json").read_text())["split"] == "val"


def test_parse_model_labels():
    assert parse_model("runs/a/final.keras=mssh") == (Path("runs/a/final.keras"), "mssh")
    assert parse_model("runs/a/final.keras") == (Path("runs/a/final.keras"), "a/final.keras")


def test_train_command_spells_out_non_default_options():
    opts = {"preset": "mssh-lite", "dataset": "lspet", "epochs": 10, "batch_size": None,
            "learning_rate": 0.001, "lr_drops": [10], "input_size": None,
            "steps_per_epoch": 50, "val_examples": 256, "adaptive": False,
            "fusion": "concat", "lateral": True, "block": None, "seed": 0, "augment": True,
            "output_dir": "/somewhere/runs/abl"}
    cmd = train_command(opts, 16, "DATA")
    assert cmd == ("python train.py --preset mssh-lite --dataset lspet --epochs 16 --lr 0.001 "
                   "--lr-drops 10 --steps-per-epoch 50 --fusion concat --no-adaptive "
                   "--lateral --manual-dir DATA --output-dir runs/abl")


def test_shipped_model_card_is_rendered_from_card_json():
    """MODEL_CARD.md says exactly what card.json measured (nothing typed by hand)."""
    folder = next((ROOT / "models").iterdir())
    card = json.loads((folder / "card.json").read_text())
    text = (folder / "MODEL_CARD.md").read_text()
    limits = text.split("## Known limits — read before use\n", 1)[1]
    expected = render_card(card, markdown_tables(card["metrics"]["lspet_val"]), limits)
    assert text == expected
    t = card["trained"]
    assert t["steps"] == t["epochs_completed"] * t["steps_per_epoch"]
    assert f"--epochs {t['planned_epochs']}" in card["command"]
    assert t["schedule"] == schedule_text(card["train_config"], t["steps_per_epoch"])


def test_schedule_text_spells_both_recipes():
    paper = {"optimizer": "rmsprop", "learning_rate": 2.5e-4, "lr_schedule": "step",
             "lr_drops": [10, 20], "warmup_steps": 0, "weight_decay": 0.0, "epochs": 30}
    assert schedule_text(paper, 50) == ("RMSprop 0.00025, 10x drop after epoch(s) 10, 20, "
                                        "50 steps per epoch")
    lite = {"optimizer": "adam", "learning_rate": 2e-3, "lr_schedule": "cosine",
            "lr_drops": [], "warmup_steps": 300, "weight_decay": 0.0, "epochs": 60}
    assert schedule_text(lite, 393) == ("Adam 0.002, linear warm-up over 300 steps, cosine "
                                        "decay over 60 epochs, 393 steps per epoch")


def test_curves_read_a_run_folder_or_a_shipped_models_card(tmp_path):
    """A run's folder goes once its model ships: the card's history draws the same curve."""
    from scripts.plot_curves import read_history

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("epoch,loss,val_pck\n0,2.5,20.0\n1,2.0,31.5\n")
    shipped = tmp_path / "model"
    shipped.mkdir()
    (shipped / "card.json").write_text(json.dumps({"history": [
        {"epoch": 0.0, "loss": 2.5, "val_pck": 20.0}, {"epoch": 1.0, "loss": 2.0,
                                                       "val_pck": 31.5}]}))
    assert read_history(run) == read_history(shipped) == {
        "epoch": [0.0, 1.0], "loss": [2.5, 2.0], "val_pck": [20.0, 31.5]}
    with pytest.raises(FileNotFoundError, match="card.json"):
        read_history(tmp_path)
