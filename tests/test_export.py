"""Export (SavedModel / TFLite x4 / ONNX), verification, metadata and the runtime.

Conversion is slow (tens of seconds per file on a busy 2-core machine), so one tiny network
is exported once per module and every test reads those files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from mssh_keras import export as ex
from mssh_keras import model_file, runtime
from mssh_keras.codec import HeatmapCodec
from mssh_keras.config import ModelConfig
from mssh_keras.data.sample_crops import SampleCrops, sample_crops
from mssh_keras.data.synthetic import render_example
from mssh_keras.decode import decode_heatmaps, flip_back, heatmap_coords_to_image
from mssh_keras.model import build_network
from mssh_keras.skeleton import LSP14
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# Two stacks at different resolutions (8 then 16: upsampling + dispatch), residual blocks
# (half the layers of IR-A, i.e. half the conversion time; the converters do not care).
TINY_NET = ModelConfig(**{**TINY, "input_size": 64, "schedule": (8, 16)})
# A random network's heatmaps are flat and ambiguous, so full int8 moves ~20 % of its
# argmaxes (measured: 20-21 %); the default 15 % limit is for trained models. fp16 and
# dynamic range keep their defaults here.
TEST_LIMITS = dict(ex.MOVED_LIMITS, int8=0.35)


def _tiny_network(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    net = build_network(TINY_NET, name="tiny")
    rng = np.random.default_rng(seed)
    for layer in net.layers:  # non-trivial BN statistics, as after training
        if layer.name.startswith("stack"):  # heads start near zero; give them real weights
            k = layer.kernel
            layer.kernel.assign(rng.normal(0, 0.3, k.shape).astype("float32"))
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))
    return net


class _AskedCrops:
    """A crop source of the test's own: export asks it for crops and reads no dataset."""

    def __init__(self):
        self.asked = []

    def verification(self, skeleton, input_size, n):
        self.asked.append(("verification", skeleton.name, input_size, n))
        return sample_crops(skeleton, input_size, n, split="val", seed=5), f"test: {n} crops"

    def calibration(self, skeleton, input_size, n):
        raise AssertionError("calibration crops are for int8 TFLite files only")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    net = _tiny_network(0)
    keras_path = d / "tiny.keras"
    net.save(keras_path)
    # What a training run leaves next to its model: the export reads preset/skeleton here.
    (d / "run_config.json").write_text(json.dumps(
        {"options": {"preset": "tiny-test"}, "model": dataclasses.asdict(TINY_NET),
         "skeleton": "lsp14"}))
    net.save_weights(d / "tiny.weights.h5")
    results = ex.export(net, ["savedmodel", "tflite", "onnx"], d, source=keras_path,
                        crops=SampleCrops(), quantizations=list(ex.QUANTIZATIONS),
                        base_name="tiny",
                        calibration_samples=32, verify_samples=16, limits=TEST_LIMITS,
                        echo=lambda s: None)
    asked = _AskedCrops()
    early = ex.export(net, ["onnx"], d, source=keras_path, crops=asked, stack=1,
                      base_name="tiny", verify_samples=8, echo=lambda s: None)
    return {"dir": d, "net": net, "keras": keras_path,
            "files": {(r.format, r.quantization): r for r in results}, "early": early[0],
            "asked": asked.asked}


def _person_image(seed: int = 7) -> tuple[np.ndarray, tuple]:
    """A synthetic person pasted into a larger, non-square frame, and its body box."""
    ex_ = render_example(seed, "lsp14", 96)
    frame = np.full((150, 200, 3), 90, np.uint8)
    frame[30:126, 60:156] = ex_["image"]
    j = ex_["joints"] + np.array([60, 30])
    return frame, (*j.min(0), *j.max(0))


