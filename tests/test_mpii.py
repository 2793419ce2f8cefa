"""MPII readers on the real valid.h5, mmpose's real MPII JSON and the official ground truth;
the official RELEASE .mat is not available here, so a small one with the same struct
layout is written with scipy.io.savemat."""
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mssh_keras.data import mpii
from mssh_keras.data.records import DatasetFilesError
from conftest import REAL_DATA

ANNOT = REAL_DATA / "mpii_annot_pose_hg_train/data/mpii/annot"
VALID_H5 = ANNOT / "valid.h5"
MMPOSE = REAL_DATA / "mmpose_testdata/tests/data/mpii"
JSON = MMPOSE / "test_mpii.json"
GT_MAT = REAL_DATA / "mpii_eval_pytorch_pose/evaluation/data/detections_our_format.mat"
SHARED = ("005808361.jpg", "051423444.jpg", "004645041.jpg")


@pytest.fixture(scope="module")
def valid():
    return mpii.read_mpii_h5(VALID_H5, "/imgs")


@pytest.fixture(scope="module")
def h5_raw():
    import h5py

    with h5py.File(VALID_H5, "r") as f:
        return {k: f[k][:] for k in ("imgname", "center", "scale", "part", "visible")}


def test_valid_h5_is_the_2958_people_split(valid):
    assert len(valid) == mpii.NUM_VAL_PEOPLE == 2958
    names = (ANNOT / "valid_images.txt").read_text().split()
    assert [r["image_id"] for r in valid] == names
    assert len(set(names)) == 2729
    assert valid[0]["path"] == os.path.join("/imgs", "005808361.jpg")
    assert valid[0]["joints"].shape == (16, 2) and valid[0]["flags"].dtype == np.int32


def test_h5_flags_and_zero_based(valid, h5_raw):
    flags = np.stack([r["flags"] for r in valid])
    joints = np.stack([r["joints"] for r in valid])
    missing = (h5_raw["part"] == 0).all(-1)
    occluded = ~missing & (h5_raw["visible"] == 0)
    np.testing.assert_array_equal(flags == 0, missing)
    np.testing.assert_array_equal(flags == 1, occluded)
    assert missing.sum() == 3088 and occluded.sum() == 10243
    assert (joints[missing] == 0).all()
    np.testing.assert_allclose(joints[~missing], h5_raw["part"][~missing] - 1.0)
    # 051423444.jpg: right wrist/elbow annotated but not visible; ankles missing.
    np.testing.assert_array_equal(valid[2]["flags"][[0, 5, 10, 11, 12]], [0, 0, 1, 1, 2])


def test_h5_center_scale(valid, h5_raw):
    # Already hourglass-adjusted in the file: only 1-based -> 0-based and 200 * scale.
    np.testing.assert_allclose(valid[0]["center"], [965.0, 409.7773], atol=1e-3)
    assert valid[0]["scale"] == pytest.approx(200 * 5.898109866728492, rel=1e-6)
    centers = np.stack([r["center"] for r in valid])
    np.testing.assert_allclose(centers, h5_raw["center"] - 1.0, rtol=1e-6)


def test_json_agrees_with_h5_for_the_same_people(valid):
    by_name = {r["image_id"]: r for r in valid}
    from_json = mpii.read_mpii_json(JSON, "/imgs")
    assert [r["image_id"] for r in from_json] == list(SHARED)
    for r in from_json:
        h = by_name[r["image_id"]]
        np.testing.assert_array_equal(r["flags"] > 0, h["flags"] > 0)
        both = r["flags"] > 0
        # valid.h5 stores whole pixels, the JSON keeps the fractions: < 1 px apart.
        assert np.abs(r["joints"][both] - h["joints"][both]).max() < 1.0
        # The raw JSON box + hourglass adjustment == the h5's adjusted box.
        np.testing.assert_allclose(r["center"], h["center"], atol=1e-3)
        assert r["scale"] == pytest.approx(h["scale"], rel=1e-5)
    # The JSON has no visibility, only "labelled": labelled joints count as visible.
    assert set(np.unique(from_json[1]["flags"])) == {0, 2}
    assert (from_json[1]["joints"][from_json[1]["flags"] == 0] == 0).all()


