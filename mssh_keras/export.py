"""Export a trained network for deployment: SavedModel, TFLite (fp32/fp16/dynamic/int8), ONNX.

Every format goes through the same steps, written once here:
  1. pick the stack (early exit, ``model.inference_model``) and fix the input shape;
  2. write the file: a SavedModel whose ``serving_default`` signature takes ``image``
     (B, S, S, 3) float32 RGB 0..255 and returns ``heatmaps``; TFLite converted *from that
     SavedModel* (``TFLiteConverter.from_saved_model``; never the concrete-function converter,
     which yields NaN models with Keras 3) with TFLite builtin ops only; ONNX via tf2onnx;
  3. attach the metadata a runtime needs (joints, flip pairs, limbs, input size, stride,
     normalisation...) as ``<file>.json`` and inside the file (TFLite metadata table, ONNX
     metadata_props, SavedModel ``assets.extra``);
  4. verify the written file in its own runtime (``mssh_keras.runtime``: LiteRT, ONNX
     Runtime, TF) against Keras on real-looking crops, and save ``<file>.verify.json``.

Why a model needing Flex (Select TF) ops is refused: LiteRT on a phone ships builtin
kernels only, so such a file would convert fine here and fail on the device.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import geometry
from .decode import decode_heatmaps
from .paths import portable_path
from .runtime import (INPUT_NAME, METADATA_KEY, OUTPUT_NAME, SAVED_MODEL_METADATA,
                      PoseEstimator, sidecar_path)
from .skeleton import SKELETONS, Skeleton, get_skeleton

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
# ONNX opset 17: tf2onnx 1.17 emits opsets up to 18 and onnxruntime 1.32 runs up to 23;
# 17 is one below tf2onnx's newest (its best-tested mappings) and is still accepted by
# older deployed runtimes (onnxruntime >= 1.13, ONNX >= 1.12). The network's ops (Conv,
# Resize, AveragePool, MaxPool, Add, Concat, Relu, Mul) need nothing newer.
ONNX_OPSET = 17
NORMALISATION = "RGB float32 0..255, normalised inside the model"
METADATA_VERSION = 1

# Verification. fp32 files must reproduce Keras up to float reassociation: max |diff| <=
# FP32_TOLERANCE x max(1, peak |heatmap|) (trained heatmaps peak at ~1, so this is 1e-4).
FP32_TOLERANCE = 1e-4
# Quantized files: the share of joints whose decoded position moves by more than one
# heatmap pixel (a genuinely different peak: a one-pixel argmax change with the quarter-
# pixel shift moves at most 1 px) must stay at or below these. Measured on hg-lite trained
# 9 epochs x 50 steps on LSPET (val PCK 19 %), 128 LSPET val crops, split by the joint's
# reference peak (training target amplitude 1):
#            peak <0.05   0.05-0.1   0.1-0.2   >=0.2    all
#   fp16       0.1 %       0.1 %      0.0 %     0.0 %   0.1 %
#   dynamic    4.4 %       1.7 %      0.8 %     0.0 %   2.6 %
#   int8      34.4 %      16.8 %      7.7 %     1.3 %  21.9 %
# Only flat, ambiguous maps move; the same network at 4 epochs (peaks ~0.03) moved 2.1 /
# 18 / 97 %, and the fp32 file judged against a random hg-lite (a broken export) 99 %.
# So: fp16 1 % (10x the worst bin), dynamic 5 % (above the flattest bin), int8 15 % (a
# converged model, peaks >= 0.2, is near 1 %; an undertrained one fails, which is worth
# knowing before shipping int8). ``compare_heatmaps`` also reports the confident share.
MOVED_LIMITS = {"fp32": 0.0, "fp16": 0.01, "dynamic": 0.05, "int8": 0.15}
MOVED_PIXELS = 1.0
CONFIDENT_PEAK = 0.2


class ExportError(RuntimeError):
    """An export that cannot be done, with a message naming the model and the problem."""


class VerificationError(ExportError):
    """A written file whose outputs differ from Keras beyond the tolerance."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    quantization: str
    metadata: dict
    verification: dict | None


