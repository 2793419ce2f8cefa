"""Every shipped model still scores what its model card says on real validation images.

A regression anywhere in decoding, preprocessing, the runtime or the export shows up here
as a PCK that no longer matches the number recorded when the model was shipped. Each
folder of ``models/`` with a ``card.json`` is a shipped model; the default one
(``SHIPPED_MODEL_DIR``) must be among them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.data.lspet import read_lspet
from mssh_keras.evaluator import score_records
from conftest import REAL_DATA

MODEL_DIRS = sorted(p.parent for p in Path(SHIPPED_MODEL_DIR).parent.glob("*/card.json"))
LSPET = REAL_DATA / "lspet_axelcarlier"


def test_the_default_model_is_shipped():
    assert Path(SHIPPED_MODEL_DIR) in MODEL_DIRS


@pytest.fixture(scope="module", params=MODEL_DIRS, ids=lambda p: p.name)
def shipped(request):
    """(model folder, its card, the card's regression-check people)."""
    card = json.loads((request.param / "card.json").read_text())
    check = card["regression_check"]
    records = read_lspet(LSPET, check["split"])[:check["num_people"]]
    assert [r["image_id"] for r in records[:3]] == check["first_ids"]
    return request.param, card, records


@pytest.mark.parametrize("filename", ["model.tflite", "model.keras"])
def test_shipped_model_pck_matches_the_card(shipped, filename):
    model_dir, card, subset = shipped
    report = score_records(model_dir / filename, subset)
    expected = card["regression_check"]["PCK@0.2"]
    got = report["tables"]["PCK@0.2"]["Total"]
    # Same weights, same crops: only float rounding between backends may differ (<0.5 pt).
    assert got == pytest.approx(expected, abs=0.5), (model_dir.name, filename, got, expected)


def test_shipped_int8_file_matches_the_card_or_is_absent(shipped):
    """Full int8 ships only when it passed its moved-joints limit, and then scores what the
    card recorded on the regression people (its own file: the same number, to rounding)."""
    model_dir, card, subset = shipped
    int8 = card["int8"]
    path = model_dir / "model_int8.tflite"
    assert path.exists() == bool(int8["file"]) == int8["passed"]
    if int8["file"]:
        got = score_records(path, subset)["tables"]["PCK@0.2"]["Total"]
        assert got == pytest.approx(card["regression_check"]["int8_PCK@0.2"], abs=0.5)
        # The demo and the search read their thresholds from the file itself.
        from mssh_keras.runtime import PoseEstimator
        assert PoseEstimator(path).metadata["thresholds"] == card["thresholds"]


def test_card_metrics_are_this_models(shipped):
    model_dir, card, _ = shipped
    full = card["metrics"]["lspet_val"]
    assert full["num_examples"] == 700
    assert 0 < full["tables"]["PCK@0.2"]["Total"] < 100
    assert card["preset"] in model_dir.name    # card.json names its preset
