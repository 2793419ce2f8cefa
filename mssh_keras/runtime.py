"""Pose inference over any exported model: LiteRT, ONNX Runtime, SavedModel or Keras.

Why one class for every backend: the crop, the decoding and the mapping back to the image
are the same everywhere (geometry.py / decode.py), so a model gives the same keypoints
whatever runs it; only "image batch in -> heatmaps out" differs per backend.

The LiteRT and ONNX Runtime paths never import TensorFlow or Keras (a mobile or edge box
installs ``ai-edge-litert`` or ``onnxruntime`` only): every heavy import here is lazy, and
the model's facts (joints, input size, stride...) come from the JSON metadata written by
``mssh_keras.export``, not from the network.

Usage::

    est = PoseEstimator("models/hg-lite-lspet/model.tflite")
    pose = est.predict(image_rgb, box=(x0, y0, x1, y1))   # or box=None: the whole image
    pose.keypoints  # (K, 2) float32, image pixels (pixel centres at integers)
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import geometry
from .decode import decode_heatmaps, flip_back, heatmap_coords_to_image
from .skeleton import SKELETONS, Skeleton

METADATA_KEY = "mssh_keras"           # TFLite metadata name / ONNX metadata_props key
SAVED_MODEL_METADATA = "assets.extra/mssh_keras.json"  # inside a SavedModel folder
INPUT_NAME, OUTPUT_NAME = "image", "heatmaps"

# Canonical backend names and the spellings accepted for them (the demo uses the second).
BACKENDS = ("litert", "onnxruntime", "tf", "keras")
_BACKEND_ALIASES = {"litert": "litert", "tflite": "litert", "onnxruntime": "onnxruntime",
                    "onnx": "onnxruntime", "ort": "onnxruntime", "tf": "tf",
                    "savedmodel": "tf", "saved_model": "tf", "tensorflow": "tf",
                    "keras": "keras"}


class ModelLoadError(RuntimeError):
    """A model file that cannot be used, with a message naming the file and the problem."""


@dataclass
class Pose:
    """One person's prediction, in the coordinates of the image given to ``predict``."""
    keypoints: np.ndarray     # (K, 2) float32 (x, y) image pixels, pixel centres at integers
    confidence: np.ndarray    # (K,) float32: the heatmap maximum of each joint
    model_ms: float           # time spent in the backend (both passes with flip_test)
    crop_matrix: np.ndarray   # (2, 3) float64 image -> network input crop


# --------------------------------------------------------------------------------------
# Metadata (JSON sidecar first, then what the file embeds): no TensorFlow needed.
def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.tflite.json`` (a SavedModel folder ``x`` -> ``x.json``)."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def detect_backend(model_path: str | os.PathLike) -> str:
    """Backend from the path: .tflite, .onnx, a SavedModel folder, .keras / .weights.h5."""
    p = Path(model_path)
    name = p.name.lower()
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            return "tf"
        raise ModelLoadError(f"{p} is a folder without saved_model.pb: not a SavedModel")
    if name.endswith(".tflite"):
        return "litert"
    if name.endswith(".onnx"):
        return "onnxruntime"
    if name.endswith(".keras") or name.endswith(".weights.h5"):
        return "keras"
    raise ModelLoadError(f"cannot tell the backend of {p}: expected .tflite, .onnx, .keras, "
                         f".weights.h5 or a SavedModel folder (or pass backend=...)")


def _tflite_metadata(path: Path) -> dict | None:
    """The JSON stored under METADATA_KEY in a .tflite file's metadata table, if any."""
    from ai_edge_litert import schema_py_generated as fb  # flatbuffers only, no TF

    buf = path.read_bytes()
    model = fb.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == METADATA_KEY:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def _onnx_metadata(path: Path) -> dict | None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return None if raw is None else json.loads(raw)


