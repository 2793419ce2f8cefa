"""What a model file is: the contract between the exporter and every runtime.

- **Names**: the formats and quantizations, the serving input ``image`` and output
  ``heatmaps``, where metadata sits (``<file>.json`` next to the file, and inside it:
  TFLite metadata table / ONNX ``metadata_props`` under ``mssh_keras``, a SavedModel's
  ``assets.extra/mssh_keras.json``), the verification report ``<file>.verify.json``.
- **Metadata**: ``network_metadata`` writes what a runtime needs besides the weights
  (joints, input size, stride, normalisation...); ``read_metadata`` / ``check_metadata``
  read and check it; ``embed_tflite_metadata`` / ``embed_onnx_metadata`` /
  ``write_metadata`` put it into and next to files.
- **Backends**: which runtime a path needs (``detect_backend``).
- **Keras files**: ``load_network`` (.keras, .weights.h5 + its config) and
  ``prepare_model`` (one stack's output, at an input size).

Pure standard library and numpy at import: TensorFlow, Keras, LiteRT and ONNX are imported
inside the functions that need them, so the LiteRT and ONNX Runtime paths of
``mssh_keras.runtime`` never import TensorFlow.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np

from . import geometry
from .codec import HeatmapCodec
from .paths import portable_path, write_json_atomic
from .skeleton import SKELETONS, Skeleton, get_skeleton, skeleton_for_joints

# --------------------------------------------------------------------------------------
# Names.
FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")
INPUT_NAME, OUTPUT_NAME = "image", "heatmaps"
METADATA_KEY = "mssh_keras"           # TFLite metadata name / ONNX metadata_props key
SAVED_MODEL_METADATA = "assets.extra/mssh_keras.json"  # inside a SavedModel folder
NORMALISATION = "RGB float32 0..255, normalised inside the model"
METADATA_VERSION = 1
# ONNX opset 17: tf2onnx 1.17 emits opsets up to 18 and onnxruntime 1.32 runs up to 23;
# 17 is one below tf2onnx's newest (its best-tested mappings) and is still accepted by
# older deployed runtimes (onnxruntime >= 1.13, ONNX >= 1.12). The network's ops (Conv,
# Resize, AveragePool, MaxPool, Add, Concat, Relu, Mul) need nothing newer.
ONNX_OPSET = 17

# Canonical backend names and the spellings accepted for them (the demo uses the second).
BACKENDS = ("litert", "onnxruntime", "tf", "keras")
_BACKEND_ALIASES = {"litert": "litert", "tflite": "litert", "onnxruntime": "onnxruntime",
                    "onnx": "onnxruntime", "ort": "onnxruntime", "tf": "tf",
                    "savedmodel": "tf", "saved_model": "tf", "tensorflow": "tf",
                    "keras": "keras"}
FORMAT_NAMES = {"litert": "TFLite", "onnxruntime": "ONNX", "tf": "SavedModel",
                "keras": "Keras"}

# The fields a runtime reads; anything else in the metadata is informational.
REQUIRED_METADATA = ("input_size", "heatmap_size", "stride", "skeleton")
REQUIRED_SKELETON = ("name", "joints", "flip_pairs", "limbs")


class ModelFileError(RuntimeError):
    """A model file that cannot be read, used or written; the message names the file."""


class ModelLoadError(ModelFileError):
    """A model file that cannot be used, with a message naming the file and the problem."""


class ExportError(ModelFileError):
    """An export that cannot be done, with a message naming the model and the problem."""


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.tflite.json`` (a SavedModel folder ``x`` -> ``x.json``)."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def verify_report_path(model_path: str | os.PathLike) -> Path:
    """``model.tflite`` -> ``model.tflite.verify.json`` (the verification report)."""
    p = Path(model_path)
    return p.with_name(p.name + ".verify.json")


def canonical_backend(backend: str) -> str:
    """``backend`` or one of its aliases (tflite, onnx, savedmodel...) -> a BACKENDS name."""
    try:
        return _BACKEND_ALIASES[backend.lower()]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}") from None


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


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (converter and runtime errors run long)."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def error_type(error: BaseException) -> str:
    """``ValueError``, or ``module.Name`` for a library's own error types."""
    t = type(error)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