# --------------------------------------------------------------------------------------
# Loading and preparing the network.
def load_network(path: str | os.PathLike, meta: dict | None = None):
    """A .keras file, or .weights.h5 plus the architecture from ``meta['model_config']`` or
    the training run's run_config.json next to it."""
    import keras

    p = Path(path)
    if not p.exists():
        raise ExportError(f"model {p} does not exist")
    if p.is_dir():
        raise ExportError(f"{p} is a folder: expected a .keras model or .weights.h5 weights "
                          f"(a SavedModel cannot be exported again)")
    if p.name.endswith(".keras"):
        if not zipfile.is_zipfile(p):  # Keras would say "File not found" for these
            raise ExportError(f"{p} is not a Keras model: a .keras file is a zip archive and "
                              f"this one is not, or is cut off ({_describe_content(p)}); "
                              f"re-save or download it again")
        try:
            # safe_mode: a .keras file is data; refuse the Lambda layers that would run code.
            return keras.saving.load_model(str(p), compile=False, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - report any load failure with the file name
            raise ExportError(f"cannot load {p}: {type(e).__name__}: {e}") from None
    if p.name.endswith(".weights.h5"):
        from .config import ModelConfig
        from .model import build_network

        cfg = (meta or {}).get("model_config") or (_run_config(p) or {}).get("model")
        if not cfg:
            raise ExportError(f"{p} holds weights only and neither {sidecar_path(p).name} "
                              f"(model_config) nor run_config.json says which network they fit")
        if not _is_hdf5(p):
            raise ExportError(f"{p} is not an HDF5 weights file ({_describe_content(p)}); "
                              f"re-save or download it again")
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        network = build_network(ModelConfig(**cfg))
        try:
            network.load_weights(str(p))
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"cannot load weights {p} into {cfg}: {e}") from None
        return network
    raise ExportError(f"{p}: expected a .keras model or .weights.h5 weights")


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def _describe_content(path: Path) -> str:
    """A few words on what a file really holds, for error messages."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty"
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
        kind = "it is a text file"
    except UnicodeDecodeError:
        kind = "unknown binary content"
    return f"{kind}, {size} bytes"


def _run_config(model_path: Path) -> dict | None:
    f = model_path.parent / "run_config.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _min_spatial(model) -> int:
    sizes = [o.shape[1] for layer in model.layers for o in _outputs(layer)
             if len(o.shape) == 4 and o.shape[1]]
    return min(sizes)


def _outputs(layer) -> list:
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return []
    return list(out) if isinstance(out, (list, tuple)) else [out]


def prepare_model(network, stack: int | None = None, input_size: int | None = None):
    """Single-output model image -> ``heatmaps`` of one stack, at ``input_size`` if given.

    A network that already has one output is used as it is (``stack`` must then be None
    or 1). Changing the input size rebuilds the same layers on a new input and copies the
    weights; every stack keeps its stride, so sizes must divide like the original's.
    """
    import keras

    from .model import inference_model

    if len(network.outputs) == 1:
        if stack not in (None, 1):
            raise ExportError(f"{network.name} has a single output; cannot pick stack {stack}")
        model = network
    else:
        try:
            model = inference_model(network, stack)
        except ValueError as e:
            raise ExportError(str(e)) from None
    size = model.inputs[0].shape[1]
    if input_size is None or input_size == size:
        return model
    factor = size // _min_spatial(model)
    if input_size <= 0 or input_size % factor:
        raise ExportError(f"input size {input_size} does not fit {model.name}: it pools "
                          f"{size} px down to {size // factor}, so the size must be a "
                          f"multiple of {factor}")
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, input_size, input_size, 3]
    try:
        resized = keras.Model.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"cannot rebuild {model.name} at input size {input_size}: {e}") from None
    resized.set_weights(model.get_weights())
    return resized


# --------------------------------------------------------------------------------------
# Metadata.
def package_version() -> str:
    try:
        return importlib.metadata.version("mssh-keras")
    except importlib.metadata.PackageNotFoundError:
        import mssh_keras
        return getattr(mssh_keras, "__version__", "0.0.0+source")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def resolve_skeleton(num_joints: int, name: str | None = None,
                     source: Path | None = None) -> Skeleton:
    """The joint set: given by name, or the only known one with ``num_joints`` joints."""
    if name:
        skeleton = get_skeleton(name)
    else:
        found = [s for s in SKELETONS.values() if s.num_joints == num_joints]
        if len(found) != 1:
            raise ExportError(f"{source or 'the model'} has {num_joints} joints and no "
                              f"run_config.json; pass --skeleton (known: {sorted(SKELETONS)})")
        skeleton = found[0]
    if skeleton.num_joints != num_joints:
        raise ExportError(f"skeleton {skeleton.name} has {skeleton.num_joints} joints but the "
                          f"model predicts {num_joints}")
    return skeleton


def network_metadata(source: str | os.PathLike | None, network, model, *,
                     skeleton: str | Skeleton | None = None, preset: str | None = None,
                     stack: int | None = None, fmt: str = "keras",
                     quantization: str = "fp32", batch_size: int | None = None) -> dict:
    """Everything a runtime needs besides the weights, as plain JSON types.

    ``network`` is the full (multi-stack) network, ``model`` the prepared single-output
    one. Skeleton and preset come from the arguments, else from the training run's
    run_config.json next to ``source``, else from the joint count / network name.
    """
    src = Path(source) if source is not None else None
    run = _run_config(src) if src is not None else None
    run = run or {}
    num_joints = int(model.outputs[0].shape[-1])
    if isinstance(skeleton, Skeleton):
        sk = skeleton
    else:
        sk = resolve_skeleton(num_joints, skeleton or run.get("skeleton"), src)
    from .config import PRESETS
    guess = network.name.replace("_", "-")
    preset = preset or run.get("options", {}).get("preset") or (
        guess if guess in PRESETS else "custom")
    input_size = int(model.inputs[0].shape[1])
    hm = int(model.outputs[0].shape[1])
    num_stacks = len(network.outputs)
    meta = {
        "metadata_version": METADATA_VERSION,
        "package": "mssh-keras", "package_version": package_version(),
        "git_commit": _git_commit(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        # Relative to the repository (never the build machine's absolute path).
        "source_model": portable_path(src),
        "preset": preset, "model_name": network.name,
        "format": fmt, "quantization": quantization,
        "stack": stack if stack is not None else num_stacks, "num_stacks": num_stacks,
        "input_size": input_size, "heatmap_size": hm, "stride": input_size / hm,
        "num_joints": num_joints,
        "skeleton": {**sk.to_dict(), "flip_permutation": sk.flip_permutation},
        "input": {"name": INPUT_NAME, "shape": [batch_size, input_size, input_size, 3],
                  "dtype": "float32", "layout": "NHWC", "normalisation": NORMALISATION},
        "output": {"name": OUTPUT_NAME, "shape": [batch_size, hm, hm, num_joints],
                   "dtype": "float32", "layout": "NHWC (heatmap rows, cols, joints)"},
        "crop": {"padding": geometry.JOINT_BOX_PADDING,
                 "convention": "square crop of side max(box w, h) x padding around the box "
                               "centre, resized to input_size with bilinear interpolation and "
                               "zero borders; pixel centres at integer coordinates "
                               "(mssh_keras.geometry.crop_matrix)",
                 "no_box": "whole image letterboxed: centre of the image, side = longer side"},
        "decode": "per-joint argmax + quarter-pixel shift toward the higher neighbour; heatmap "
                  "pixel u -> input pixel u*stride + (stride-1)/2 (mssh_keras.decode)",
    }
    if "model" in run:
        meta["model_config"] = run["model"]
    elif preset in PRESETS:
        cfg = dataclasses.asdict(PRESETS[preset].model)
        if cfg["input_size"] == input_size and cfg["num_joints"] == num_joints:
            meta["model_config"] = cfg
    if fmt == "onnx":
        meta["onnx_opset"] = ONNX_OPSET
    return meta


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Writers.
def _serving_function(model, batch_size: int):
    import tensorflow as tf

    size = int(model.inputs[0].shape[1])
    spec = tf.TensorSpec((batch_size, size, size, 3), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image):
        return {OUTPUT_NAME: model(image, training=False)}

    return serve, spec


def write_saved_model(model, path: str | os.PathLike, metadata: dict,
                      batch_size: int = 1) -> Path:
    """SavedModel with signature ``serving_default``: image -> heatmaps (inference mode).

    Only the variables and the traced function are saved (not the Keras objects): loading
    needs TensorFlow alone, and saving/loading is ~2x faster than a Keras export archive.
    """
    import tensorflow as tf

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    serve, _ = _serving_function(model, batch_size)
    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": serve.get_concrete_function()})
    (path / SAVED_MODEL_METADATA).parent.mkdir(parents=True, exist_ok=True)
    _write_json(path / SAVED_MODEL_METADATA, metadata)
    _write_json(sidecar_path(path), metadata)
    return path


def _custom_ops(tflite_bytes: bytes) -> list[str]:
    """Names of non-builtin (custom / Flex) operators in a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAs(tflite_bytes, 0)
    found = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == fb.BuiltinOperator.CUSTOM:
            found.append((oc.CustomCode() or b"?").decode())
    return found


