"""The shipped model still scores what its model card says on real validation images.

A regression anywhere in decoding, preprocessing, the runtime or the export shows up here
as a PCK that no longer matches the number recorded when the model was shipped.
"""
from __future__ import annotations

import json

import pytest

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.data.lspet import read_lspet
from mssh_keras.evaluator import score_records
from conftest import REAL_DATA

MODEL_DIR = SHIPPED_MODEL_DIR
LSPET = REAL_DATA / "lspet_axelcarlier"
CARD = json.loads((MODEL_DIR / "card.json").read_text())


@pytest.fixture(scope="module")
def subset():
    check = CARD["regression_check"]
    records = read_lspet(LSPET, check["split"])[:check["num_people"]]
    assert [r["image_id"] for r in records[:3]] == check["first_ids"]
    return records


@pytest.mark.parametrize("filename", ["model.tflite", "model.keras"])
def test_shipped_model_pck_matches_the_card(subset, filename):
    report = score_records(MODEL_DIR / filename, subset)
    expected = CARD["regression_check"]["PCK@0.2"]
    got = report["tables"]["PCK@0.2"]["Total"]
    # Same weights, same crops: only float rounding between backends may differ (<0.5 pt).
    assert got == pytest.approx(expected, abs=0.5), (filename, got, expected)


def test_shipped_int8_file_matches_the_card_or_is_absent(subset):
    """Full int8 ships only when it passed its moved-joints limit, and then scores what the
    card recorded on the regression people (its own file: the same number, to rounding)."""
    int8 = CARD["int8"]
    path = MODEL_DIR / "model_int8.tflite"
    assert path.exists() == bool(int8["file"]) == int8["passed"]
    if int8["file"]:
        got = score_records(path, subset)["tables"]["PCK@0.2"]["Total"]
        assert got == pytest.approx(CARD["regression_check"]["int8_PCK@0.2"], abs=0.5)
        # The demo and the search read their thresholds from the file itself.
        from mssh_keras.runtime import PoseEstimator
        assert PoseEstimator(path).metadata["thresholds"] == CARD["thresholds"]


def test_card_metrics_are_this_models():
    full = CARD["metrics"]["lspet_val"]
    assert full["num_examples"] == 700
    assert 0 < full["tables"]["PCK@0.2"]["Total"] < 100
