"""Write a prepared single-output model as a SavedModel, a TFLite or an ONNX file.

Every file takes ``image`` (B, S, S, 3) float32 RGB 0..255 and returns ``heatmaps``, and
carries its metadata inside and as ``<file>.json`` (``mssh_keras.model_file``):
- SavedModel: signature ``serving_default``, the traced function and the variables only;
- TFLite: converted from that SavedModel (``mssh_keras.quantization``);
- ONNX: via tf2onnx, NHWC like the other formats, so one preprocessing serves all.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .model_file import (INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, ExportError,
                         embed_onnx_metadata, embed_tflite_metadata, write_metadata,
                         write_saved_model_metadata)
from .quantization import convert_tflite


def serving_function(model, batch_size: int):
    """A tf.function ``image`` (batch_size, S, S, 3) -> {``heatmaps``}, and its input spec."""
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
    serve, _ = serving_function(model, batch_size)
    module = tf.Module()
    module.model_variables = [v.value for v in model.variables]
    module.serve = serve
    tf.saved_model.save(module, str(path),
                        signatures={"serving_default": serve.get_concrete_function()})
    write_saved_model_metadata(path, metadata)
    return path


def write_tflite(saved_model_dir: str | os.PathLike, path: str | os.PathLike, metadata: dict,
                 quantization: str = "fp32",
                 representative: np.ndarray | None = None) -> Path:
    """The .tflite of a SavedModel at ``quantization`` (int8: calibrated on the
    ``representative`` crops), with ``metadata`` embedded and as its sidecar."""
    path = Path(path)
    data = embed_tflite_metadata(convert_tflite(saved_model_dir, quantization, representative),
                                 metadata)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    write_metadata(path, metadata)
    return path


def write_onnx(model, path: str | os.PathLike, metadata: dict, batch_size: int = 1,
               opset: int = ONNX_OPSET) -> Path:
    """ONNX (NHWC like the other formats, so one preprocessing serves all), via tf2onnx."""
    import onnx
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    path = Path(path)
    serve, spec = serving_function(model, batch_size)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ONNX conversion failed: {type(e).__name__}: {e}") from None
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ExportError(f"ONNX graph has inputs/outputs {names}, expected "
                          f"[{INPUT_NAME!r}] / [{OUTPUT_NAME!r}]")
    embed_onnx_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    write_metadata(path, metadata)
    return path
