"""Prediction/report files: JSON round trip and the MATLAB evaluation layouts."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mssh_keras import metrics as M
from mssh_keras.result_files import read_predictions, save_report, write_predictions
from mssh_keras.skeleton import LSP14, MPII16


@pytest.mark.parametrize("skeleton", [LSP14, MPII16])
def test_write_predictions_json_and_mat(tmp_path, skeleton):
    rng = np.random.default_rng(0)
    n, k = 3, skeleton.num_joints
    coords = rng.uniform(0, 300, size=(n, k, 2))
    conf = rng.uniform(0, 1, size=(n, k))
    ids = ["im00001.jpg", "im00002.jpg", "im00003.jpg"]
    json_path, mat_path = write_predictions(tmp_path / "out" / "preds.json", ids, coords, conf,
                                            skeleton)
    got_ids, got_xy, got_conf, names = read_predictions(json_path)
    assert got_ids == ids and names == list(skeleton.joints)
    np.testing.assert_allclose(got_xy, coords)
    np.testing.assert_allclose(got_conf, conf)
    mat = scipy.io.loadmat(mat_path)
    if skeleton is LSP14:                       # eval_pose: pred (2, 14, N), 1-based
        assert mat["pred"].shape == (2, 14, n)
        np.testing.assert_allclose(mat["pred"][:, 5, 2], coords[2, 5] + 1)
    else:                                       # MPII eval_PCKh.py: preds (N, 16, 2), 1-based
        assert mat["preds"].shape == (n, 16, 2)
        np.testing.assert_allclose(mat["preds"], coords + 1)


def test_bad_prediction_inputs(tmp_path):
    with pytest.raises(ValueError, match=".json"):
        write_predictions(tmp_path / "p.txt", ["a"], np.zeros((1, 14, 2)), np.zeros((1, 14)), LSP14)
    with pytest.raises(ValueError, match="coords must be"):
        write_predictions(tmp_path / "p.json", ["a"], np.zeros((1, 16, 2)), np.zeros((1, 16)), LSP14)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="junk.json"):
        read_predictions(tmp_path / "junk.json")


def test_save_report_writes_valid_json_with_nan_as_null(tmp_path):
    gt = np.zeros((1, 14, 2))
    gt[0, :, 0] = np.arange(14) * 10.0
    valid = np.ones((1, 14), bool)
    valid[0, 0] = False
    rep = M.lsp_report(gt, gt, valid)
    path = save_report(tmp_path / "r" / "report.json", rep)
    doc = json.loads(path.read_text())
    assert doc["per_joint"]["PCK@0.2"]["r_ankle"] is None
    assert doc["tables"]["PCK@0.2"]["Total"] == 100.0
    assert math.isnan(rep["per_joint"]["PCK@0.2"]["r_ankle"])   # the dict itself is untouched


def test_decoding_and_metrics_do_not_import_tensorflow():
    """TF-free runtimes (LiteRT, ONNX) share these modules, so they must stay numpy-only."""
    code = ("import sys, mssh_keras.decode, mssh_keras.metrics, mssh_keras.result_files; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
