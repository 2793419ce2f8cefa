"""LSPET reader on the real (trimmed, 7,000-column) joints.mat and the real images."""
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mssh_keras import geometry
from mssh_keras.data import lspet
from mssh_keras.data.records import DatasetFilesError
from conftest import REAL_DATA

LSPET = REAL_DATA / "lspet_axelcarlier"


@pytest.fixture(scope="module")
def raw():
    """The file's own array: 14 x 3 x N (joint, [x, y, flag], image)."""
    return scipy.io.loadmat(LSPET / "joints.mat")["joints"]


@pytest.fixture(scope="module")
def all_records():
    return lspet.read_lspet(LSPET, "all")


def test_real_copy_reads_completely(raw, all_records, caplog):
    assert raw.shape == (14, 3, 7000)  # the N comes from the file, not from a constant
    assert len(all_records) == 7000
    assert all_records[0]["image_id"] == "im00001.jpg"
    assert all_records[-1]["image_id"] == "im07000.jpg"
    assert all(Path(r["path"]).name == r["image_id"] for r in all_records)
    with caplog.at_level(logging.WARNING):
        lspet.read_lspet(LSPET, "val")
    assert caplog.text == ""  # every column has its image and vice versa


def test_split_every_tenth_image_is_val():
    val = lspet.lspet_records(LSPET / "joints.mat", LSPET / "images", "val")
    train = lspet.lspet_records(LSPET / "joints.mat", LSPET / "images", "train")
    assert len(val) == 700 and len(train) == 6300
    assert val[0]["image_id"] == "im00010.jpg" and val[-1]["image_id"] == "im07000.jpg"
    assert not {r["image_id"] for r in val} & {r["image_id"] for r in train}
    with pytest.raises(ValueError, match="split"):
        lspet.lspet_records(LSPET / "joints.mat", LSPET / "images", "test")


def test_flags_mask_unannotated_joints(raw, all_records):
    flags = np.stack([r["flags"] for r in all_records])
    joints = np.stack([r["joints"] for r in all_records])
    raw_flags = raw[:, 2].T
    # LSPET flag 1 = visible -> 2, flag 0 = not annotated -> 0 (no occluded class).
    np.testing.assert_array_equal(flags, np.where(raw_flags == 1, 2, 0))
    assert 0.8 < (flags == 2).mean() < 0.95
    # Annotated joints: MATLAB 1-based -> 0-based; unannotated: placeholders zeroed.
    expected = raw[:, :2].transpose(2, 0, 1) - 1.0
    np.testing.assert_allclose(joints[flags > 0], expected[flags > 0], atol=1e-4)
    assert (joints[flags == 0] == 0).all()
    # im00001's right ankle is the documented garbage (0, -26.1): masked, not clipped.
    assert raw[0, :, 0] == pytest.approx([0.0, -26.109, 0.0], abs=1e-3)
    assert all_records[0]["flags"][0] == 0


def test_box_ignores_unannotated_joints(raw, all_records):
    r = all_records[0]
    valid = raw[:, 2, 0] > 0
    assert not valid.all()
    center, scale = geometry.center_scale_from_joints(raw[:, :2, 0] - 1.0, valid)
    np.testing.assert_allclose(r["center"], center, rtol=1e-6)
    assert r["scale"] == pytest.approx(scale, rel=1e-6)
    # Including the placeholder coordinates would have given another box.
    _, unmasked = geometry.center_scale_from_joints(raw[:, :2, 0] - 1.0, np.ones(14, bool))
    assert unmasked > r["scale"] * 1.1


def test_column_file_mapping_partial_and_unordered(raw, tmp_path, caplog):
    root = tmp_path / "lspet"
    (root / "images").mkdir(parents=True)
    scipy.io.savemat(root / "joints.mat", {"joints": raw[:, :, :15]})  # 15 columns
    for n in (13, 20, 5):  # scrambled; im00020 has no column
        shutil.copy(LSPET / f"images/im{n:05d}.jpg", root / "images")
    with caplog.at_level(logging.WARNING):
        records = lspet.read_lspet(root, "all")
    assert [r["image_id"] for r in records] == ["im00005.jpg", "im00013.jpg"]
    np.testing.assert_allclose(records[1]["joints"][records[1]["flags"] > 0],
                               (raw[:, :2, 12] - 1.0)[raw[:, 2, 12] > 0], atol=1e-4)
    assert Path(records[1]["path"]).read_bytes() == (LSPET / "images/im00013.jpg").read_bytes()
    assert "13 of 15 annotated images are missing" in caplog.text
    assert "im00001.jpg" in caplog.text
    assert "1 images in" in caplog.text and "im00020.jpg" in caplog.text


def test_missing_files_say_what_goes_where(tmp_path):
    with pytest.raises(DatasetFilesError) as e:
        lspet.read_lspet(tmp_path / "nowhere", "all")
    msg = str(e.value)
    assert "joints.mat" in msg and "images/im00001.jpg" in msg
    assert "sam.johnson.io/research/lspet.html" in msg