# --------------------------------------------------------------------------------------
# Reading metadata (JSON sidecar first, then what the file embeds): no TensorFlow needed.
def tflite_metadata(path: Path) -> dict | None:
    """The JSON stored under METADATA_KEY in a .tflite file's metadata table, if any."""
    from ai_edge_litert import schema_py_generated as fb  # flatbuffers only, no TF

    buf = Path(path).read_bytes()
    model = fb.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is not None and entry.Name().decode() == METADATA_KEY:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def onnx_metadata(path: Path) -> dict | None:
    """The JSON stored under METADATA_KEY in an .onnx file's metadata_props, if any."""
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
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"metadata {side} is not valid JSON: {e}; delete it (the "
                                 f"copy inside the model file is used then) or re-export "
                                 f"the model") from None
    backend = canonical_backend(backend) if backend else detect_backend(p)
    try:
        if backend == "litert":
            return tflite_metadata(p)
        if backend == "onnxruntime":
            return onnx_metadata(p)
        if backend == "tf" and (p / SAVED_MODEL_METADATA).is_file():
            return json.loads((p / SAVED_MODEL_METADATA).read_text())
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - flatbuffers/protobuf/struct errors of bad files
        raise ModelLoadError(f"cannot load model {p}: {first_line(e)} ({error_type(e)}); the "
                             f"file is damaged, truncated or not a {FORMAT_NAMES[backend]} "
                             f"model: export or download it again") from None
    return None


def check_metadata(meta, where: str) -> dict:
    """``meta`` if it has what a runtime needs, else ModelLoadError naming ``where``."""
    if not isinstance(meta, dict):
        raise ModelLoadError(f"metadata {where} is not a JSON object: re-export the model "
                             f"with `python export.py`, which writes it")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    sk = meta.get("skeleton")
    if isinstance(sk, dict):
        missing += [f"skeleton.{k}" for k in REQUIRED_SKELETON if k not in sk]
    elif "skeleton" in meta:
        missing.append("skeleton (an object)")
    if missing:
        raise ModelLoadError(f"metadata {where} lacks {', '.join(missing)}: it is not an "
                             f"mssh_keras export's metadata; re-export the model with "
                             f"`python export.py`, which writes it")
    return meta


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


# --------------------------------------------------------------------------------------
# Writing metadata.
def write_metadata(path: str | os.PathLike, metadata: dict) -> Path:
    """The sidecar ``<file>.json`` of the model file (or SavedModel folder) ``path``."""
    return write_json_atomic(sidecar_path(path), metadata)


def write_saved_model_metadata(saved_model_dir: str | os.PathLike, metadata: dict) -> None:
    """``metadata`` inside a SavedModel folder (assets.extra) and as its sidecar."""
    inside = Path(saved_model_dir) / SAVED_MODEL_METADATA
    inside.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(inside, metadata)
    write_metadata(saved_model_dir, metadata)


