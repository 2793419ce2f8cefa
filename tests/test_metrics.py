"""Metrics against hand-computed answers and the real MPII validation evaluation file."""
import math

import numpy as np
import pytest
import scipy.io

from mssh_keras import metrics as M
from mssh_keras.skeleton import LSP14, MPII16
from conftest import REAL_DATA

MPII_EVAL = REAL_DATA / "mpii_eval_pytorch_pose/evaluation/data/detections_our_format.mat"


# ----------------------------------------------------------------------------- PCK
def test_pck_hand_computed():
    gt = np.zeros((2, 4, 2))
    pred = np.zeros((2, 4, 2))
    pred[0, :3, 0] = [1, 2, 3]        # ref 10 -> tolerance 2: hit, hit (<=), miss
    pred[1, :3, 1] = [4, 5, 0]        # ref 20 -> tolerance 4: hit, miss, (not valid)
    valid = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    out = M.pck(pred, gt, valid, [10.0, 20.0], 0.2)
    np.testing.assert_allclose(out[:3], [100.0, 50.0, 0.0])
    assert math.isnan(out[3])                          # never valid -> NaN, not 0
    # An example without a usable reference length counts for nothing.
    out = M.pck(pred, gt, valid, [10.0, np.nan], 0.2)
    np.testing.assert_allclose(out[:3], [100.0, 100.0, 0.0])


def test_torso_lengths_uses_left_shoulder_right_hip():
    gt = np.zeros((2, 14, 2))
    gt[:, LSP14.index("l_shoulder")] = (10, 10)
    gt[:, LSP14.index("r_hip")] = (13, 14)
    gt[:, LSP14.index("r_shoulder")] = (100, 100)      # must not matter
    valid = np.ones((2, 14), bool)
    valid[1, LSP14.index("r_hip")] = False
    np.testing.assert_allclose(M.torso_lengths(gt, LSP14), [5.0, 5.0])
    out = M.torso_lengths(gt, LSP14, valid)
    assert out[0] == 5.0 and math.isnan(out[1])


def _lsp_figure():
    """A stick figure with known limb lengths (upper arm 30, forearm 20, torso 50 x 60)."""
    p = {"head_top": (50, 0), "neck": (50, 20),
         "r_shoulder": (25, 30), "l_shoulder": (75, 30),
         "r_elbow": (25, 60), "l_elbow": (75, 60), "r_wrist": (25, 80), "l_wrist": (75, 80),
         "r_hip": (35, 90), "l_hip": (65, 90), "r_knee": (35, 130), "l_knee": (65, 130),
         "r_ankle": (35, 170), "l_ankle": (65, 170)}
    return np.array([p[n] for n in LSP14.joints], float)[None]


def test_strict_pcp_uses_each_limbs_own_length():
    gt = _lsp_figure()
    valid = np.ones((1, 14), bool)
    res = M.pcp(gt, gt, valid, LSP14)
    assert all(v == 100.0 for v in res.values())
    assert list(res) == ["Torso", "U.Leg", "L.Leg", "U.Arm", "Forearm", "Head", "Total"]
    # Right elbow moved 12 px: within 0.5 x upper arm (15) but not 0.5 x forearm (10).
    pred = gt.copy()
    pred[0, LSP14.index("r_elbow"), 0] += 12
    res = M.pcp(pred, gt, valid, LSP14)
    assert res["U.Arm"] == 100.0 and res["Forearm"] == 50.0
    assert res["Total"] == pytest.approx(100 * 10 / 11)     # 11 limbs, one wrong
    # Right wrist moved 0.49 / 0.51 x forearm length (20).
    for f, expect in ((0.49, 100.0), (0.51, 50.0)):
        pred = gt.copy()
        pred[0, LSP14.index("r_wrist"), 1] += f * 20
        assert M.pcp(pred, gt, valid, LSP14)["Forearm"] == expect
    # A limb with an unannotated endpoint is not counted.
    valid[0, LSP14.index("r_wrist")] = False
    pred = gt.copy()
    pred[0, LSP14.index("l_wrist"), 1] += 15
    res = M.pcp(pred, gt, valid, LSP14)
    assert res["Forearm"] == 0.0 and res["Total"] == pytest.approx(100 * 9 / 10)