def read_metadata(model_path: str | os.PathLike, backend: str | None = None) -> dict | None:
    """The model's metadata: ``<file>.json`` if present, else the copy inside the file
    (TFLite metadata, ONNX metadata_props, SavedModel assets.extra); None if neither."""
    p = Path(model_path)
    side = sidecar_path(p)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"metadata {side} is not valid JSON: {e}") from None
    backend = _canonical(backend) if backend else detect_backend(p)
    try:
        if backend == "litert":
            return _tflite_metadata(p)
        if backend == "onnxruntime":
            return _onnx_metadata(p)
        if backend == "tf" and (p / SAVED_MODEL_METADATA).is_file():
            return json.loads((p / SAVED_MODEL_METADATA).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the metadata embedded in {p}: {e}") from None
    return None


def skeleton_from_metadata(meta: dict) -> Skeleton:
    """The known joint set of that name (with its metric definitions, e.g. PCK's torso), or
    one built from the metadata's own description (so a custom joint set works too)."""
    s = meta["skeleton"]
    known = SKELETONS.get(s["name"])
    if known is not None and list(known.joints) == list(s["joints"]):
        return known
    return Skeleton(name=s["name"], joints=tuple(s["joints"]),
                    flip_pairs=tuple(tuple(p) for p in s["flip_pairs"]),
                    limbs=tuple(tuple(p) for p in s["limbs"]))


def _canonical(backend: str) -> str:
    try:
        return _BACKEND_ALIASES[backend.lower()]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}") from None


