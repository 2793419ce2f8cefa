"""LSP reader on the real joints.mat (original-size release; no LSP images exist here, so
image folders are built in tmp_path from real LSPET JPEGs renamed to LSP names)."""
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mssh_keras import geometry
from mssh_keras.data import lsp
from mssh_keras.data.records import DatasetFilesError
from conftest import REAL_DATA

LSP_MAT = REAL_DATA / "lsp_original_annotations_mobilepose/joints.mat"
LSPET_IMAGES = REAL_DATA / "lspet_axelcarlier/images"


@pytest.fixture(scope="module")
def raw():
    """The file's own array: 3 x 14 x 2000 ([x, y, flag], joint, image)."""
    return scipy.io.loadmat(LSP_MAT)["joints"]


def make_lsp_dir(root: Path, numbers, joints_mat=LSP_MAT) -> Path:
    (root / "images").mkdir(parents=True)
    shutil.copy(joints_mat, root / "joints.mat")
    for k, n in enumerate(numbers):
        shutil.copy(LSPET_IMAGES / f"im{k + 1:05d}.jpg", root / "images" / f"im{n:04d}.jpg")
    return root


def test_load_joints_layout(raw, tmp_path):
    j = lsp.load_joints(LSP_MAT)
    assert raw.shape == (3, 14, 2000) and j.shape == (2000, 14, 3)
    np.testing.assert_array_equal(j[41, 7], raw[:, 7, 41])
    # The LSPET axis order is accepted too and gives the same array.
    scipy.io.savemat(tmp_path / "t.mat", {"joints": raw.transpose(1, 0, 2)})
    np.testing.assert_array_equal(lsp.load_joints(tmp_path / "t.mat"), j)
    scipy.io.savemat(tmp_path / "bad.mat", {"joints": raw[:, :13]})
    with pytest.raises(ValueError, match="3 x 14 x N"):
        lsp.load_joints(tmp_path / "bad.mat")


def test_splits_are_1000_1000_by_image_number():
    train = lsp.lsp_records(LSP_MAT, "/nowhere", "train")
    test = lsp.lsp_records(LSP_MAT, "/nowhere", "test")
    assert len(train) == 1000 and len(test) == 1000
    assert train[0]["image_id"] == "im0001.jpg" and train[-1]["image_id"] == "im1000.jpg"
    assert test[0]["image_id"] == "im1001.jpg" and test[-1]["image_id"] == "im2000.jpg"
    assert len(lsp.lsp_records(LSP_MAT, "/nowhere", "all")) == 2000
    with pytest.raises(ValueError, match="split"):
        lsp.lsp_records(LSP_MAT, "/nowhere", "val")


def test_flags_occluded_convention_and_zero_based(raw):
    records = lsp.lsp_records(LSP_MAT, "/nowhere", "all")
    flags = np.stack([r["flags"] for r in records])
    joints = np.stack([r["joints"] for r in records])
    raw_flags = raw[2].T  # (2000, 14)
    # LSP flag 1 = occluded -> 1, flag 0 = visible -> 2; every joint is annotated.
    np.testing.assert_array_equal(flags, np.where(raw_flags == 1, 1, 2))
    assert not (flags == 0).any()
    assert 0.05 < (flags == 1).mean() < 0.10  # occlusion is the minority (7.3 %)
    np.testing.assert_allclose(joints, raw[:2].transpose(2, 1, 0) - 1.0, atol=1e-4)
    assert records[0]["joints"].dtype == np.float32 and records[0]["flags"].dtype == np.int32


def test_box_from_joints(raw):
    r = lsp.lsp_records(LSP_MAT, "/nowhere", "test")[5]  # im1006
    pts = raw[:2, :, 1005].T - 1.0
    center, scale = geometry.center_scale_from_joints(pts, np.ones(14, bool))
    np.testing.assert_allclose(r["center"], center, rtol=1e-6)
    assert r["scale"] == pytest.approx(scale, rel=1e-6)
    # The padded square holds every joint.
    assert (np.abs(r["joints"] - r["center"]) <= r["scale"] / 2).all()
    assert r["center"].shape == (2,) and r["scale"].shape == ()


def test_read_lsp_matches_by_file_number(raw, tmp_path, caplog):
    # Files copied in scrambled order, one without a column (im2500), most columns
    # without an image: labels follow the number in the name.
    root = make_lsp_dir(tmp_path / "lsp", [7, 1, 1500, 2, 2500])
    with caplog.at_level(logging.WARNING):
        train = lsp.read_lsp(root, "train")
    assert [r["image_id"] for r in train] == ["im0001.jpg", "im0002.jpg", "im0007.jpg"]
    np.testing.assert_allclose(train[2]["joints"], raw[:2, :, 6].T - 1.0, atol=1e-4)
    assert Path(train[2]["path"]) == root / "images/im0007.jpg"
    assert Path(train[2]["path"]).read_bytes() == (LSPET_IMAGES / "im00001.jpg").read_bytes()
    assert "1996 of 2000 annotated images are missing" in caplog.text
    assert "im0003.jpg" in caplog.text and "im2500.jpg" in caplog.text
    test = lsp.read_lsp(root, "test")
    assert [r["image_id"] for r in test] == ["im1500.jpg"]


def test_missing_files_say_what_goes_where(tmp_path):
    with pytest.raises(DatasetFilesError) as e:
        lsp.read_lsp(tmp_path, "train")
    msg = str(e.value)
    assert str(tmp_path / "joints.mat") in msg and "im0001.jpg" in msg
    assert "sam.johnson.io/research/lsp.html" in msg
    # joints.mat and images/ present, but no LSP-named image inside.
    (tmp_path / "images").mkdir()
    shutil.copy(LSP_MAT, tmp_path / "joints.mat")
    (tmp_path / "images" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(DatasetFilesError, match="no images named im0001.jpg"):
        lsp.read_lsp(tmp_path, "train")