def embed_tflite_metadata(tflite_bytes: bytes, metadata: dict) -> bytes:
    """Add ``metadata`` as JSON under METADATA_KEY in the model's metadata table."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()
                      and m.name != METADATA_KEY]
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(tflite_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_NOT_BUILTIN_MARKERS = ("ERROR_NEEDS_FLEX_OPS", "ERROR_NEEDS_CUSTOM_OPS", "Select TensorFlow op",
                        "neither a custom op nor a flex op", "Flex ops:", "Custom ops:")


def _converter_error(e: Exception, source: str) -> ExportError:
    msg = str(e)
    if any(m in msg for m in _NOT_BUILTIN_MARKERS):
        ops = sorted({op.strip() for line in msg.splitlines()
                      for key in ("Flex ops:", "Custom ops:") if line.strip().startswith(key)
                      for op in line.split(":", 1)[1].split(",") if op.strip()})
        return ExportError(f"{source} needs TensorFlow ops without a TFLite builtin kernel "
                           f"({', '.join(ops) or 'see the converter log'}); Flex / Select-TF "
                           f"and custom ops are refused, because LiteRT on a phone ships "
                           f"builtin kernels only")
    return ExportError(f"TFLite conversion of {source} failed: {type(e).__name__}: "
                       f"{msg[-1500:]}")


def convert_tflite(saved_model_dir: str | os.PathLike, quantization: str = "fp32",
                   representative: np.ndarray | None = None) -> bytes:
    """SavedModel -> .tflite bytes, TFLite builtin ops only.

    fp16: float16 weights (half the size, computed in fp32 on CPU). dynamic: int8 weights,
    activations quantized on the fly. int8: weights and activations int8, ranges calibrated
    on ``representative`` crops (B, S, S, 3); input and output stay float32 so every
    variant is a drop-in replacement.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r}; use one of {QUANTIZATIONS}")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    conv.allow_custom_ops = False
    if quantization == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        if representative is None or len(representative) == 0:
            raise ExportError("int8 quantization needs representative crops for calibration")
        batch = _signature_batch(saved_model_dir)
        data = np.asarray(representative, np.float32)

        def gen():
            for i in range(0, len(data) - batch + 1, batch):
                yield [data[i:i + batch]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    try:
        out = conv.convert()
    except Exception as e:  # noqa: BLE001 - ConverterError and friends
        raise _converter_error(e, str(saved_model_dir)) from None
    custom = _custom_ops(out)
    if custom:
        raise ExportError(f"{saved_model_dir}: the TFLite model uses non-builtin ops {custom}; "
                          f"Flex / custom ops are refused")
    return out


def _signature_batch(saved_model_dir) -> int:
    meta = json.loads((Path(saved_model_dir) / SAVED_MODEL_METADATA).read_text())
    return int(meta["input"]["shape"][0] or 1)


def write_tflite(saved_model_dir: str | os.PathLike, path: str | os.PathLike, metadata: dict,
                 quantization: str = "fp32",
                 representative: np.ndarray | None = None) -> Path:
    path = Path(path)
    data = embed_tflite_metadata(convert_tflite(saved_model_dir, quantization, representative),
                                 metadata)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    _write_json(sidecar_path(path), metadata)
    return path


def write_onnx(model, path: str | os.PathLike, metadata: dict, batch_size: int = 1,
               opset: int = ONNX_OPSET) -> Path:
    """ONNX (NHWC like the other formats, so one preprocessing serves all), via tf2onnx."""
    import onnx
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    path = Path(path)
    serve, spec = _serving_function(model, batch_size)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ONNX conversion failed: {type(e).__name__}: {e}") from None
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ExportError(f"ONNX graph has inputs/outputs {names}, expected "
                          f"[{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]")
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.doc_string = (f"mssh-keras {metadata['preset']} pose heatmaps; input {INPUT_NAME} "
                        f"{NORMALISATION}; metadata JSON in metadata_props[{METADATA_KEY!r}]")
    onnx.checker.check_model(proto)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    _write_json(sidecar_path(path), metadata)
    return path


# --------------------------------------------------------------------------------------
# Sample crops (calibration and verification).
def sample_crops(skeleton: Skeleton, input_size: int, n: int, source: str = "synthetic",
                 split: str = "train", seed: int = 0, data_dir: str | None = None,
                 manual_dir: str | None = None) -> np.ndarray:
    """(n, S, S, 3) float32 person crops made the way the runtime makes them.

    ``source`` "synthetic" renders people (offline, deterministic); a dataset name
    (lsp, lspet, mpii...) reads its prepared TFDS split through the evaluation pipeline.
    """
    if n <= 0:
        raise ExportError(f"need at least one sample crop, got n={n}")
    if source == "synthetic":
        import cv2

        from .data.synthetic import SyntheticPose

        synth = SyntheticPose(skeleton.name, size=input_size,
                              num_train=n if split == "train" else 0,
                              num_val=n if split != "train" else 0, seed=seed)
        split = "train" if split == "train" else "val"
        out = np.empty((n, input_size, input_size, 3), np.float32)
        for i in range(n):
            ex = synth.example(split, i)
            m = geometry.crop_matrix(ex["center"], float(ex["scale"]), input_size)
            out[i] = cv2.warpAffine(ex["image"], m, (input_size, input_size),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out
    from .data import datasets
    from .data.pipeline import eval_pipeline

    try:
        ds = datasets.load(source, split, data_dir, manual_dir)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"cannot read {source}/{split} for sample crops: {e}") from None
    images = [img for img, _ in eval_pipeline(ds.take(n), skeleton, input_size, 32)
              .as_numpy_iterator()]
    if not images:
        raise ExportError(f"{source}/{split} is empty")
    return np.concatenate(images).astype(np.float32)


def _eval_split(dataset: str) -> str:
    """The held-out split of a real dataset (verification must not reuse calibration crops)."""
    from .data import datasets

    return getattr(datasets, "EVAL_SPLIT", {}).get(dataset, "val")


# --------------------------------------------------------------------------------------
# Verification.
def keras_heatmaps(model, x: np.ndarray, chunk: int = 16) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i:i + chunk], training=False))
                           for i in range(0, len(x), chunk)]).astype(np.float32)