def test_lsp_report_columns_and_values():
    gt = _lsp_figure()
    valid = np.ones((1, 14), bool)
    torso = math.hypot(75 - 35, 30 - 90)                  # |l_shoulder(75,30) - r_hip(35,90)|
    pred = gt.copy()
    pred[0, LSP14.index("head_top"), 0] += 0.21 * torso   # Head = mean(head top, neck) = 50
    pred[0, LSP14.index("l_knee"), 0] += 0.19 * torso     # still correct
    rep = M.lsp_report(pred, gt, valid)
    pck = rep["tables"]["PCK@0.2"]
    assert list(pck) == ["Head", "Sho.", "Elb.", "Wri.", "Hip", "Knee", "Ank.", "Total"]
    assert pck["Head"] == 50.0 and pck["Knee"] == 100.0
    assert pck["Total"] == pytest.approx(100 * 13 / 14)
    assert rep["per_joint"]["PCK@0.2"]["head_top"] == 0.0
    assert rep["tables"]["strict PCP@0.5"]["Head"] == 0.0    # 0.21 torso > 0.5 x 20 px neck-head
    assert rep["per_limb"]["strict PCP@0.5"]["neck-head_top"] == 0.0
    assert rep["skeleton"] == "lsp14" and rep["joint_counts"]["neck"] == 1
    text = M.format_table(rep)
    assert "PCK@0.2" in text and "Forearm" in text and "92.9" in text
    md = M.markdown_tables(rep).splitlines()
    assert md[0] == "| | Head | Sho. | Elb. | Wri. | Hip | Knee | Ank. | Total |"
    assert md[1] == "|---" * 9 + "|"
    assert md[2] == "| PCK@0.2 | 50.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 92.9 |"
    assert md[4].count("|") == md[6].count("|") and md[6].startswith("| strict PCP@0.5 |")


def test_pckh_hand_computed_and_weighted_mean():
    assert M.head_sizes_from_boxes([[[0, 0], [30, 40]]])[0] == pytest.approx(30.0)
    n = 3
    gt = np.zeros((n, 16, 2))
    pred = np.zeros((n, 16, 2))
    vis = np.ones((n, 16), bool)
    hs = np.array([10.0, 20.0, 10.0])
    head, rsho, lsho = (MPII16.index(j) for j in ("head_top", "r_shoulder", "l_shoulder"))
    pred[:, head, 0] = [5, 11, 6]                 # scaled .5 (<=), .55, .6 -> 1 of 3
    pred[0, lsho, 0] = 100                        # l_shoulder: 0 of 1 ...
    vis[1:, lsho] = False                         # ... counted once only
    pred[:, MPII16.index("pelvis"), 0] = 1000     # excluded from the mean
    per = M.pckh(pred, gt, vis, hs)
    assert per[head] == pytest.approx(100 / 3) and per[lsho] == 0.0 and per[rsho] == 100.0
    assert per[MPII16.index("pelvis")] == 0.0
    rep = M.mpii_report(pred, gt, vis, hs)
    t = rep["tables"]["PCKh@0.5"]
    assert list(t) == ["Head", "Sho.", "Elb.", "Wri.", "Hip", "Knee", "Ank.", "Mean"]
    assert t["Head"] == pytest.approx(100 / 3)          # head top only
    assert t["Sho."] == pytest.approx(50.0)             # unweighted mean of r and l
    # 14 joints kept: 12 x 3 correct + head 1/3 + l_shoulder 0/1 = 37 of 40.
    assert t["Mean"] == pytest.approx(100 * 37 / 40)
    assert M.pckh_mean(pred, gt, vis, hs) == pytest.approx(t["Mean"])
    with pytest.raises(ValueError, match="head_sizes"):
        M.pckh(pred, gt, vis, [10.0, 0.0, 10.0])