# --------------------------------------------------------------------------------------
# Backends: float32 (B, S, S, 3) RGB 0..255 -> float32 (B, h, w, K).
class _LiteRT:
    def __init__(self, path: Path, num_threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ModelLoadError(f"{path}: expected one input and one output, got "
                                 f"{len(inp)} and {len(out)}")
        self.inp, self.out = inp[0], out[0]
        if self.inp["dtype"] != np.float32:
            raise ModelLoadError(f"{path}: input dtype {self.inp['dtype']}, expected float32 "
                                 f"(RGB 0..255; quantization is internal to the model)")
        sig = self.inp.get("shape_signature", self.inp["shape"])
        self.batch = None if sig[0] == -1 else int(sig[0])
        self.input_shape = tuple(int(v) for v in self.inp["shape"][1:])
        self._current = int(self.inp["shape"][0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.batch is None and x.shape[0] != self._current:
            self.interpreter.resize_tensor_input(self.inp["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._current = x.shape[0]
        self.interpreter.set_tensor(self.inp["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.out["index"])


class _OnnxRuntime:
    def __init__(self, path: Path, num_threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(f"{path}: expected one input and one output, got "
                                 f"{len(inputs)} and {len(outputs)}")
        self.in_name, self.out_name = inputs[0].name, outputs[0].name
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.input_shape = tuple(shape[1:])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.out_name], {self.in_name: x})[0]


def _tf_threads(num_threads: int) -> None:
    """Pin TensorFlow's pools (only possible before its runtime starts; else keep them)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process: benchmarks set it first thing


class _SavedModel:
    def __init__(self, path: Path, num_threads: int):
        _tf_threads(num_threads)
        import tensorflow as tf

        self._tf = tf
        self.module = tf.saved_model.load(str(path))
        if "serving_default" not in self.module.signatures:
            raise ModelLoadError(f"{path}: no 'serving_default' signature")
        self.fn = self.module.signatures["serving_default"]
        spec = self.fn.structured_input_signature[1]
        if INPUT_NAME not in spec or OUTPUT_NAME not in self.fn.structured_outputs:
            raise ModelLoadError(f"{path}: serving signature must take {INPUT_NAME!r} and return "
                                 f"{OUTPUT_NAME!r}; it has inputs {sorted(spec)} and outputs "
                                 f"{sorted(self.fn.structured_outputs)}")
        shape = spec[INPUT_NAME].shape
        self.batch = shape[0]
        self.input_shape = tuple(shape[1:])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(**{INPUT_NAME: self._tf.constant(x)})[OUTPUT_NAME].numpy()


class _Keras:
    """A .keras network (or .weights.h5 + its config) run under a traced tf.function."""

    def __init__(self, path: Path, num_threads: int, meta: dict | None):
        _tf_threads(num_threads)
        import tensorflow as tf

        from .export import load_network, prepare_model

        network = load_network(path, meta)
        stack = (meta or {}).get("stack")
        self.model = prepare_model(network, stack=stack)
        self.batch = None
        self.input_shape = tuple(self.model.inputs[0].shape[1:])
        spec = tf.TensorSpec((None, *self.input_shape), tf.float32, name=INPUT_NAME)
        self.fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec],
                              reduce_retracing=True)
        self.network = network

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x).numpy()


# --------------------------------------------------------------------------------------
class PoseEstimator:
    """Single-person pose from an RGB image with any exported model.

    ``backend`` None picks it from the path (.tflite -> litert, .onnx -> onnxruntime, a
    SavedModel folder -> tf, .keras / .weights.h5 -> keras); aliases tflite, onnx,
    savedmodel are accepted. ``num_threads`` caps the backend's CPU threads.
    """

    def __init__(self, model_path: str | os.PathLike, backend: str | None = None,
                 num_threads: int = 2):
        path = Path(model_path)
        if not path.exists():
            raise ModelLoadError(f"model {path} does not exist")
        self.path = path
        self.backend = _canonical(backend) if backend else detect_backend(path)
        self.num_threads = int(num_threads)
        meta = read_metadata(path, self.backend)
        if self.backend == "keras":
            self._run = _Keras(path, self.num_threads, meta)
            if meta is None:
                from .export import network_metadata
                meta = network_metadata(path, self._run.network, self._run.model)
        elif meta is None:
            raise ModelLoadError(
                f"{path} carries no mssh_keras metadata and {sidecar_path(path).name} is "
                f"missing: export it with `python export.py` (which writes both)")
        elif self.backend == "litert":
            self._run = _LiteRT(path, self.num_threads)
        elif self.backend == "onnxruntime":
            self._run = _OnnxRuntime(path, self.num_threads)
        else:
            self._run = _SavedModel(path, self.num_threads)
        self.metadata: dict = meta
        self.skeleton: Skeleton = skeleton_from_metadata(meta)
        self.input_size: int = int(meta["input_size"])
        self.heatmap_size: int = int(meta["heatmap_size"])
        self.stride: float = float(meta["stride"])
        self.box_padding: float = float(meta.get("crop", {}).get("padding",
                                                                 geometry.JOINT_BOX_PADDING))
        expected = (self.input_size, self.input_size, 3)
        if tuple(self._run.input_shape) != expected:
            raise ModelLoadError(f"{path}: the model takes {tuple(self._run.input_shape)} but "
                                 f"its metadata says {expected}")

    # ---------------------------------------------------------------- raw network access
    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 3) RGB crops (uint8 or float 0..255) -> (B, h, w, K) float32 heatmaps.

        A model exported with a fixed batch is called once per chunk of that size.
        """
        x = np.asarray(batch)
        if x.ndim != 4 or x.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"batch must be (B, {self.input_size}, {self.input_size}, 3), "
                             f"got {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        fixed = self._run.batch
        if fixed is None or fixed == x.shape[0]:
            return np.asarray(self._run(x), dtype=np.float32)
        if x.shape[0] % fixed:
            raise ValueError(f"{self.path.name} has a fixed batch of {fixed}; got {x.shape[0]}")
        return np.concatenate([np.asarray(self._run(x[i:i + fixed]), dtype=np.float32)
                               for i in range(0, x.shape[0], fixed)])

    # ---------------------------------------------------------------- one image
    def crop(self, image_rgb: np.ndarray, box=None) -> tuple[np.ndarray, np.ndarray]:
        """The network input for ``image_rgb`` (uint8 (S, S, 3)) and its image->crop matrix.

        ``box`` (x0, y0, x1, y1) is the person's body box, padded like the training crops;
        None letterboxes the whole image (centre of the image, side = its longer side).
        """
        import cv2

        img = np.asarray(image_rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        if box is None:
            center, scale = np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(h, w))
        else:
            if len(box) != 4 or not np.all(np.isfinite(np.asarray(box, np.float64))):
                raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
            center, scale = geometry.box_to_center_scale(box, self.box_padding)
        m = geometry.crop_matrix(center, scale, self.input_size)
        crop = cv2.warpAffine(img, m, (self.input_size, self.input_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return crop, m

    def predict(self, image_rgb: np.ndarray, box=None, flip_test: bool = False) -> Pose:
        """Keypoints of the person in ``box`` (or in the whole image) in image pixels.

        ``flip_test`` also runs the mirrored crop and averages the heatmaps (decode.flip_back).
        """
        crop, m = self.crop(image_rgb, box)
        x = crop[None].astype(np.float32)
        t0 = time.perf_counter()
        if flip_test:
            both = self.heatmaps(np.concatenate([x, x[:, :, ::-1]]))
            hm = (both[0] + flip_back(both[1], self.skeleton.flip_permutation)) / 2.0
        else:
            hm = self.heatmaps(x)[0]
        model_ms = (time.perf_counter() - t0) * 1000.0
        coords, conf = decode_heatmaps(hm)
        kp = heatmap_coords_to_image(coords, self.stride, m).astype(np.float32)
        return Pose(keypoints=kp, confidence=conf.astype(np.float32), model_ms=model_ms,
                    crop_matrix=m)

    def __repr__(self) -> str:
        return (f"PoseEstimator({str(self.path)!r}, backend={self.backend!r}, "
                f"input_size={self.input_size}, joints={self.skeleton.num_joints})")
