"""SavedModel -> TFLite bytes at fp32, fp16, dynamic range or full int8; builtin ops only.

TFLite is converted *from the SavedModel* (``TFLiteConverter.from_saved_model``; never the
concrete-function converter, which yields NaN models with Keras 3). int8 calibrates its
activation ranges on representative crops given by the caller. A model needing Flex
(Select TF) or custom ops is refused: LiteRT on a phone ships builtin kernels only, so such
a file would convert fine here and fail on the device.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .model_file import QUANTIZATIONS, SAVED_MODEL_METADATA, ExportError

_NOT_BUILTIN_MARKERS = ("ERROR_NEEDS_FLEX_OPS", "ERROR_NEEDS_CUSTOM_OPS", "Select TensorFlow op",
                        "neither a custom op nor a flex op", "Flex ops:", "Custom ops:")


def custom_ops(tflite_bytes: bytes) -> list[str]:
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


def _signature_batch(saved_model_dir) -> int:
    meta = json.loads((Path(saved_model_dir) / SAVED_MODEL_METADATA).read_text())
    return int(meta["input"]["shape"][0] or 1)


def representative_batches(representative: np.ndarray, batch: int):
    """The converter's representative dataset: ``representative`` crops (N, S, S, 3) in
    batches of the signature's fixed ``batch`` (a last, partial batch is left out)."""
    data = np.asarray(representative, np.float32)

    def gen():
        for i in range(0, len(data) - batch + 1, batch):
            yield [data[i:i + batch]]

    return gen


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
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_batches(
            representative, _signature_batch(saved_model_dir))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
    try:
        out = conv.convert()
    except Exception as e:  # noqa: BLE001 - ConverterError and friends
        raise _converter_error(e, str(saved_model_dir)) from None
    found = custom_ops(out)
    if found:
        raise ExportError(f"{saved_model_dir}: the TFLite model uses non-builtin ops {found}; "
                          f"Flex / custom ops are refused")
    return out