def compare_heatmaps(got: np.ndarray, ref: np.ndarray) -> dict:
    """Heatmap and decoded-position differences between a target and the Keras reference."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    c_ref, _ = decode_heatmaps(ref)
    c_got, _ = decode_heatmaps(got)
    moved = np.linalg.norm(c_got - c_ref, axis=-1)
    # Informational: joints the reference is sure of (peak >= CONFIDENT_PEAK, a fifth of
    # the training target's amplitude). Flat maps of an undertrained model move under any
    # rounding; this share says whether the *confident* answers survive quantization.
    confident = ref.reshape(len(ref), -1, ref.shape[-1]).max(axis=1) >= CONFIDENT_PEAK
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "reference_peak": float(np.abs(ref).max()),
            "moved_share": float((moved > MOVED_PIXELS).mean()),
            "max_joint_shift_px": float(moved.max()),
            "joints_compared": int(moved.size),
            "confident_joints": int(confident.sum()),
            "moved_share_confident": (float((moved[confident] > MOVED_PIXELS).mean())
                                      if confident.any() else None)}


def verify(path: str | os.PathLike, reference, samples: np.ndarray, quantization: str,
           num_threads: int = 2, reference_heatmaps: np.ndarray | None = None,
           write: bool = True, sample_source: str = "",
           limits: dict[str, float] | None = None) -> dict:
    """Run ``path`` in its own runtime on ``samples`` and compare with Keras ``reference``.

    fp32: max |diff| <= FP32_TOLERANCE x max(1, peak). Quantized: share of joints moved by
    more than MOVED_PIXELS heatmap pixels <= MOVED_LIMITS[quantization]. The report is
    returned and saved as ``<file>.verify.json``.
    """
    path = Path(path)
    # Our own file, just written: a SavedModel needs no trust decision here.
    est = PoseEstimator(path, num_threads=num_threads, trust_saved_model=True)
    got = est.heatmaps(samples)
    ref = reference_heatmaps if reference_heatmaps is not None else \
        keras_heatmaps(reference, samples)
    if got.shape != ref.shape:
        raise VerificationError(f"{path}: output {got.shape} but Keras gives {ref.shape}",
                                {"passed": False})
    # "file": the name of its sibling (the report sits next to it): no machine paths.
    report = {"file": path.name, "backend": est.backend, "quantization": quantization,
              "samples": int(len(samples)), "sample_source": sample_source,
              **compare_heatmaps(got, ref)}
    if quantization == "fp32":
        limit = FP32_TOLERANCE * max(1.0, report["reference_peak"])
        report["criterion"] = f"max_abs_diff <= {limit:.3g} (1e-4 x max(1, peak))"
        report["passed"] = bool(report["max_abs_diff"] <= limit)
    else:
        limit = (limits or MOVED_LIMITS).get(quantization, MOVED_LIMITS[quantization])
        report["criterion"] = (f"moved_share (joints shifted > {MOVED_PIXELS:g} heatmap px) "
                               f"<= {limit:g}")
        report["passed"] = bool(report["moved_share"] <= limit)
    if write:
        _write_json(path.with_name(path.name + ".verify.json"), report)
    return report


def file_size_mb(path: str | os.PathLike) -> float:
    """Size of a file, or of everything in a folder (SavedModel), in MB (1e6 bytes)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6
    return p.stat().st_size / 1e6


