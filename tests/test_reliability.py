"""Issue #15, "nothing lost, nothing cryptic": each failure a careless or unlucky user hits
gives one clear line naming the file or flag, and loses nothing already saved.

Damaged files are made on the fly. The read-only folder is made with permissions; when the
tests run as root (which permission bits do not stop) a folder the kernel refuses to write
(sysfs) stands in for it. Everything here is cheap: no training step is traced.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mssh_keras import SHIPPED_MODEL_DIR
from mssh_keras.paths import OutputDirError, portable_path, writable_dir
from mssh_keras.runtime import ModelLoadError, PoseEstimator
from conftest import REAL_DATA, TINY

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TFLITE = SHIPPED_MODEL_DIR / "model.tflite"
LSPET = REAL_DATA / "lspet_axelcarlier"
needs_shipped = pytest.mark.skipif(not SHIPPED_TFLITE.is_file(), reason="no shipped model")
needs_lspet = pytest.mark.skipif(not (LSPET / "joints.mat").is_file(), reason="no LSPET files")


def _cli(name: str):
    """The command-line module ``name`` (export.py, train.py, evaluate.py at the root)."""
    sys.path.insert(0, str(ROOT))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def read_only_dir(tmp_path: Path) -> Path:
    """A folder this process cannot write: permissions, or for root (whom permission bits
    do not stop) an existing sysfs folder, where the kernel refuses new files."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return folder
    probe.unlink()  # root: the permission bits did not stop the write
    for candidate in (Path("/sys/kernel"), Path("/sys/fs"), Path("/proc/self")):
        try:
            (candidate / "mssh_probe").write_text("x")
        except OSError:
            if candidate.is_dir():
                return candidate
    pytest.skip("no folder this process cannot write (root without a read-only sysfs)")


