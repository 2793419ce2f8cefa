"""Pose inference over any exported model: LiteRT, ONNX Runtime, SavedModel or Keras.

Why one class for every backend: the crop, the decoding and the mapping back to the image
are the same everywhere (geometry.py / codec.py), so a model gives the same keypoints
whatever runs it; only "image batch in -> heatmaps out" differs per backend.

The LiteRT and ONNX Runtime paths never import TensorFlow or Keras (a mobile or edge box
installs ``ai-edge-litert`` or ``onnxruntime`` only): every heavy import here is lazy, and
the model's facts (joints, input size, stride...) come from the JSON metadata of the
model-file contract (``mssh_keras.model_file``), not from the network.

Usage::

    est = PoseEstimator("models/hg-lite-lspet/model.tflite")
    pose = est.predict(image_rgb, box=(x0, y0, x1, y1))   # or box=None: the whole image
    pose.keypoints  # (K, 2) float32, image pixels (pixel centres at integers)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import geometry, person_search
from .codec import HeatmapCodec
from .decode import flip_back
# The model-file contract (names, metadata, backends) lives in model_file; its names are
# re-exported here for the callers that know them as runtime's.
from .model_file import (BACKENDS, FORMAT_NAMES, INPUT_NAME, METADATA_KEY,  # noqa: F401
                         OUTPUT_NAME, REQUIRED_METADATA, REQUIRED_SKELETON,
                         SAVED_MODEL_METADATA, ModelFileError, ModelLoadError,
                         canonical_backend, check_metadata, detect_backend, error_type,
                         first_line, load_network, network_metadata, prepare_model,
                         read_metadata, sidecar_path, skeleton_from_metadata)
from .skeleton import Skeleton


@dataclass
class Pose:
    """One person's prediction, in the coordinates of the image given to ``predict``."""
    keypoints: np.ndarray     # (K, 2) float32 (x, y) image pixels, pixel centres at integers
    confidence: np.ndarray    # (K,) float32: the heatmap maximum of each joint
    model_ms: float           # time spent in the backend (both passes with flip_test)
    crop_matrix: np.ndarray   # (2, 3) float64 image -> network input crop
    model_calls: int = 1      # crops run through the network for this pose (person_search)
    rotation: float = 0.0     # degrees the crop was rotated (geometry.crop_matrix)
    box: tuple | None = None  # body box of the crop (before padding); None = whole image
    scores: tuple = ()        # the search's score (person_search.crop_score) of each pass