def test_every_format_and_quantization_is_written_and_verified(exported):
    files = exported["files"]
    assert set(files) == {("savedmodel", "fp32"), ("onnx", "fp32"),
                          *(("tflite", q) for q in ex.QUANTIZATIONS)}
    for (fmt, q), r in files.items():
        assert r.path.exists() and model_file.sidecar_path(r.path).is_file()
        report = json.loads(model_file.verify_report_path(r.path).read_text())
        assert report["passed"], report
        assert report["samples"] == 16 and report["joints_compared"] == 16 * 14
        if q == "fp32":
            # The brief's bar: fp32 heatmaps within 1e-4 (x max(1, peak)) of Keras.
            assert report["max_abs_diff"] <= 1e-4 * max(1.0, report["reference_peak"])
            assert report["moved_share"] == 0.0
        else:
            assert 0 < report["max_abs_diff"]  # quantized: really different numbers
    names = {r.path.name for r in files.values()}
    assert names == {"tiny_saved_model", "tiny.onnx", "tiny.tflite", "tiny_fp16.tflite",
                     "tiny_dynamic.tflite", "tiny_int8.tflite"}
    sizes = {q: files[("tflite", q)].path.stat().st_size for q in ex.QUANTIZATIONS}
    # (This network is mostly flatbuffer overhead; dynamic range leaves tensors under 1024
    # weights in float, so only the order is certain.)
    assert all(sizes[q] < sizes["fp32"] for q in ("fp16", "dynamic", "int8"))
    assert sizes["int8"] < sizes["fp16"]


def test_metadata_is_complete_and_embedded_in_every_file(exported):
    files = exported["files"]
    for (fmt, q), r in files.items():
        side = json.loads(model_file.sidecar_path(r.path).read_text())
        assert side["skeleton"]["joints"] == list(LSP14.joints)
        assert side["skeleton"]["flip_pairs"] == [list(p) for p in LSP14.flip_pairs]
        assert side["skeleton"]["limbs"] == [list(p) for p in LSP14.limbs]
        assert side["skeleton"]["name"] == "lsp14"
        assert (side["input_size"], side["heatmap_size"], side["stride"]) == (64, 16, 4.0)
        # The heatmap fields are the codec's: the network's last stack.
        codec = HeatmapCodec(64, TINY_NET.schedule).for_stack()
        assert {k: side[k] for k in codec.to_metadata()} == codec.to_metadata()
        assert HeatmapCodec.from_metadata(side) == codec
        assert side["input"]["normalisation"] == ex.NORMALISATION
        assert side["input"]["shape"] == [1, 64, 64, 3]
        assert side["preset"] == "tiny-test" and side["model_config"]["schedule"] == [8, 16]
        assert side["package_version"] and side["format"] == fmt
        assert side["quantization"] == q and side["stack"] == 2 == side["num_stacks"]
        embedded = {"tflite": model_file.tflite_metadata, "onnx": model_file.onnx_metadata,
                    "savedmodel": lambda p: json.loads(
                        (p / model_file.SAVED_MODEL_METADATA).read_text())}[fmt](r.path)
        assert embedded == side
    assert json.loads(model_file.sidecar_path(files[("onnx", "fp32")].path).read_text())[
        "onnx_opset"] == ex.ONNX_OPSET
    assert json.loads(model_file.sidecar_path(files[("tflite", "int8")].path).read_text())[
        "calibration"] == "synthetic/train: 32 crops"


def test_embedded_metadata_is_enough_without_the_sidecar(exported, tmp_path):
    for key in (("tflite", "int8"), ("onnx", "fp32")):
        src = exported["files"][key].path
        lone = tmp_path / src.name
        lone.write_bytes(src.read_bytes())
        est = runtime.PoseEstimator(lone)
        assert est.metadata["quantization"] == key[1] and est.skeleton.joints == LSP14.joints


def test_embedding_metadata_again_replaces_it_in_place(exported, tmp_path):
    """ship_model re-embeds after calibration: the file must not grow a stale copy."""
    from ai_edge_litert import schema_py_generated as fb
    src = exported["files"]["tflite", "fp32"].path
    meta = model_file.tflite_metadata(src)
    again = model_file.embed_tflite_metadata(src.read_bytes(), {**meta, "note": "second"})
    buffers = lambda data: fb.Model.GetRootAs(data, 0).BuffersLength()  # noqa: E731
    assert buffers(again) == buffers(src.read_bytes())
    (tmp_path / "again.tflite").write_bytes(again)
    assert model_file.tflite_metadata(tmp_path / "again.tflite") == {**meta, "note": "second"}
    assert abs(len(again) - src.stat().st_size) < 64