def embed_tflite_metadata(tflite_bytes: bytes, metadata: dict) -> bytes:
    """Store ``metadata`` as JSON under METADATA_KEY in the model's metadata table.

    Embedding again (ship_model re-embeds after calibration) rewrites the entry's own
    buffer, so a file never carries stale copies.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name in (METADATA_KEY, METADATA_KEY.encode())),
                 None)
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata).encode("utf-8"), np.uint8)
    if entry is None:
        model.buffers.append(buf)
        entry = fb.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    else:
        model.buffers[entry.buffer] = buf
    builder = flatbuffers.Builder(len(tflite_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def embed_onnx_metadata(proto, metadata: dict) -> None:
    """Put ``metadata`` as JSON under METADATA_KEY in an ONNX ModelProto's metadata_props
    (replacing any there) and describe the model in its doc string."""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.doc_string = (f"mssh-keras {metadata['preset']} pose heatmaps; input {INPUT_NAME} "
                        f"{NORMALISATION}; metadata JSON in metadata_props[{METADATA_KEY!r}]")


# --------------------------------------------------------------------------------------
# Metadata of a network.
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


def run_config(model_path: Path) -> dict | None:
    """The training run's run_config.json next to a model file (or, for a checkpoint's
    ``ckpt/epoch_NNNN/network.weights.h5``, in its run folder), if readable."""
    p = Path(model_path)
    f = p.parent / "run_config.json"
    if not f.is_file() and p.parent.parent.name == "ckpt":
        f = p.parents[2] / "run_config.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def resolve_skeleton(num_joints: int, name: str | None = None,
                     source: Path | None = None) -> Skeleton:
    """The joint set: given by name, or the only known one with ``num_joints`` joints."""
    if name:
        skeleton = get_skeleton(name)
    else:
        try:
            skeleton = skeleton_for_joints(num_joints)
        except ValueError:
            raise ExportError(f"{source or 'the model'} has {num_joints} joints and no "
                              f"run_config.json; pass --skeleton (known: {sorted(SKELETONS)})"
                              ) from None
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
    run = run_config(src) if src is not None else None
    run = run or {}
    num_joints = int(model.outputs[0].shape[-1])
    if isinstance(skeleton, Skeleton):
        sk = skeleton
    elif not skeleton and run.get("skeleton") not in SKELETONS \
            and isinstance(run.get("skeleton_definition"), dict) \
            and len(run["skeleton_definition"].get("joints", ())) == num_joints:
        # A joint set the code does not know (a COCO-format run): the run recorded it whole.
        sk = skeleton_from_metadata({"skeleton": run["skeleton_definition"]})
    else:
        sk = resolve_skeleton(num_joints, skeleton or run.get("skeleton"), src)
    from .config import PRESETS
    guess = network.name.replace("_", "-")
    preset = preset or run.get("options", {}).get("preset") or (
        guess if guess in PRESETS else "custom")
    input_size = int(model.inputs[0].shape[1])
    hm = int(model.outputs[0].shape[1])
    heatmaps = HeatmapCodec(input_size, (hm,)).to_metadata()
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
        "input_size": heatmaps["input_size"], "heatmap_size": heatmaps["heatmap_size"],
        "stride": heatmaps["stride"],
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
        "decode": heatmaps["decode"],
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


# --------------------------------------------------------------------------------------
# Keras files: loading and preparing the network (Keras imported inside).
def load_network(path: str | os.PathLike, meta: dict | None = None):
    """A .keras file, or .weights.h5 plus the architecture from ``meta['model_config']`` or
    the training run's run_config.json next to it. ModelLoadError names a file that
    cannot be loaded."""
    import keras

    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model {p} does not exist")
    if p.is_dir():
        raise ModelLoadError(f"{p} is a folder: expected a .keras model or .weights.h5 "
                             f"weights (a SavedModel cannot be exported again)")
    if p.name.endswith(".keras"):
        if not zipfile.is_zipfile(p):  # Keras would say "File not found" for these
            raise ModelLoadError(f"{p} is not a Keras model: a .keras file is a zip archive "
                                 f"and this one is not, or is cut off "
                                 f"({_describe_content(p)}); re-save or download it again")
        try:
            # safe_mode: a .keras file is data; refuse the Lambda layers that would run code.
            return keras.saving.load_model(str(p), compile=False, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - report any load failure with the file name
            raise ModelLoadError(f"cannot load {p}: {type(e).__name__}: {e}") from None
    if p.name.endswith(".weights.h5"):
        from .config import ModelConfig
        from .model import build_network

        cfg = (meta or {}).get("model_config") or (run_config(p) or {}).get("model")
        if not cfg:
            raise ModelLoadError(f"{p} holds weights only and neither {sidecar_path(p).name} "
                                 f"(model_config) nor run_config.json says which network "
                                 f"they fit")
        if not _is_hdf5(p):
            raise ModelLoadError(f"{p} is not an HDF5 weights file ({_describe_content(p)}); "
                                 f"re-save or download it again")
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        network = build_network(ModelConfig(**cfg))
        try:
            network.load_weights(str(p))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"cannot load weights {p} into {cfg}: {e}") from None
        return network
    raise ModelLoadError(f"{p}: expected a .keras model or .weights.h5 weights")


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
    ExportError when the stack or the size does not fit the network.
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
