"""benchmarks/accuracy.py: the BlazePose -> LSP-14 mapping, the head-rule fit, the crops and
the scoring loop (no network, no mediapipe: a fake BlazePose stands in for the model)."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from conftest import REAL_DATA, ROOT
from mssh_keras import geometry
from mssh_keras.data.lspet import read_lspet
from mssh_keras.metrics import lsp_report
from mssh_keras.skeleton import LSP14

_spec = importlib.util.spec_from_file_location("bench_accuracy",
                                               ROOT / "benchmarks" / "accuracy.py")
A = sys.modules.setdefault("bench_accuracy", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(A)  # registered first: its dataclasses look their module up

LSPET = REAL_DATA / "lspet_axelcarlier"
SHIPPED = ROOT / "models" / "hg-lite-lspet"


def facing_landmarks() -> np.ndarray:
    """33 BlazePose landmarks of a person facing the camera: the person's left side is on
    the image's right (x > 0), y down; ears at y = -10, shoulders at y = 0."""
    lm = np.full((33, 2), np.nan)
    for name, (x, y) in {"nose": (0, -12), "l_ear": (3, -10), "r_ear": (-3, -10),
                         "l_shoulder": (8, 0), "r_shoulder": (-8, 0), "l_elbow": (10, 15),
                         "r_elbow": (-10, 15), "l_wrist": (11, 28), "r_wrist": (-11, 28),
                         "l_hip": (5, 40), "r_hip": (-5, 40), "l_knee": (6, 60),
                         "r_knee": (-6, 60), "l_ankle": (7, 80), "r_ankle": (-7, 80)}.items():
        lm[A.BP[name]] = (x, y)
    return lm


def test_mapping_keeps_person_centric_sides():
    lsp = A.blazepose_to_lsp14(facing_landmarks(), a=0.5, b=1.0)
    assert lsp.shape == (14, 2)
    j = {n: lsp[LSP14.index(n)] for n in LSP14.joints}
    # MediaPipe's "left" is the person's left, like LSP's: no swap, whatever the view.
    for side, sign in (("l", 1), ("r", -1)):
        for part, x in (("shoulder", 8), ("elbow", 10), ("wrist", 11), ("hip", 5),
                        ("knee", 6), ("ankle", 7)):
            assert j[f"{side}_{part}"][0] == sign * x, f"{side}_{part}"
    assert j["r_ankle"].tolist() == [-7, 80] and j["l_ankle"].tolist() == [7, 80]


def test_head_rule_extends_shoulders_to_ears_axis():
    lsp = A.blazepose_to_lsp14(facing_landmarks(), a=0.5, b=1.0)
    # S = (0, 0), E = (0, -10), d = (0, -10): neck = S + 0.5 d, head top = E + 1.0 d.
    np.testing.assert_allclose(lsp[LSP14.index("neck")], [0, -5])
    np.testing.assert_allclose(lsp[LSP14.index("head_top")], [0, -20])
    # Batched, and equivariant to a rotation + shift (crop or image pixels alike).
    m = geometry.crop_matrix((30, 40), 100, 256, rotation=33)
    moved = geometry.transform_points(facing_landmarks(), m)
    both = A.blazepose_to_lsp14(np.stack([facing_landmarks(), moved]), 0.5, 1.0)
    np.testing.assert_allclose(both[1], geometry.transform_points(both[0], m), atol=1e-9)


def test_fit_recovers_known_rule_despite_missed_people():
    rng = np.random.default_rng(0)
    n, a, b = 200, 0.63, 0.91
    lm = np.stack([geometry.transform_points(facing_landmarks(), geometry.crop_matrix(
        rng.uniform(0, 300, 2), rng.uniform(50, 400), 256, rng.uniform(-180, 180)))
        for _ in range(n)])
    lm[np.isnan(lm)] = 0.0
    gt = A.blazepose_to_lsp14(lm, a, b)
    torso = np.linalg.norm(gt[:, LSP14.index("l_shoulder")] - gt[:, LSP14.index("r_hip")],
                           axis=-1)
    gt += rng.normal(0, 0.02, gt.shape) * torso[:, None, None]   # annotation noise
    gt[:20, LSP14.index("head_top")] += 3 * torso[:20, None]       # heads BlazePose missed
    valid = np.ones((n, 14), bool)
    valid[20:30, LSP14.index("neck")] = False                      # not annotated
    rule = A.fit_head_rule(lm, gt, valid)
    assert rule["a"] == pytest.approx(a, abs=0.02)
    assert rule["b"] == pytest.approx(b, abs=0.02)
    assert rule["neck"]["people"] == n - 10
    assert rule["head_top"]["inliers"] == n - 20