def test_nan_columns_and_errors():
    gt = _lsp_figure()
    valid = np.ones((1, 14), bool)
    valid[0, [LSP14.index("r_ankle"), LSP14.index("l_ankle")]] = False
    rep = M.lsp_report(gt, gt, valid)
    assert math.isnan(rep["tables"]["PCK@0.2"]["Ank."])
    assert math.isnan(rep["tables"]["strict PCP@0.5"]["L.Leg"])
    assert "n/a" in M.format_table(rep)
    with pytest.raises(ValueError, match="no known skeleton"):
        M.lsp_report(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)), np.ones((1, 5)))
    with pytest.raises(ValueError, match="gt shape"):
        M.pck(np.zeros((1, 14, 2)), np.zeros((2, 14, 2)), np.ones((1, 14)), [1.0], 0.2)
    assert M.heatmap_pck(np.zeros((1, 2, 2)), [[[3.0, 0.0], [3.3, 0.0]]], np.ones((1, 2)),
                         64) == 50.0                  # 0.5 x 64/10 = 3.2 px


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def mpii_eval():
    d = scipy.io.loadmat(MPII_EVAL)
    return {"gt": d["pos_gt_src"].transpose(2, 0, 1),
            "pred": d["pos_pred_src"].transpose(2, 0, 1),
            "visible": d["jnt_missing"].T == 0,
            "boxes": d["headboxes_src"].transpose(2, 0, 1),
            "names": [str(n[0]) for n in d["dataset_joints"][0]]}


def test_real_gt_is_perfect_and_exact_thresholds(mpii_eval):
    gt, vis = mpii_eval["gt"], mpii_eval["visible"]
    assert gt.shape == (2958, 16, 2) and vis.sum() == 2958 * 16 - 3088
    hs = M.head_sizes_from_boxes(mpii_eval["boxes"])
    rep = M.mpii_report(gt, gt, vis, hs)
    assert all(v == 100.0 for v in rep["tables"]["PCKh@0.5"].values())
    assert all(v == 100.0 for v in rep["per_joint"]["PCKh@0.5"].values())
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, size=vis.shape)
    direction = np.stack([np.cos(angle), np.sin(angle)], -1)
    for f, expect in ((0.49, 100.0), (0.51, 0.0)):
        pred = gt + f * hs[:, None, None] * direction
        per = M.pckh(pred, gt, vis, hs)
        assert np.all(per == expect), (f, per)
    lsp = M.lsp_report(gt, gt, vis, MPII16)          # PCK / PCP on the MPII joint layout
    assert all(v == 100.0 for t in lsp["tables"].values() for v in t.values())


def _reference_pckh(pred, gt, missing, boxes, thr=0.5):
    """Straight loop transcription of the official MPII evaluation (evaluatePCKh)."""
    n, k = gt.shape[:2]
    correct, count = [0] * k, [0] * k
    for i in range(n):
        (x1, y1), (x2, y2) = boxes[i]
        head = 0.6 * math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
        for j in range(k):
            if missing[i, j]:
                continue
            count[j] += 1
            d = math.sqrt((pred[i, j, 0] - gt[i, j, 0]) ** 2 + (pred[i, j, 1] - gt[i, j, 1]) ** 2)
            if d / head <= thr:
                correct[j] += 1
    per = [100.0 * c / m for c, m in zip(correct, count)]
    kept = [j for j in range(k) if j not in (6, 7)]        # pelvis, thorax
    mean = sum(per[j] * count[j] for j in kept) / sum(count[j] for j in kept)
    # MPII order: 0 rank 1 rkne 2 rhip 3 lhip 4 lkne 5 lank 9 head 10 rwri 11 relb 12 rsho ...
    table = {"Head": per[9], "Sho.": (per[12] + per[13]) / 2, "Elb.": (per[11] + per[14]) / 2,
             "Wri.": (per[10] + per[15]) / 2, "Hip": (per[2] + per[3]) / 2,
             "Knee": (per[1] + per[4]) / 2, "Ank.": (per[0] + per[5]) / 2, "Mean": mean}
    return per, table