def test_json_is_one_based_like_the_official_ground_truth():
    # detections_our_format.mat holds MPII's own (MATLAB, 1-based) validation ground truth
    # for the valid.h5 people in order; the JSON's joints equal it exactly, so the JSON is
    # 1-based too and needs the same "minus 1".
    gt = scipy.io.loadmat(GT_MAT)["pos_gt_src"]  # 16 x 2 x 2958
    for k, r in enumerate(mpii.read_mpii_json(JSON, "/imgs")):
        index = (0, 2, 3)[k]  # these images' rows in valid.h5 / the .mat
        m = r["flags"] > 0
        np.testing.assert_allclose(r["joints"][m], gt[:, :, index][m] - 1.0, atol=1e-4)


def test_hourglass_box():
    center, side = mpii.hourglass_box((966.0, 340.0), 4.718488)
    np.testing.assert_allclose(center, [965.0, 339.0 + 15 * 4.718488], rtol=1e-6)
    assert side == pytest.approx(200 * 1.25 * 4.718488)


# ------------------------------------------------------------------ synthetic RELEASE

def _struct_array(rows: list[dict]) -> np.ndarray:
    """A 1 x n MATLAB struct array (what MPII's annolist/annorect/point are)."""
    fields = sorted({k for r in rows for k in r})
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, r in enumerate(rows):
        for f in fields:
            arr[0, i][f] = r.get(f, np.zeros((0, 0)))
    return arr


def write_release(path: Path) -> None:
    """Three images in the official layout: two training images, one test image."""
    p1 = _struct_array([  # person 1 of image 1: 5 points, visibility in all its spellings
        {"x": 101.0, "y": 201.0, "id": 0, "is_visible": 1},
        {"x": 111.0, "y": 151.0, "id": 1, "is_visible": "0"},
        {"x": 121.0, "y": 101.0, "id": 9, "is_visible": np.zeros((0, 0))},
        {"x": 131.0, "y": 121.0, "id": 12, "is_visible": "1"},
        {"x": 141.0, "y": 131.0, "id": 13, "is_visible": 0},
    ])
    rects1 = _struct_array([
        {"x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0, "scale": 2.0,
         "objpos": {"x": 120.0, "y": 150.0}, "annopoints": {"point": p1}},
        # only a head box and position: not a pose annotation
        {"x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0, "scale": 1.0,
         "objpos": {"x": 50.0, "y": 50.0}},
    ])
    # Image 2: one person with a single point (MATLAB stores a 1x1 struct).
    rects2 = {"scale": 1.5, "objpos": {"x": 30.0, "y": 40.0},
              "annopoints": {"point": {"x": 31.0, "y": 41.0, "id": 6, "is_visible": 1}}}
    annolist = _struct_array([
        {"image": {"name": "000000001.jpg"}, "annorect": rects1},
        {"image": {"name": "000000002.jpg"}, "annorect": rects2},
        {"image": {"name": "000000003.jpg"},  # test image: no joints released
         "annorect": {"scale": 1.0, "objpos": {"x": 5.0, "y": 5.0}}},
    ])
    release = {"annolist": annolist, "img_train": np.array([[1, 1, 0]]),
               "single_person": np.array([[1], [1], [1]], dtype=object),
               "act": np.zeros((0, 0)), "video_list": np.zeros((0, 0))}
    scipy.io.savemat(path, {"RELEASE": release})