def test_blazepose_upright_square_holds_the_whole_turned_box():
    assert A.upright_square((0, 0, 100, 40), 90.0)[1] == pytest.approx(100.0)
    assert A.upright_square((0, 0, 100, 100), 45.0)[1] == pytest.approx(100 * np.sqrt(2))
    assert A.upright_square((0, 0, 100, 100), 180.0)[0] == pytest.approx([50.0, 50.0])


def test_upright_crop_turns_the_gt_torso_up():
    records = read_lspet(LSPET, "val")[:40]
    turned = 0
    for rec in records:
        rois = A.person_rois(rec)
        assert rois["gt-box"] == A.Roi(tuple(map(float, rec["center"])), float(rec["scale"]))
        rot = A.gt_rotation(rec)
        if rot is None:
            assert rois["gt-box-upright"] == rois["gt-box"]
            continue
        turned += 1
        up = rois["gt-box-upright"]
        m = geometry.crop_matrix(up.center, up.side, 256, up.rotation)
        ok = np.asarray(rec["flags"]) > 0
        hips, shoulders = (geometry.transform_points(p, m) for p in
                           A.person_search.torso(rec["joints"], ok, LSP14))
        v = shoulders - hips
        assert v[1] < 0 and abs(v[0]) < 1e-6 * np.hypot(*v) + 1e-6   # straight up
        # The turned square holds the whole (padded) box: never smaller than gt-box's.
        assert up.side >= rec["scale"] * (1 - 1e-6)
        assert up.side == pytest.approx(A.upright_square((0, 0, 1, 1), rot)[1] * rec["scale"])
        np.testing.assert_allclose(up.center, rec["center"], atol=1e-3)
    assert turned > 30


class FakeBlazePose:
    """Stands in for the LiteRT runner: checks its input and puts every landmark at the
    crop's centre (MediaPipe's continuous coordinates: 128 = the centre of 256 pixels)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        assert x.shape == (256, 256, 3) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        self.calls += 1
        raw = np.zeros((39, 5), np.float32)
        raw[:, :2] = 128.0
        return raw.reshape(-1)


def test_scoring_end_to_end_on_real_people_with_shipped_model_and_fake_blazepose():
    card = json.loads((SHIPPED / "card.json").read_text())["regression_check"]
    records = read_lspet(LSPET, card["split"])[:card["num_people"]]
    fake = FakeBlazePose()
    predictors = [A.ours(SHIPPED / "model.tflite", threads=2),
                  A.blazepose(fake, 0.6, 0.9, label="fake")]
    assert predictors[0].label == "hg-lite-lspet" and predictors[0].input_size == 128
    rows = A.score_people(records, predictors)
    assert fake.calls == 2 * len(records)
    assert [(r["label"], r["protocol"]) for r in rows] == [
        ("hg-lite-lspet", "gt-box"), ("hg-lite-lspet", "gt-box-upright"),
        ("fake", "gt-box"), ("fake", "gt-box-upright")]
    assert all(r["people"] == len(records) for r in rows)
    # Our gt-box crop is evaluate.py's: the shipped model scores what its card recorded.
    assert rows[0]["tables"]["PCK@0.2"]["Total"] == pytest.approx(card["PCK@0.2"], abs=1.0)
    # The fake's landmarks come back through the inverse crop to each crop's centre (both
    # crops share it), and are scored by lsp_report like ours.
    gt = np.stack([r["joints"] for r in records])
    centre = np.repeat(np.stack([r["center"] for r in records])[:, None], 14, axis=1)
    expected = lsp_report(centre, gt, np.stack([r["flags"] for r in records]) > 0, LSP14)
    for row in rows[2:]:
        assert row["tables"]["PCK@0.2"] == pytest.approx(expected["tables"]["PCK@0.2"],
                                                         abs=1e-6)
    diffs = A.compare(rows, "hg-lite-lspet", "fake", samples=200)
    assert len(diffs) == 4 and all(c["ci95"][0] <= c["difference"] <= c["ci95"][1]
                                   for c in diffs)
    table = A.markdown(rows, diffs)
    assert "| hg-lite-lspet | gt-box | 128 |" in table
    assert "| fake | gt-box-upright | 256 |" in table