def test_tompson_predictions_match_reference_implementation(mpii_eval):
    assert mpii_eval["names"] == ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
                                  "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]
    pred, gt, vis, boxes = (mpii_eval[k] for k in ("pred", "gt", "visible", "boxes"))
    rep = M.mpii_report(pred, gt, vis, M.head_sizes_from_boxes(boxes))
    per, table = _reference_pckh(pred, gt, ~vis, boxes)
    np.testing.assert_allclose(list(rep["per_joint"]["PCKh@0.5"].values()), per, rtol=0, atol=1e-9)
    for col, val in table.items():
        assert rep["tables"]["PCKh@0.5"][col] == pytest.approx(val, abs=1e-9), col
    print("\nTompson et al. (CVPR15) on the MPII validation split, our code:\n"
          + M.format_table(rep))
    # Sanity only (literature: about 82-83 % mean PCKh@0.5); the equality above is the test.
    assert 70.0 < rep["tables"]["PCKh@0.5"]["Mean"] < 90.0


def test_paired_bootstrap_difference_and_interval():
    rng = np.random.default_rng(0)
    counted = np.full(400, 14)
    hits_b = rng.binomial(14, 0.2, 400)
    assert M.paired_bootstrap(hits_b, counted, hits_b, counted) == (0.0, 0.0, 0.0)
    d, lo, hi = M.paired_bootstrap(counted, counted, np.zeros(400), counted)
    assert (d, lo, hi) == (100.0, 100.0, 100.0)
    # B plus one extra hit on every 4th person: +1/56 of the joints, a paired effect whose
    # interval is far narrower than the spread of either model's own PCK.
    hits_a = hits_b + (np.arange(400) % 4 == 0)
    d, lo, hi = M.paired_bootstrap(hits_a, counted, hits_b, counted)
    assert d == pytest.approx(100 / 56) and 0 < lo < d < hi < 2 * d
    with pytest.raises(ValueError, match="same people"):
        M.paired_bootstrap(hits_a[:10], counted[:10], hits_b, counted)


def test_paired_columns_recompute_each_column_as_its_table_does():
    """Point estimates equal the two reports' own column differences; an effect confined
    to the wrists shows in Wri. (interval above zero) and leaves Hip at exactly zero."""
    rng = np.random.default_rng(1)
    n = 300
    gt = rng.uniform(0, 200, (n, 14, 2))
    gt[:, 9] = gt[:, 2] + [0.0, 60.0]   # l_shoulder 60 px above r_hip: torso 60
    noise = rng.normal(0, 10, (n, 14, 2))
    pred_b = gt + noise
    pred_a = pred_b.copy()
    wrists = [6, 11]
    pred_a[:, wrists] = gt[:, wrists] + noise[:, wrists] / 2   # A halves the wrist error
    valid = rng.uniform(size=(n, 14)) > 0.1
    ra, rb = M.lsp_report(pred_a, gt, valid), M.lsp_report(pred_b, gt, valid)
    cols = M.paired_columns(ra["per_example"], rb["per_example"], LSP14, samples=500)
    for name in ("PCK@0.2", "strict PCP@0.5"):
        for col, (d, lo, hi) in cols[name].items():
            own = ra["tables"][name][col] - rb["tables"][name][col]
            assert d == pytest.approx(own, abs=1e-9), (name, col)
            assert lo <= d <= hi
    d, lo, hi = cols["PCK@0.2"]["Wri."]
    assert lo > 0
    assert cols["PCK@0.2"]["Hip"] == (0.0, 0.0, 0.0)
    assert list(cols["strict PCP@0.5"]) == ["Torso", "U.Leg", "L.Leg", "U.Arm", "Forearm",
                                            "Head", "Total"]
    with pytest.raises(ValueError, match="same people"):
        short = {k: v[:10] for k, v in ra["per_example"].items()}
        M.paired_columns(short, rb["per_example"], LSP14)
    outcomes = [k for k in ra["per_example"] if M.is_outcome_key(k)]
    assert outcomes == [M.outcome_key("PCK@0.2", "joint"),
                        M.outcome_key("strict PCP@0.5", "limb")]
    totals = {k: v for k, v in ra["per_example"].items() if k not in outcomes}
    with pytest.raises(ValueError, match="no per-joint results"):
        M.paired_columns(totals, rb["per_example"], LSP14)