@pytest.fixture
def bad_destinations(tmp_path):
    """{case: path}: a file, a folder under a file, a read-only folder (and one under it)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("precious\n")
    ro = read_only_dir(tmp_path)
    return {"is a file": a_file, "under a file": a_file / "run",
            "read-only": ro, "under read-only": ro / "run"}


def test_writable_dir_names_the_folder_and_the_flag(bad_destinations, tmp_path):
    for case, path in bad_destinations.items():
        with pytest.raises(OutputDirError) as err:
            writable_dir(path, "output folder", "--output-dir")
        assert str(path) in str(err.value) and "--output-dir" in str(err.value), case
    assert (tmp_path / "a_file").read_text() == "precious\n"  # nothing lost
    assert writable_dir(tmp_path / "new" / "run").is_dir()


# ------------------------------------------------------------------ 1. export destination
def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def test_export_without_arguments_never_writes_into_the_shipped_model(tmp_path, monkeypatch,
                                                                     capsys):
    """`python export.py` (the README's usage) went to models/hg-lite-lspet/ and replaced
    the shipped TFLite file and its calibrated metadata."""
    cli = _cli("export")
    from mssh_keras import export as ex

    calls = []
    monkeypatch.setattr(cli, "EXPORTS_DIR", tmp_path / "exports")
    monkeypatch.setattr(ex, "load_network", lambda path, meta=None: "network")
    monkeypatch.setattr(ex, "export", lambda network, formats, out, **kw: calls.append(out)
                        or [])
    before = _snapshot(SHIPPED_MODEL_DIR)
    assert cli.main([]) == 0
    assert calls == [tmp_path / "exports" / SHIPPED_MODEL_DIR.name]
    # Explicitly into models/: refused, before loading or converting anything.
    for target in (SHIPPED_MODEL_DIR, SHIPPED_MODEL_DIR.parent / "other"):
        assert cli.main(["--output-dir", str(target)]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert str(target) in line and "scripts/ship_model.py" in line
    assert len(calls) == 1 and _snapshot(SHIPPED_MODEL_DIR) == before
    assert not (SHIPPED_MODEL_DIR.parent / "other").exists()
    assert "/exports/" in (ROOT / ".gitignore").read_text().split()


# ------------------------------------------------------------------ 2. demo and SIGTERM
@needs_shipped
def test_demo_killed_with_sigterm_finishes_its_video_and_json(tmp_path):
    """What `timeout` or a service manager sends: the run stops like Ctrl-C, the .mp4 is
    finalised (readable) and the JSON written for the frames done."""
    rng = np.random.default_rng(0)
    frames = [np.full((120, 160, 3), 90, np.uint8) for _ in range(600)]
    for i, f in enumerate(frames):
        cv2.circle(f, (20 + i % 120, 60), 12, tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for f in frames:
        writer.write(f)
    writer.release()
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "demo", "--headless", "--source", str(video),
                             "--output", str(out), "--threads", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out.is_file() and out.stat().st_size > 0) and proc.poll() is None:
            assert time.time() < deadline, "the demo wrote no frame in 120 s"
            time.sleep(0.1)
        time.sleep(1.0)  # a few more frames
        assert proc.poll() is None, "the clip ended before SIGTERM: make it longer"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    doc = json.loads(out.with_suffix(".json").read_text())
    n = doc["stats"]["frames"]
    assert 0 < n < len(frames) and len(doc["frames"]) == n
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened()
    read = 0
    while cap.read()[0]:
        read += 1
    cap.release()
    assert read == n
    # 14. the JSON names the model relative to the repository.
    assert doc["model"] == "models/hg-lite-lspet/model.tflite"


# ------------------------------------------------------------------ 3. atomic final.keras
def test_a_failed_model_save_keeps_the_previous_file(tmp_path):
    from mssh_keras.callbacks import save_model_atomic

    final = tmp_path / "final.keras"
    final.write_bytes(b"the previous model")

    class DiskFull:
        def save(self, path):
            Path(path).write_bytes(b"half a model")
            raise OSError("No space left on device")

    with pytest.raises(OSError):
        save_model_atomic(DiskFull(), final)
    assert final.read_bytes() == b"the previous model"


# ------------------------------------------------------------------ 4. damaged JPEG data
def damage_scan(jpeg: bytes, at: int = 40) -> bytes:
    """A stray DHT marker inside the scan data: header and end marker intact, OpenCV still
    decodes the image, TensorFlow's decoder fails ("jpeg::Uncompress failed")."""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    out = bytearray(jpeg)
    out[start + at:start + at + 2] = b"\xff\xc4"
    return bytes(out)


def test_damaged_jpeg_data_is_caught_with_tensorflows_decoder(tmp_path):
    from mssh_keras.data.records import check_record, image_header, make_record

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur((rng.random((64, 80, 3)) * 255).astype(np.uint8), (5, 5), 0)
    good = cv2.imencode(".jpg", image)[1].tobytes()
    (tmp_path / "ok.jpg").write_bytes(good)
    (tmp_path / "bad.jpg").write_bytes(damage_scan(good))
    assert image_header(tmp_path / "bad.jpg") == (80, 64, "jpeg")   # the cheap check passes
    assert cv2.imread(str(tmp_path / "bad.jpg")) is not None        # OpenCV tolerates it

    def rec(name):
        return make_record(tmp_path / name, np.full((14, 2), 30.0), np.full(14, 2), name)

    assert check_record(rec("ok.jpg"), decode=True) is None
    reason = check_record(rec("bad.jpg"), decode=True)
    assert reason.startswith("unreadable image: image does not decode with TensorFlow"), \
        reason
    assert "Uncompress" in reason and "{{" not in reason


# ------------------------------------------------------------------ 4+5. prepared datasets
@needs_lspet
def test_prepared_dataset_skips_damaged_images_and_refuses_a_changed_manual_dir(tmp_path,
                                                                               caplog):
    import logging

    from test_tfds_builders import as_numpy, make_lspet_manual

    from mssh_keras.data import datasets
    from mssh_keras.data.records import DatasetFilesError
    from mssh_keras.data.tfds_builders import SOURCE_RECORD, Lspet

    manual = make_lspet_manual(tmp_path / "a" / "lspet", n=12)  # im00003 truncated
    bad = manual / "images/im00005.jpg"
    bad.write_bytes(damage_scan(bad.read_bytes(), at=200))
    data_dir = str(tmp_path / "tfds")
    with caplog.at_level(logging.WARNING):
        examples = as_numpy(datasets.load("lspet", "all", data_dir, str(manual)))
    assert "im00005.jpg" in caplog.text and "does not decode with TensorFlow" in caplog.text
    assert len(examples) == 10 and "im00005.jpg" not in examples
    prepared = Path(Lspet(data_dir=data_dir).data_dir)
    record = json.loads((prepared / SOURCE_RECORD).read_text())
    assert record["files"] == 13 and record["index"]["images/im00007.jpg"][0] > 0
    assert not record["manual_dir"].startswith("/")

    # The same files at another path: the prepared copy is still theirs.
    same = shutil.copytree(manual, tmp_path / "b" / "lspet")
    assert len(as_numpy(datasets.load("lspet", "all", data_dir, str(same)))) == 10
    # Fixed / changed files: refused, naming what changed and what to do.
    fixed = shutil.copytree(manual, tmp_path / "c" / "lspet")
    shutil.copy(LSPET / "images/im00005.jpg", fixed / "images/im00005.jpg")  # repaired:
    assert (fixed / "images/im00005.jpg").stat().st_size == bad.stat().st_size  # same size
    shutil.copy(LSPET / "images/im00013.jpg", fixed / "images")              # completed
    with pytest.raises(DatasetFilesError) as err:
        datasets.load("lspet", "all", data_dir, str(fixed))
    msg = str(err.value)
    assert "differs" in msg and "im00005.jpg" in msg and "im00013.jpg" in msg
    assert str(prepared) in msg and "Delete" in msg
    # A prepared copy from before source records: checked (decoded) once, then recorded.
    (prepared / SOURCE_RECORD).unlink()
    assert len(as_numpy(datasets.load("lspet", "val", data_dir, str(manual)))) == 1
    assert (prepared / SOURCE_RECORD).is_file()
    # Without --manual-dir the prepared copy is used as it is.
    assert len(as_numpy(datasets.load("lspet", "train", data_dir))) == 9


# ------------------------------------------------------------------ 6. train.py failures
def test_train_py_output_dir_problems_are_one_line(bad_destinations, tmp_path, capsys):
    train_cli = _cli("train")
    for case, path in bad_destinations.items():
        rc = train_cli.main(["--output-dir", str(path), "--epochs", "1",
                             "--steps-per-epoch", "1", "--synthetic-train", "4"])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2 and str(path) in line and "--output-dir" in line, (case, line)
    assert (tmp_path / "a_file").read_text() == "precious\n"


def test_train_py_corrupt_latest_json_names_the_file(tmp_path, capsys):
    train_cli = _cli("train")
    ckpt = tmp_path / "run" / "ckpt"
    (ckpt / "epoch_0002").mkdir(parents=True)
    (ckpt / "latest.json").write_text('{"epoch": 2, "fold')  # cut off
    for extra in ([], ["--resume"]):
        rc = train_cli.main(["--output-dir", str(tmp_path / "run"), "--epochs", "3",
                             "--steps-per-epoch", "1", "--synthetic-train", "4", *extra])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2 and str(ckpt / "latest.json") in line and "epoch_0002" in line, line
    assert (ckpt / "latest.json").read_text() == '{"epoch": 2, "fold'  # untouched


def test_truncated_checkpoint_files_on_resume_name_the_file(tmp_path):
    from mssh_keras.callbacks import Checkpointer, CheckpointError, optimizer_state
    from mssh_keras.config import ModelConfig, TrainConfig
    from mssh_keras.model import build_network
    from mssh_keras.trainer import PoseTrainer, make_optimizer

    tiny = ModelConfig(**TINY)

    def trainer():
        net = build_network(tiny)
        t = PoseTrainer(net)
        t.compile(optimizer=make_optimizer(TrainConfig(learning_rate=1e-3, epochs=1), 2))
        return t, net

    t, net = trainer()
    folder = tmp_path / "ckpt" / "epoch_0001"
    folder.mkdir(parents=True)
    net.save_weights(folder / "network.weights.h5")
    t.optimizer.build(net.trainable_variables)
    np.savez(folder / "optimizer.npz", *[np.asarray(v) for v in optimizer_state(t.optimizer)])
    (tmp_path / "ckpt" / "latest.json").write_text(json.dumps(
        {"epoch": 1, "folder": "epoch_0001", "best": 1.0, "logs": {}}))
    assert Checkpointer.restore(tmp_path, *trainer())["epoch"] == 1  # the intact checkpoint

    for name in ("optimizer.npz", "network.weights.h5"):
        f = folder / name
        data = f.read_bytes()
        f.write_bytes(data[:len(data) // 2])
        with pytest.raises(CheckpointError) as err:
            Checkpointer.restore(tmp_path, *trainer())
        msg = str(err.value)
        assert str(f) in msg and "damaged" in msg and "--output-dir" in msg, msg
        assert "\n" not in msg and f.stat().st_size == len(data) // 2
        f.write_bytes(data)
    (tmp_path / "ckpt" / "latest.json").write_text('{"epoch": 1, "folder": "epoch_0009", '
                                                   '"best": 1.0}')
    with pytest.raises(CheckpointError, match="epoch_0009, which is missing"):
        Checkpointer.latest(tmp_path)


# ------------------------------------------------------------------ 10. numeric flags
@pytest.mark.parametrize("flag,value", [
    ("--epochs", "0"), ("--epochs", "-2"), ("--batch-size", "0"), ("--steps-per-epoch", "-1"),
    ("--lr", "0"), ("--sigma", "-1"), ("--val-examples", "0"), ("--synthetic-train", "0"),
    ("--input-size", "0"), ("--warmup-steps", "-1"), ("--weight-decay", "-0.1"),
    ("--rotation", "-5"), ("--rotation-prob", "1.5"), ("--lr-drops", "10,-1"),
    ("--threads", "0")])
def test_train_py_rejects_out_of_range_numbers_at_parse_time(flag, value, capsys):
    train_cli = _cli("train")
    with pytest.raises(SystemExit) as exit_:
        train_cli.parse_args([flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and value in err and "Traceback" not in err


def test_train_py_accepts_the_edges_of_each_range():
    args = _cli("train").parse_args(["--warmup-steps", "0", "--weight-decay", "0",
                                     "--rotation-prob", "1", "--rotation", "0",
                                     "--lr-drops", "5,8"])
    assert (args.warmup_steps, args.rotation_prob, args.lr_drops) == (0, 1.0, (5, 8))


@pytest.mark.parametrize("module,flag,value", [
    ("export", "--batch-size", "0"), ("export", "--verify-samples", "0"),
    ("export", "--stack", "0"), ("export", "--threads", "-1"),
    ("evaluate", "--limit", "0"), ("evaluate", "--batch-size", "0")])
def test_export_and_evaluate_reject_out_of_range_numbers(module, flag, value, capsys):
    cli = _cli(module)
    with pytest.raises(SystemExit):
        cli.parse_args([flag, value]) if module == "export" else cli.main([flag, value])
    assert f"argument {flag}" in capsys.readouterr().err


# ------------------------------------------------------------------ 7. evaluate.py
def test_evaluate_py_reports_model_problems_in_one_line(tmp_path, capsys):
    evaluate = _cli("evaluate")
    text = tmp_path / "notes.keras"
    text.write_text("these are my notes, not a model\n")
    cases = {tmp_path / "missing.tflite": "does not exist",
             text: "is not a Keras model",
             tmp_path / "zero.tflite": "cannot load model"}
    (tmp_path / "zero.tflite").write_bytes(b"")
    for model, expected in cases.items():
        rc = evaluate.main(["--model", str(model), "--dataset", "synthetic",
                            "--output-dir", str(tmp_path / "eval")])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2 and str(model) in line and expected in line, line


def test_evaluate_py_checks_its_output_folder_first(bad_destinations, capsys):
    evaluate = _cli("evaluate")
    rc = evaluate.main(["--model", "no-such-model.tflite",
                        "--output-dir", str(bad_destinations["is a file"])])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--output-dir" in line  # before the (missing) model is even opened


# ------------------------------------------------------------------ 8. export.py inputs
def test_export_py_checks_the_destination_before_converting(bad_destinations, tmp_path,
                                                            monkeypatch, capsys):
    cli = _cli("export")
    from mssh_keras import export as ex

    def no_loading(*a, **k):
        raise AssertionError("the model was loaded before the destination was checked")

    monkeypatch.setattr(ex, "load_network", no_loading)
    monkeypatch.setattr(ex, "export", no_loading)
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK")
    for case, path in bad_destinations.items():
        rc = cli.main(["--model", str(model), "--output-dir", str(path)])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2 and str(path) in line and "--output-dir" in line, (case, line)


def test_export_py_says_what_a_text_file_named_keras_is(tmp_path, capsys):
    cli = _cli("export")
    text = tmp_path / "model.keras"
    text.write_text("not a model\n")
    rc = cli.main(["--model", str(text), "--output-dir", str(tmp_path / "out")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(text) in line and "zip archive" in line and "text file" in line
    assert "File not found" not in line


# ------------------------------------------------------------------ 9. PoseEstimator files
@needs_shipped
def test_damaged_model_files_raise_model_load_error_naming_the_file(tmp_path):
    data = SHIPPED_TFLITE.read_bytes()
    sidecar = SHIPPED_TFLITE.with_name("model.tflite.json").read_text()
    files = {"zero.tflite": b"", "half.tflite": data[:len(data) // 2],
             "text.onnx": b"ir_version: 7\ngraph { name: 'not really' }\n"}
    for name, content in files.items():
        for with_sidecar in (False, True):
            path = tmp_path / ("s_" if with_sidecar else "") / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(content)
            if with_sidecar:
                path.with_name(name + ".json").write_text(sidecar)
            with pytest.raises(ModelLoadError) as err:
                PoseEstimator(path)
            assert str(path) in str(err.value) and "damaged" in str(err.value), err.value
    (tmp_path / "m.tflite").write_bytes(data)
    (tmp_path / "m.tflite.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"m\.tflite\.json lacks input_size.*skeleton"):
        PoseEstimator(tmp_path / "m.tflite")
    (tmp_path / "m.tflite.json").write_text('{"input_size": 128, "heatmap_size": 32, '
                                            '"stride": 4, "skeleton": {"name": "lsp14"}}')
    with pytest.raises(ModelLoadError, match="skeleton.joints"):
        PoseEstimator(tmp_path / "m.tflite")


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED_TFLITE.is_file():
        pytest.skip("no shipped model")
    return PoseEstimator(SHIPPED_TFLITE, num_threads=1)


def _person(size=(120, 96)) -> np.ndarray:
    rng = np.random.default_rng(3)
    return cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (7, 7), 0)


def test_empty_images_raise_a_clear_value_error(shipped):
    for shape in ((0, 0, 3), (0, 40, 3), (40, 0), (0, 0)):
        with pytest.raises(ValueError, match="image is empty"):
            shipped.predict(np.zeros(shape, np.uint8))


# ------------------------------------------------------------------ 11. degenerate boxes
def test_box_rule(shipped):
    from mssh_keras.geometry import check_box

    img = _person()
    h, w = img.shape[:2]
    for box, match in [((60, 10, 20, 90), "reversed or empty"),
                       ((20, 10, 20, 90), "reversed or empty"),
                       ((10, 10, 50, 10), "reversed or empty"),
                       ((np.nan, 0, 5, 5), "4 finite numbers"),
                       ((0, 0, np.inf, 5), "4 finite numbers"),
                       ((0, 0, 5), "4 finite numbers"),
                       ((1e30, 1e30, 2e30, 2e30), "wholly outside"),
                       ((w + 5, 0, w + 50, h), "wholly outside"),
                       ((-50, -50, -1, -1), "wholly outside")]:
        with pytest.raises(ValueError, match=match):
            shipped.predict(img, box)
    # Past the edges by up to the image's longer side: kept; beyond: clipped.
    assert check_box((-20, -10, w + 20, h + 5), (w, h)) == (-20, -10, w + 20, h + 5)
    assert check_box((-1e30, -1e30, 1e30, 1e30), (w, h)) == (-h, -h, w + h, h + h)
    huge = shipped.predict(img, (-1e30, -1e30, 1e30, 1e30))
    bounded = shipped.predict(img, (-h, -h, w + h, 2 * h))
    np.testing.assert_allclose(huge.keypoints, bounded.keypoints)
    assert np.abs(huge.keypoints).max() < 3 * max(h, w)


# ------------------------------------------------------------------ 12. image conversions
def test_common_image_types_are_converted_to_uint8_rgb(shipped):
    from mssh_keras.runtime import as_rgb_uint8

    rgb = _person()
    gray = rgb[:, :, 1]
    gray_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    box = (10, 10, 80, 110)
    ref = shipped.predict(rgb, box).keypoints
    ref_gray = shipped.predict(gray_rgb, box).keypoints
    same_as_rgb = {"rgba": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
                   "float 0..1": rgb / 255.0, "float32 0..255": rgb.astype(np.float32),
                   "uint16": rgb.astype(np.uint16) * 257}
    for name, image in same_as_rgb.items():
        np.testing.assert_array_equal(as_rgb_uint8(image), rgb, err_msg=name)
        np.testing.assert_array_equal(shipped.predict(image, box).keypoints, ref, name)
    for image in (gray, gray[:, :, None]):
        np.testing.assert_array_equal(shipped.predict(image, box).keypoints, ref_gray)
    assert as_rgb_uint8(rgb) is rgb  # no copy for the normal case
    for bad, match in [(rgb.astype(np.int64), "uint8, uint16 or float"),
                       (rgb[:, :, :2], r"\(H, W, 3\) RGB"), (rgb[None], r"\(H, W, 3\) RGB"),
                       (np.full((4, 4, 3), np.nan), "NaN")]:
        with pytest.raises(ValueError, match=match):
            shipped.predict(bad)


# ------------------------------------------------------------------ 13. SavedModels are code
@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """One SavedModel exported by this project (tiny network), and a look-alike with this
    project's metadata whose serving function also writes a file."""
    import tensorflow as tf

    from mssh_keras.config import ModelConfig
    from mssh_keras.model import build_network
    from mssh_keras.model_file import network_metadata, prepare_model
    from mssh_keras.writers import write_saved_model

    root = tmp_path_factory.mktemp("saved_models")
    net = build_network(ModelConfig(**TINY), name="tiny")
    model = prepare_model(net)
    meta = network_metadata(root / "tiny.keras", net, model, skeleton="lsp14")
    ours = write_saved_model(model, root / "ours_saved_model", meta)

    marker = root / "written_by_the_model.txt"

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((1, 32, 32, 3), tf.float32,
                                                    name="image")])
        def serve(self, image):
            tf.io.write_file(str(marker), "the model ran code on your machine")
            return {"heatmaps": tf.zeros((1, 8, 8, 14)) + 0.0 * tf.reduce_mean(image)}

    hostile_module = Hostile()
    hostile = root / "hostile_saved_model"
    tf.saved_model.save(hostile_module, str(hostile),
                        signatures={"serving_default": hostile_module.serve})
    (hostile / "assets.extra").mkdir()
    (hostile / "assets.extra/mssh_keras.json").write_text(json.dumps(meta))
    return {"ours": ours, "hostile": hostile, "marker": marker, "meta": meta, "root": root}


def test_a_savedmodel_that_does_more_than_a_pose_network_needs_trust(saved_models):
    hostile, marker = saved_models["hostile"], saved_models["marker"]
    with pytest.raises(ModelLoadError) as err:
        PoseEstimator(hostile)
    msg = str(err.value)
    assert str(hostile) in msg and "WriteFile" in msg and "trust_saved_model=True" in msg
    assert not marker.exists()
    # Trusted explicitly: it loads, and indeed runs its code.
    est = PoseEstimator(hostile, trust_saved_model=True)
    est.heatmaps(np.zeros((1, 32, 32, 3), np.float32))
    assert marker.exists()


def test_the_projects_own_savedmodel_needs_no_trust(saved_models):
    est = PoseEstimator(saved_models["ours"])
    assert est.heatmaps(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 8, 8, 14)


def test_demo_and_evaluate_refuse_an_untrusted_savedmodel(saved_models, tmp_path, capsys):
    from demo import app

    hostile = str(saved_models["hostile"])
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), _person())
    rc = app.main(["--headless", "--model", hostile, "--source", str(frames),
                   "--output", str(tmp_path / "demo.mp4")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--trust-saved-model" in line
    rc = _cli("evaluate").main(["--model", hostile, "--dataset", "synthetic",
                                "--output-dir", str(tmp_path / "eval")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--trust-saved-model" in line
    assert app.build_parser().parse_args(["--trust-saved-model"]).trust_saved_model


def test_keras_files_load_in_safe_mode():
    """A .keras file is data only in Keras's safe mode (code-carrying layers refused)."""
    import inspect

    from mssh_keras import export as ex

    assert "safe_mode=True" in inspect.getsource(ex.load_network)


# ------------------------------------------------------------------ 14. no machine paths
ABSOLUTE = re.compile(r"(?<![A-Za-z0-9_.~])/(?:work|root|tmp|home|Users|private|var/folders)/")


def test_no_tracked_json_file_holds_an_absolute_machine_path():
    tracked = subprocess.run(["git", "ls-files", "*.json"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked
    found = {f: ABSOLUTE.findall((ROOT / f).read_text()) for f in tracked}
    assert not {f: hits for f, hits in found.items() if hits}


def test_portable_paths():
    home = Path.home()
    assert portable_path(ROOT / "models/x/model.keras") == "models/x/model.keras"
    assert portable_path(ROOT.parent / "shared/data") == "../shared/data"
    if home != Path("/") and not str(ROOT).startswith(str(home)):
        assert portable_path(home / ".cache/m/x.tflite") == "~/.cache/m/x.tflite"
    assert portable_path("/opt/elsewhere/model.onnx") == "model.onnx"
    assert portable_path(None) is None


def test_writers_store_portable_paths(saved_models, tmp_path, monkeypatch):
    from mssh_keras.config import ModelConfig, TrainConfig
    from mssh_keras.skeleton import LSP14
    from mssh_keras.training import RunOptions, _config_record, saved_options

    assert saved_models["meta"]["source_model"] == "tiny.keras"  # outside the repo: the name
    run = tmp_path / "runs/x"
    record = _config_record(RunOptions(output_dir=str(run), data_dir=str(tmp_path / "tfds"),
                                       manual_dir=str(tmp_path / "DATA/lspet")),
                            ModelConfig(), TrainConfig(), LSP14)
    # Data paths relative to the run folder: --resume finds them from any current folder.
    assert record["options"]["data_dir"] == "../../tfds"
    assert record["options"]["manual_dir"] == "../../DATA/lspet"
    assert not ABSOLUTE.search(json.dumps(record))
    run.mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps(record))
    monkeypatch.chdir(ROOT)
    assert saved_options(run)["manual_dir"] == str(tmp_path / "DATA/lspet")
    assert saved_options(run)["data_dir"] == str(tmp_path / "tfds")
    # A run_config.json from before "paths_relative_to": relative to the repository.
    del record["paths_relative_to"]
    record["options"]["manual_dir"] = "../shared/lspet"
    (run / "run_config.json").write_text(json.dumps(record))
    assert saved_options(run)["manual_dir"] == str(ROOT.parent / "shared/lspet")


@needs_shipped
def test_shipped_sidecars_name_their_files_relative_to_the_repository():
    for name in ("model.tflite.json", "model.keras.json"):
        meta = json.loads((SHIPPED_MODEL_DIR / name).read_text())
        assert meta["source_model"] == "models/hg-lite-lspet/model.keras"
    verify = json.loads((SHIPPED_MODEL_DIR / "model.tflite.verify.json").read_text())
    assert verify["file"] == "model.tflite"


@needs_shipped
def test_shipped_tflite_embedded_metadata_has_no_machine_path():
    from mssh_keras.model_file import tflite_metadata

    assert not ABSOLUTE.search(json.dumps(tflite_metadata(SHIPPED_TFLITE)))
    # Nor anywhere in the file (an earlier metadata buffer left unreferenced, say).
    assert not ABSOLUTE.search(SHIPPED_TFLITE.read_bytes().decode("latin-1"))