def format_report(report: dict) -> str:
    mark = "ok  " if report["passed"] else "FAIL"
    return (f"[{mark}] {Path(report['file']).name:<32s} {report['backend']:<11s} "
            f"{report['quantization']:<7s} max|diff| {report['max_abs_diff']:.2e}  "
            f"moved>{MOVED_PIXELS:g}px {100 * report['moved_share']:5.1f} %  "
            f"({report['criterion']})")


# --------------------------------------------------------------------------------------
# Everything at once.
def output_names(base: str, fmt: str, quantization: str = "fp32") -> str:
    """File names: base.tflite (fp32), base_fp16.tflite..., base.onnx, base_saved_model/."""
    if fmt == "savedmodel":
        return f"{base}_saved_model"
    if fmt == "onnx":
        return f"{base}.onnx"
    return f"{base}.tflite" if quantization == "fp32" else f"{base}_{quantization}.tflite"


def export(network, formats: Iterable[str], output_dir: str | os.PathLike, *,
           source: str | os.PathLike | None = None, quantizations: Sequence[str] = ("fp32",),
           stack: int | None = None, batch_size: int = 1, input_size: int | None = None,
           skeleton: str | None = None, preset: str | None = None, base_name: str = "model",
           representative: str = "synthetic", calibration_samples: int = 100,
           verify_samples: int = 32, data_dir: str | None = None,
           manual_dir: str | None = None, num_threads: int = 2,
           limits: dict[str, float] | None = None, check: bool = True,
           echo=print) -> list[Exported]:
    """Write and verify the requested formats; returns one Exported per file.

    ``network`` is a loaded Keras network (see ``load_network``); ``source`` its file (for
    run_config.json and the metadata). Quantizations other than fp32 apply to TFLite only.
    With ``check``, a file failing verification raises VerificationError after every
    file was written and reported.
    """
    formats = list(dict.fromkeys(formats))
    for f in formats:
        if f not in FORMATS:
            raise ExportError(f"unknown format {f!r}; use {FORMATS} or 'all'")
    quantizations = list(dict.fromkeys(quantizations))
    for q in quantizations:
        if q not in QUANTIZATIONS:
            raise ExportError(f"unknown quantization {q!r}; use one of {QUANTIZATIONS}")
    if "tflite" not in formats and quantizations != ["fp32"]:
        raise ExportError(f"quantization {quantizations} applies to TFLite only; add "
                          f"--format tflite or use fp32")
    if batch_size < 1:
        raise ExportError(f"batch size must be >= 1 (a fixed batch), got {batch_size}")
    model = prepare_model(network, stack, input_size)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = int(model.inputs[0].shape[1])
    suffix = (f"_stack{stack}" if stack is not None and stack != len(network.outputs) else "") \
        + (f"_{s}px" if input_size is not None and input_size != network.inputs[0].shape[1]
           else "") + (f"_b{batch_size}" if batch_size != 1 else "")
    base = base_name + suffix

    def meta_for(fmt: str, q: str = "fp32") -> dict:
        return network_metadata(source, network, model, skeleton=skeleton, preset=preset,
                                stack=stack, fmt=fmt, quantization=q, batch_size=batch_size)

    meta = meta_for("savedmodel")
    sk = get_skeleton(meta["skeleton"]["name"]) if meta["skeleton"]["name"] in SKELETONS \
        else None
    if sk is None:
        raise ExportError(f"sample crops need a known skeleton, got {meta['skeleton']['name']}")
    val_split = "val" if representative == "synthetic" else _eval_split(representative)
    samples = sample_crops(sk, s, verify_samples, representative, val_split, seed=1,
                           data_dir=data_dir, manual_dir=manual_dir)
    sample_source = f"{representative}/{val_split}: {verify_samples} crops"
    ref = keras_heatmaps(model, samples)
    calib = None
    if "tflite" in formats and "int8" in quantizations:
        calib = sample_crops(sk, s, calibration_samples, representative, "train",
                             data_dir=data_dir, manual_dir=manual_dir)

    results: list[Exported] = []

    def finish(path: Path, fmt: str, q: str, m: dict) -> None:
        report = verify(path, model, samples, q, num_threads, reference_heatmaps=ref,
                        sample_source=sample_source, limits=limits)
        report["size_mb"] = round(file_size_mb(path), 3)
        _write_json(path.with_name(path.name + ".verify.json"), report)
        echo(format_report(report))
        results.append(Exported(path, fmt, q, m, report))

    tmp_dir = None
    try:
        if "savedmodel" in formats:
            sm_dir = write_saved_model(model, out / output_names(base, "savedmodel"), meta,
                                       batch_size)
            finish(sm_dir, "savedmodel", "fp32", meta)
        elif "tflite" in formats:
            tmp_dir = Path(tempfile.mkdtemp(prefix="mssh_export_"))
            sm_dir = write_saved_model(model, tmp_dir / "saved_model", meta, batch_size)
        if "tflite" in formats:
            for q in quantizations:
                m = meta_for("tflite", q)
                if q == "int8":
                    m["calibration"] = f"{representative}/train: {calibration_samples} crops"
                path = write_tflite(sm_dir, out / output_names(base, "tflite", q), m, q, calib)
                finish(path, "tflite", q, m)
        if "onnx" in formats:
            m = meta_for("onnx")
            finish(write_onnx(model, out / output_names(base, "onnx"), m, batch_size),
                   "onnx", "fp32", m)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    failed = [r for r in results if not r.verification["passed"]]
    if check and failed:
        names = ", ".join(r.path.name for r in failed)
        raise VerificationError(f"verification failed for {names} (see the .verify.json files "
                                f"next to them)", failed[0].verification)
    return results