def as_rgb_uint8(image) -> np.ndarray:
    """``image`` as the uint8 (H, W, 3) RGB array the runtime crops.

    Accepted and converted (the channel order cannot be checked: pass RGB, e.g.
    ``cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)`` for what ``cv2.imread`` returns):

    - uint8 (H, W, 3): used as it is (no copy);
    - grayscale (H, W) or (H, W, 1): the channel repeated three times;
    - RGBA (H, W, 4): the alpha channel dropped (not composited);
    - uint16: divided by 257 (65535 -> 255);
    - float (any precision): read as 0..1 when its maximum is <= 1, else as 0..255;
      clipped to that range and rounded.

    Anything else (other dtypes or channel counts, NaN or infinite values, an image with
    no pixels) raises ValueError saying what was given.
    """
    img = np.asarray(image)
    given = f"{img.dtype} {img.shape}"
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) / (H, W, 1) "
                         f"grayscale, got {given}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image is empty ({img.shape[1]}x{img.shape[0]} pixels)")
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ValueError(f"image has NaN or infinite values ({given})")
        scale = 255.0 if img.max() <= 1.0 else 1.0
        img = np.clip(np.rint(img.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, uint16 or float, got {given}; convert it "
                         f"to uint8 RGB")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


# --------------------------------------------------------------------------------------
# SavedModels are programs: their graph runs when loaded and called. PoseEstimator only
# loads one whose graph uses the operations a pose network exports to (below; what
# writers.py writes), unless the caller says it trusts the file. Saving/restoring ops are
# allowed only inside the functions the SavedModel's own saver names (every SavedModel
# carries them; loading restores variables through TensorFlow's code, not them).
_POSE_OPS = frozenset("""
    Abs Add AddN AddV2 ArgMax AvgPool BatchMatMulV2 BiasAdd Cast ConcatV2 Const Conv2D
    DepthwiseConv2dNative Equal Exp ExpandDims Fill FusedBatchNorm FusedBatchNormV3
    GatherV2 Greater GreaterEqual Identity IdentityN Less LessEqual Log LogicalAnd
    LogicalNot LogicalOr MatMul Max MaxPool Maximum Mean Min Minimum Mul Neg NoOp OnesLike
    Pack Pad PadV2 PartitionedCall Placeholder Pow Prod Range ReadVariableOp RealDiv Relu
    Relu6 Reshape ResizeBilinear ResizeNearestNeighbor Rsqrt Select SelectV2 Shape Sigmoid
    Slice Softmax Split SplitV Sqrt Square Squeeze StatefulPartitionedCall StopGradient
    StridedSlice Sub Sum Tanh Tile Transpose Unpack VarHandleOp ZerosLike
""".split())
_SAVER_OPS = _POSE_OPS | frozenset("""
    AssignVariableOp DisableCopyOnRead MergeV2Checkpoints RestoreV2 SaveV2 ShardedFilename
    StaticRegexFullMatch StringJoin
""".split())


def _called_functions(node) -> set[str]:
    names = set()
    for attr in node.attr.values():
        if attr.func.name:
            names.add(attr.func.name)
        names.update(f.name for f in attr.list.func)
    return names


def saved_model_foreign_ops(path: str | os.PathLike) -> list[str]:
    """Operations in a SavedModel's graph that this project's exports never contain
    (file I/O, Python calls, printing, datasets...): empty for our own exports."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    foreign: set[str] = set()
    for graph in proto.meta_graphs:
        functions = {f.signature.name: f for f in graph.graph_def.library.function}
        saver_nodes = {graph.saver_def.save_tensor_name.split(":")[0],
                       graph.saver_def.restore_op_name.split(":")[0]} - {""}
        saver_roots, other_roots = set(), set()
        for node in graph.graph_def.node:
            if node.op not in _POSE_OPS:
                foreign.add(node.op)
            (saver_roots if node.name in saver_nodes else other_roots).update(
                _called_functions(node))
        other_roots.update(graph.object_graph_def.concrete_functions.keys())

        def reach(roots: set[str]) -> set[str]:
            seen, todo = set(), list(roots)
            while todo:
                name = todo.pop()
                if name in seen or name not in functions:
                    continue
                seen.add(name)
                for node in functions[name].node_def:
                    todo.extend(_called_functions(node))
            return seen

        # A function the model itself calls must be pure computation, even one the
        # saver uses too; the saver's own functions may also save and restore.
        plain = reach(other_roots) | (set(functions) - reach(saver_roots))
        for name, fn in functions.items():
            allowed = _POSE_OPS if name in plain else _SAVER_OPS
            foreign.update(n.op for n in fn.node_def if n.op not in allowed)
    return sorted(foreign)


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
        # No busy-waiting between calls: ONNX Runtime's spinning threads otherwise hold the
        # cores after each call, which doubled the time of whatever ran next in the same
        # process (the demo's drawing, or another model: benchmarks/README.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    def __init__(self, path: Path, num_threads: int, trust: bool = False):
        _tf_threads(num_threads)
        import tensorflow as tf

        self._tf = tf
        if not trust:
            foreign = saved_model_foreign_ops(path)
            if foreign:
                raise ModelLoadError(
                    f"{path} is a SavedModel, which is a program, and its graph uses "
                    f"operations a pose network exported by this project never contains "
                    f"({', '.join(foreign[:8])}{', ...' if len(foreign) > 8 else ''}); "
                    f"load it only if you trust its author: trust_saved_model=True "
                    f"(--trust-saved-model on the command lines)")
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

    Which files are safe to load from strangers (docs/reliability.md): .tflite, .onnx and
    .keras (loaded in Keras safe mode, which refuses layers that carry code) are data. A
    SavedModel is a program: one whose graph uses operations outside those of a pose
    network (file I/O, Python calls...) is refused unless ``trust_saved_model=True``.
    A file that cannot be used (missing, damaged, truncated, not a model, metadata
    without the needed fields) raises ModelLoadError naming it.
    """

    def __init__(self, model_path: str | os.PathLike, backend: str | None = None,
                 num_threads: int = 2, trust_saved_model: bool = False):
        path = Path(model_path)
        if not path.exists():
            raise ModelLoadError(f"model {path} does not exist")
        self.path = path
        self.backend = canonical_backend(backend) if backend else detect_backend(path)
        self.num_threads = int(num_threads)
        meta = read_metadata(path, self.backend)
        side = sidecar_path(path)
        where = str(side) if side.is_file() else f"embedded in {path}"
        if meta is not None:
            check_metadata(meta, where)
        try:
            if self.backend == "keras":
                self._run = _Keras(path, self.num_threads, meta)
                if meta is None:
                    meta = network_metadata(path, self._run.network, self._run.model)
            elif meta is None:
                raise ModelLoadError(
                    f"{path} carries no mssh_keras metadata and {side.name} is "
                    f"missing: export it with `python export.py` (which writes both)")
            elif self.backend == "litert":
                self._run = _LiteRT(path, self.num_threads)
            elif self.backend == "onnxruntime":
                self._run = _OnnxRuntime(path, self.num_threads)
            else:
                self._run = _SavedModel(path, self.num_threads, trust_saved_model)
        except (ModelLoadError, ImportError):
            raise
        except ModelFileError as e:  # prepare_model, network_metadata: already name the file
            raise ModelLoadError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - every runtime has its own error types
            raise ModelLoadError(f"cannot load model {path} ({self.backend}): {first_line(e)} "
                                 f"({error_type(e)}); the file is damaged, truncated or "
                                 f"not a {FORMAT_NAMES[self.backend]} model: export or "
                                 f"download it again") from None
        self.metadata: dict = meta
        self.skeleton: Skeleton = skeleton_from_metadata(meta)
        try:
            self.codec: HeatmapCodec = HeatmapCodec.from_metadata(meta)
        except ValueError as e:
            raise ModelLoadError(f"metadata {where}: {e}") from None
        self.input_size: int = self.codec.input_size
        self.heatmap_size: int = self.codec.heatmap_size
        self.stride: float = self.codec.stride
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
    def crop(self, image_rgb: np.ndarray, box=None,
             rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """The network input for ``image_rgb`` (uint8 (S, S, 3)) and its image->crop matrix.

        ``image_rgb``: RGB uint8 (H, W, 3), or grayscale, RGBA, float or uint16, converted
        as ``as_rgb_uint8`` says. ``box`` (x0, y0, x1, y1) is the person's body box, padded
        like the training crops, and checked as ``geometry.check_box`` says (reversed,
        empty or non-finite boxes raise; coordinates beyond one image side past the edges
        are clipped); None letterboxes the whole image (centre of the image, side = its
        longer side).
        ``rotation`` (degrees) turns the crop about its centre (geometry.crop_matrix).
        """
        import cv2

        img = as_rgb_uint8(image_rgb)
        h, w = img.shape[:2]
        if box is None:
            center, scale = np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(h, w))
        else:
            box = geometry.check_box(box, (w, h), require_overlap=False)
            center, scale = geometry.box_to_center_scale(box, self.box_padding)
        m = geometry.crop_matrix(center, scale, self.input_size, rotation=float(rotation))
        crop = cv2.warpAffine(img, m, (self.input_size, self.input_size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return crop, m

    def predict(self, image_rgb: np.ndarray, box=None, flip_test: bool = False, *,
                rotation: float = 0.0, upright: bool = False, search=None) -> Pose:
        """Keypoints of the person in ``box`` (or in the whole image) in image pixels.

        ``flip_test`` also runs the mirrored crop and averages the heatmaps (decode.flip_back).
        Without a box the person is searched coarse to fine (mssh_keras.person_search:
        whole frame, then re-crops around the latest pass's confident joints; the
        best-scoring pass wins);
        with a box it is one pass in that box, rotated by ``rotation`` degrees.
        ``upright`` adds crops rotated so that the torso points up. ``search``: None (that
        default), False (exactly one pass, even without a box) or a
        ``person_search.SearchConfig`` choosing the stages. ``Pose.model_calls`` counts
        the passes.

        Images: see ``crop`` (grayscale, RGBA, float and uint16 are converted to uint8 RGB;
        a 0x0 image raises ValueError). Boxes (``geometry.check_box``): corners
        (x0, y0, x1, y1) in image pixels; a reversed, empty or non-finite box, or one
        wholly outside the image, raises ValueError (``search=False``, the single pass
        person_search runs for its own crops, skips only the outside test); a box may
        reach past the edges by up to the image's longer side, beyond that it is clipped.
        """
        image_rgb = as_rgb_uint8(image_rgb)
        if box is not None:
            box = geometry.check_box(box, image_rgb.shape[1::-1],
                                     require_overlap=search is not False)
        plan = person_search.resolve(search, box, upright)
        if plan is not None:
            return person_search.search(self, image_rgb, box, flip_test, plan, rotation)
        crop, m = self.crop(image_rgb, box, rotation)
        x = crop[None].astype(np.float32)
        t0 = time.perf_counter()
        if flip_test:
            both = self.heatmaps(np.concatenate([x, x[:, :, ::-1]]))
            hm = (both[0] + flip_back(both[1], self.skeleton.flip_permutation)) / 2.0
        else:
            hm = self.heatmaps(x)[0]
        model_ms = (time.perf_counter() - t0) * 1000.0
        kp, conf = self.codec.decode(hm, m)
        kp = kp.astype(np.float32)
        return Pose(keypoints=kp, confidence=conf.astype(np.float32), model_ms=model_ms,
                    crop_matrix=m, rotation=float(rotation),
                    box=None if box is None else tuple(float(v) for v in box),
                    scores=(person_search.crop_score(
                        kp, conf, m, self.input_size, self.box_padding,
                        person_search.DEFAULT_SEARCH.undersize_weight),))

    def __repr__(self) -> str:
        return (f"PoseEstimator({str(self.path)!r}, backend={self.backend!r}, "
                f"input_size={self.input_size}, joints={self.skeleton.num_joints})")