def test_early_exit_stack_has_its_own_resolution(exported):
    r = exported["early"]
    assert r.path.name == "tiny_stack1.onnx" and r.verification["passed"]
    # Verified on the crops the caller's source gave, at the model's input size.
    assert exported["asked"] == [("verification", "lsp14", 64, 8)]
    assert r.verification["sample_source"] == "test: 8 crops"
    est = runtime.PoseEstimator(r.path)
    assert (est.metadata["stack"], est.heatmap_size, est.stride) == (1, 8, 8.0)
    assert est.codec == HeatmapCodec(64, TINY_NET.schedule).for_stack(1)
    assert est.heatmaps(np.zeros((2, 64, 64, 3), np.uint8)).shape == (2, 8, 8, 14)
    frame, box = _person_image()
    assert est.predict(frame, box).keypoints.shape == (14, 2)


def test_every_backend_gives_the_keras_keypoints(exported):
    frame, box = _person_image()
    d = exported["dir"]
    ref = runtime.PoseEstimator(exported["keras"])
    assert ref.backend == "keras" and ref.skeleton.joints == LSP14.joints
    paths = {"weights": d / "tiny.weights.h5", **{k: r.path for k, r in exported["files"].items()}}
    estimators = {key: runtime.PoseEstimator(path) for key, path in paths.items()}
    assert estimators["weights"].backend == "keras"
    assert {e.backend for e in estimators.values()} == set(runtime.BACKENDS)
    for b, flip in ((box, False), (None, False), (box, True)):
        # One pass each (no box would otherwise start the coarse-to-fine search, whose
        # crops follow each backend's own keypoints): the backends are compared here.
        want = ref.predict(frame, b, flip_test=flip, search=False)
        for key, est in estimators.items():
            got = est.predict(frame, b, flip_test=flip, search=False)
            np.testing.assert_allclose(got.crop_matrix, want.crop_matrix)
            if key == "weights" or key[1] == "fp32":
                np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-3,
                                           err_msg=str(key))
                np.testing.assert_allclose(got.confidence, want.confidence, rtol=1e-3,
                                           atol=1e-3)
            else:
                # Quantized parity is the verification's job (16 crops, above; one image of
                # a random network says little). Here: predict is exactly this backend's
                # heatmaps, flip-averaged, decoded and mapped back to the image.
                crop, m = est.crop(frame, b)
                hm = est.heatmaps(crop[None])[0]
                if flip:
                    hm = (hm + flip_back(est.heatmaps(crop[None, :, ::-1])[0],
                                         LSP14.flip_permutation)) / 2
                coords, conf = decode_heatmaps(hm)
                np.testing.assert_allclose(got.keypoints,
                                           heatmap_coords_to_image(coords, est.stride, m),
                                           atol=1e-4)
                np.testing.assert_array_equal(got.confidence, conf)


def test_crop_follows_the_box_or_letterboxes_the_image(exported):
    """The crop a runtime feeds: the padded body box, or the whole image letterboxed."""
    est = runtime.PoseEstimator(exported["files"][("onnx", "fp32")].path)
    frame, box = _person_image()
    crop, m = est.crop(frame, box)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    # The box is padded by 1.25 around its centre, as training crops are.
    side = max(box[2] - box[0], box[3] - box[1]) * 1.25
    np.testing.assert_allclose(m[0, 0], 64 / side, rtol=1e-6)
    crop2, m2 = est.crop(frame, None)  # letterbox: the longer side (200 px) fills the input
    np.testing.assert_allclose(m2[0, 0], 64 / 200)
    centre = runtime.geometry.transform_points(np.array([[99.5, 74.5]]), m2)
    np.testing.assert_allclose(centre, [[31.5, 31.5]])
    # Grayscale, RGBA, float and uint16 are converted (tests/test_reliability.py); other
    # dtypes are refused with a message.
    with pytest.raises(ValueError, match="uint8"):
        est.predict(frame.astype(np.int64), box)


