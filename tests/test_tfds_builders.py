"""TFDS builders prepared from small manual dirs of real files, read back via datasets.load."""
import logging
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds

from mssh_keras.data import datasets, lsp, lspet, mpii
from mssh_keras.data.records import DatasetFilesError, image_header
from mssh_keras.data.tfds_builders import Lsp, Lspet, Mpii
from conftest import REAL_DATA

LSPET = REAL_DATA / "lspet_axelcarlier"
LSP_MAT = REAL_DATA / "lsp_original_annotations_mobilepose/joints.mat"
MPII_ANNOT = REAL_DATA / "mpii_annot_pose_hg_train/data/mpii/annot"
MMPOSE = REAL_DATA / "mmpose_testdata/tests/data/mpii"


def make_lspet_manual(root: Path, n: int = 20) -> Path:
    """``n`` real LSPET images + joints.mat trimmed to n columns; im00003 truncated."""
    (root / "images").mkdir(parents=True)
    joints = scipy.io.loadmat(LSPET / "joints.mat")["joints"][:, :, :n]
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    for k in range(1, n + 1):
        shutil.copy(LSPET / f"images/im{k:05d}.jpg", root / "images")
    data = (LSPET / "images/im00003.jpg").read_bytes()
    (root / "images/im00003.jpg").write_bytes(data[: len(data) // 2])
    return root


def make_lsp_manual(root: Path, numbers) -> Path:
    """Real LSP joints.mat + real LSPET JPEGs big enough to hold each LSP column's joints
    (LSP's own images are not available; the loader only needs a plausible image)."""
    (root / "images").mkdir(parents=True)
    shutil.copy(LSP_MAT, root / "joints.mat")
    joints = lsp.load_joints(LSP_MAT)
    sizes = {p: image_header(p)[:2] for p in sorted((LSPET / "images").glob("im0[0-3]*.jpg"))}
    big = sorted(sizes, key=lambda p: -min(sizes[p]))
    for n in numbers:
        need = joints[n - 1, :, :2].max(0)
        src = next(p for p in big if sizes[p][0] > need[0] and sizes[p][1] > need[1])
        big.remove(src)
        shutil.copy(src, root / "images" / f"im{n:04d}.jpg")
    return root


def as_numpy(ds: tf.data.Dataset) -> dict:
    return {e["image_id"].numpy().decode(): {k: v.numpy() for k, v in e.items()} for e in ds}


def test_builders_are_registered():
    from tensorflow_datasets.core import registered

    assert registered.imported_builder_cls("lsp") is Lsp
    assert registered.imported_builder_cls("lspet") is Lspet
    assert registered.imported_builder_cls("mpii") is Mpii
    assert datasets.DATASET_SKELETON == {"lsp": "lsp14", "lspet": "lsp14",
                                         "lsp+lspet": "lsp14", "mpii": "mpii16",
                                         "synthetic": "lsp14", "synthetic-mpii": "mpii16"}


def test_lspet_prepared_and_loaded(tmp_path, caplog):
    manual = make_lspet_manual(tmp_path / "manual" / "lspet")
    data_dir = str(tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        ds = datasets.load("lspet", "all", data_dir=data_dir,
                           manual_dir=str(tmp_path / "manual"))  # parent dir works too
    assert "im00003.jpg" in caplog.text and "truncated JPEG" in caplog.text
    examples = as_numpy(ds)
    assert len(examples) == 19 and "im00003.jpg" not in examples
    assert set(ds.element_spec) == set(datasets.CONTRACT_KEYS)
    e = examples["im00007.jpg"]
    assert e["image"].dtype == np.uint8 and e["image"].ndim == 3 and e["image"].shape[2] == 3
    bgr = cv2.imread(str(manual / "images/im00007.jpg"))
    assert e["image"].shape == bgr.shape
    assert np.abs(e["image"].astype(int) - bgr[..., ::-1]).mean() < 2  # RGB order
    reader = {r["image_id"]: r for r in lspet.read_lspet(manual, "all")}["im00007.jpg"]
    for key in ("joints", "flags", "center", "scale"):
        np.testing.assert_array_equal(e[key], reader[key])
    assert e["joints"].dtype == np.float32 and e["flags"].dtype == np.int32
    assert e["center"].shape == (2,) and e["scale"].shape == ()

    # Prepared once: later loads need no manual_dir, and splits are the fixed ones.
    shutil.rmtree(tmp_path / "manual")
    assert sorted(as_numpy(datasets.load("lspet", "val", data_dir=data_dir))) == [
        "im00010.jpg", "im00020.jpg"]
    assert len(as_numpy(datasets.load("lspet", "train", data_dir=data_dir))) == 17

    # The JPEG bytes are stored unchanged.
    raw = Lspet(data_dir=data_dir).as_dataset(
        split="val", decoders={"image": tfds.decode.SkipDecoding()})
    stored = {e["image_id"].numpy().decode(): e["image"].numpy() for e in raw}
    assert stored["im00010.jpg"] == (LSPET / "images/im00010.jpg").read_bytes()


def test_lsp_plus_lspet(tmp_path):
    make_lsp_manual(tmp_path / "manual/lsp", [1, 2, 1004])
    make_lspet_manual(tmp_path / "manual/lspet", n=5)
    kw = dict(data_dir=str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"))
    train = as_numpy(datasets.load("lsp+lspet", "train", **kw))
    assert sorted(train) == ["im00001.jpg", "im00002.jpg", "im00004.jpg", "im00005.jpg",
                             "im0001.jpg", "im0002.jpg"]
    test = as_numpy(datasets.load("lsp+lspet", "test", **kw))
    assert list(test) == ["im1004.jpg"]
    # LSP's occluded flag survives the round trip.
    expected = lsp.convert_flags(lsp.load_joints(LSP_MAT)[1003, :, 2])
    assert set(expected) == {1, 2}
    np.testing.assert_array_equal(test["im1004.jpg"]["flags"], expected)
    # 5 LSPET images hold no val image (im00010): that split is simply not built.
    with pytest.raises(ValueError, match="was not built"):
        datasets.load("lspet", "val", **kw)
    with pytest.raises(ValueError, match="unknown split"):
        datasets.load("lsp+lspet", "val", **kw)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load("coco", "train", **kw)


def test_mpii_from_h5(tmp_path):
    root = tmp_path / "manual"
    (root / "images").mkdir(parents=True)
    (root / "annot").mkdir()
    for name in ("005808361.jpg", "051423444.jpg", "004645041.jpg"):
        shutil.copy(MMPOSE / name, root / "images")
    with h5py.File(MPII_ANNOT / "valid.h5", "r") as f:
        for split, rows in (("train", [0, 2]), ("valid", [3])):
            with h5py.File(root / f"annot/{split}.h5", "w") as out:
                for key in f:
                    out[key] = f[key][rows]
    data_dir = str(tmp_path / "data")
    train = as_numpy(datasets.load("mpii", "train", data_dir=data_dir, manual_dir=str(root)))
    val = as_numpy(datasets.load("mpii", "val", data_dir=data_dir))
    assert sorted(train) == ["005808361.jpg", "051423444.jpg"]
    assert list(val) == ["004645041.jpg"]
    e = train["051423444.jpg"]
    assert e["joints"].shape == (16, 2)
    np.testing.assert_array_equal(e["flags"][[0, 10, 11, 12]], [0, 1, 1, 2])
    np.testing.assert_allclose(e["center"], [1029.0, 442.0885], atol=1e-3)
    ref = {r["image_id"]: r for r in mpii.read_mpii_h5(root / "annot/train.h5", "/")}
    np.testing.assert_array_equal(e["joints"], ref["051423444.jpg"]["joints"])


def test_missing_manual_files_are_explained(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "readme.txt").write_text("wrong folder")
    with pytest.raises(DatasetFilesError) as e:
        datasets.load("lspet", "all", data_dir=str(tmp_path / "data"), manual_dir=str(manual))
    assert "joints.mat" in str(e.value) and "lspet_dataset.zip" in str(e.value)
    # Nothing half-built is left behind: the next try starts cleanly.
    assert not list((tmp_path / "data").glob("lspet/1.0.0/*.tfrecord*"))
    with pytest.raises(DatasetFilesError) as e:  # no manual_dir at all
        datasets.load("mpii", "val", data_dir=str(tmp_path / "data"))
    assert "does not exist or is empty" in str(e.value) and "annot/valid.h5" in str(e.value)


def test_a_second_loader_waits_while_the_dataset_is_prepared(tmp_path):
    """Two trainings started at once on an unprepared dataset must not both build it, and
    the one that waited reads what the other built (it once saw no split at all)."""
    import threading

    from mssh_keras.data.tfds_builders import Lspet, is_prepared

    manual = make_lspet_manual(tmp_path / "manual", n=12)
    data_dir = str(tmp_path / "data")
    result = {}

    def load():
        try:
            result["n"] = len(as_numpy(datasets.load("lspet", "train", data_dir, str(manual))))
        except Exception as err:  # noqa: BLE001 - reported by the assert below
            result["error"] = repr(err)

    other = Lspet(data_dir=data_dir)
    with datasets._preparing(other):  # as if another process prepares
        loader = threading.Thread(target=load)
        loader.start()
        loader.join(timeout=3.0)
        assert loader.is_alive() and not is_prepared(Lspet(data_dir=data_dir))
        other.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual), try_download_gcs=False))
    loader.join(timeout=120)
    assert result == {"n": other.info.splits["train"].num_examples} and result["n"] > 0