def test_release_mat(tmp_path):
    mat = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    write_release(mat)
    records = mpii.read_mpii_mat(mat, tmp_path / "images", "all")
    assert [r["image_id"] for r in records] == ["000000001.jpg", "000000002.jpg"]
    r = records[0]
    expected_flags = np.zeros(16, int)
    expected_flags[[0, 9, 12]] = 2  # visible, empty is_visible, "1"
    expected_flags[[1, 13]] = 1  # "0" and 0: annotated but occluded
    np.testing.assert_array_equal(r["flags"], expected_flags)
    np.testing.assert_allclose(r["joints"][[0, 1, 9, 12, 13]],
                               [[100, 200], [110, 150], [120, 100], [130, 120], [140, 130]])
    assert (r["joints"][r["flags"] == 0] == 0).all()
    np.testing.assert_allclose(r["center"], [119.0, 149.0 + 30.0])
    assert r["scale"] == pytest.approx(500.0)
    assert r["path"] == str(tmp_path / "images" / "000000001.jpg")
    single = records[1]
    assert single["flags"].sum() == 2 and single["flags"][6] == 2
    np.testing.assert_allclose(single["joints"][6], [30.0, 40.0])

    val = mpii.read_mpii_mat(mat, "/i", "val", val_images=["000000002.jpg"])
    train = mpii.read_mpii_mat(mat, "/i", "train", val_images=["000000002.jpg"])
    assert [r["image_id"] for r in val] == ["000000002.jpg"]
    assert [r["image_id"] for r in train] == ["000000001.jpg"]
    with pytest.raises(ValueError, match="valid_images.txt"):
        mpii.read_mpii_mat(mat, "/i", "train")
    scipy.io.savemat(tmp_path / "other.mat", {"x": np.ones(2)})
    with pytest.raises(ValueError, match="RELEASE"):
        mpii.read_mpii_mat(tmp_path / "other.mat", "/i")


# ------------------------------------------------------------------ directory level

def test_read_mpii_directory(tmp_path, caplog):
    root = tmp_path / "mpii"
    (root / "images").mkdir(parents=True)
    (root / "annot").mkdir()
    for name in SHARED:
        shutil.copy(MMPOSE / name, root / "images")
    os.symlink(VALID_H5, root / "annot/valid.h5")
    with caplog.at_level(logging.WARNING):
        val = mpii.read_mpii(root, "val")
    assert sorted(r["image_id"] for r in val) == sorted(SHARED)  # one person each
    assert "2726 annotated images are missing" in caplog.text
    with pytest.raises(DatasetFilesError) as e:
        mpii.read_mpii(root, "train")
    assert "annot/train.h5" in str(e.value) and "mpii_human_pose_v1_u12_1.mat" in str(e.value)
    # JSON source, under mmpose's file name.
    (root / "annot/valid.h5").unlink()
    (root / "annotations").mkdir()
    shutil.copy(JSON, root / "annotations/mpii_val.json")
    assert [r["image_id"] for r in mpii.read_mpii(root, "val")] == list(SHARED)
    # The .mat source needs the validation list next to it.
    write_release(root / "mpii_human_pose_v1_u12_1.mat")
    with pytest.raises(DatasetFilesError, match="valid_images.txt"):
        mpii.read_mpii(root, "train")


def test_missing_images_dir(tmp_path):
    with pytest.raises(DatasetFilesError) as e:
        mpii.read_mpii(tmp_path, "val")
    assert str(tmp_path / "images") in str(e.value)
    assert "mpii_human_pose_v1.tar.gz" in str(e.value)


def test_h5_head_sizes_are_the_official_pckh_normaliser(valid):
    """valid.h5's head size must equal 0.6 x the official head-box diagonal, person by person."""
    from mssh_keras.metrics import head_sizes_from_boxes

    gt = scipy.io.loadmat(GT_MAT)
    official = head_sizes_from_boxes(gt["headboxes_src"].transpose(2, 0, 1))
    ours = np.array([r["head_size"] for r in valid])
    assert ours.shape == official.shape
    np.testing.assert_allclose(ours, official, rtol=1e-4)