def test_onnx_runtime_does_not_busy_wait_between_calls(exported):
    """Spinning intra-op threads kept both cores busy after each call and doubled the
    time of whatever ran next in the process (benchmarks/README.md, latency)."""
    est = runtime.PoseEstimator(exported["files"][("onnx", "fp32")].path)
    opts = est._run.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_runtime_crop_is_the_training_pipeline_crop(exported):
    """cv2.warpAffine with geometry.crop_matrix = the tf.data crop (same pixel convention):
    a half-pixel slip would show as large differences on this textured image."""
    import tensorflow as tf

    from mssh_keras.data.pipeline import crop_matrix_tf, warp

    est = runtime.PoseEstimator(exported["files"][("onnx", "fp32")].path)
    frame, box = _person_image()
    crop, m = est.crop(frame, box)
    center, scale = runtime.geometry.box_to_center_scale(box, est.box_padding)
    m_tf = crop_matrix_tf(tf.constant(center), tf.constant(scale, tf.float32), 64, 0.0, False)
    np.testing.assert_allclose(m, m_tf.numpy(), rtol=1e-5, atol=1e-4)
    diff = np.abs(crop.astype(np.float32) - warp(tf.constant(frame), m_tf, 64).numpy())
    # Only uint8 rounding and cv2's 1/32-px interpolation weights differ (measured <= 0.5).
    assert diff.mean() < 0.5 and diff.max() <= 1.0, (diff.mean(), diff.max())
    shifted = cv2.warpAffine(frame, m + [[0, 0, 0.5], [0, 0, 0.5]], (64, 64),
                             flags=cv2.INTER_LINEAR)
    assert np.abs(shifted.astype(np.float32) - crop).mean() > 3 * diff.mean()


def test_runtime_imports_no_tensorflow_for_litert_and_onnx(exported):
    files = exported["files"]
    code = (
        "import sys, numpy as np\n"
        "from mssh_keras.runtime import PoseEstimator\n"
        "img = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)\n"
        "for p in sys.argv[1:]:\n"
        "    est = PoseEstimator(p)\n"
        "    pose = est.predict(img, box=(10, 10, 80, 70), flip_test=True)\n"
        "    assert pose.keypoints.shape == (14, 2) and np.isfinite(pose.keypoints).all()\n"
        "    assert est.predict(img).confidence.shape == (14,)\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('clean')\n")
    paths = [str(files[("tflite", "int8")].path), str(files[("tflite", "fp32")].path),
             str(files[("onnx", "fp32")].path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr[-2000:]


def test_flex_ops_are_refused(tmp_path):
    """A model needing a TF op without a TFLite builtin kernel must not be exported."""
    import tensorflow as tf

    inp = keras.Input((8, 8, 3), name="image")
    out = keras.layers.Lambda(lambda x: tf.math.igamma(x + 1.0, x + 2.0))(inp)  # no builtin
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(out))
    sm = ex.write_saved_model(model, tmp_path / "sm", {"input": {"shape": [1, 8, 8, 3]}})
    with pytest.raises(ex.ExportError, match=r"without a TFLite builtin kernel \(Igamma\).*Flex"):
        ex.convert_tflite(sm, "fp32")


def test_verification_fails_for_a_different_model(exported):
    """The check can fail: another network's outputs are far from these files'."""
    other = ex.prepare_model(_tiny_network(1))
    samples = sample_crops(LSP14, 64, 8, split="val", seed=1)
    tfl = exported["files"][("tflite", "fp32")].path
    report = ex.verify(tfl, other, samples, "fp32", write=False)
    assert not report["passed"] and report["max_abs_diff"] > 1e-2
    report = ex.verify(tfl, other, samples, "int8", write=False)
    assert not report["passed"] and report["moved_share"] > 0.35


def test_prepare_model_input_size_and_errors(exported):
    net = exported["net"]
    bigger = ex.prepare_model(net, input_size=96)
    assert bigger.outputs[0].shape[1:] == (24, 24, 14)
    x = np.random.default_rng(0).uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
    assert np.isfinite(bigger(x)).all()
    with pytest.raises(ex.ExportError, match="multiple of 16"):
        ex.prepare_model(net, input_size=72)
    with pytest.raises(ex.ExportError, match="stack"):
        ex.prepare_model(net, stack=3)
    with pytest.raises(ex.ExportError, match="TFLite only"):
        ex.export(net, ["onnx"], exported["dir"], crops=SampleCrops(), quantizations=["int8"])


def test_cli_reports_missing_model_and_bad_options(tmp_path, capsys):
    sys.path.insert(0, str(ROOT))
    try:
        import export as cli
    finally:
        sys.path.remove(str(ROOT))
    assert cli.main(["--model", str(tmp_path / "nope.keras")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["--quantize", "int4"])
    assert cli.parse_args(["--format", "all", "--quantize", "all"]).quantize == list(
        ex.QUANTIZATIONS)
    with pytest.raises(runtime.ModelLoadError, match="not a SavedModel"):
        runtime.PoseEstimator(tmp_path)  # a folder that is no SavedModel
