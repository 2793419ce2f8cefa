"""Export a trained network for deployment: SavedModel, TFLite (fp32/fp16/dynamic/int8), ONNX.

``export`` runs the same steps for every format:
  1. pick the stack (early exit) and fix the input shape (``model_file.prepare_model``);
  2. write the file (``writers``: SavedModel, TFLite converted from it by
     ``quantization``, ONNX via tf2onnx);
  3. attach the metadata a runtime needs (``model_file.network_metadata``) as
     ``<file>.json`` and inside the file;
  4. verify the written file in its own runtime against Keras on the sample crops that
     ``crops`` gives (``verification``; ``mssh_keras.data.sample_crops.SampleCrops``
     makes them), and save ``<file>.verify.json``.

The names of the pieces are re-exported here for the callers that know them as export's.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from .model_file import (FORMATS, NORMALISATION, ONNX_OPSET, QUANTIZATIONS,  # noqa: F401
                         ExportError, ModelLoadError, load_network, network_metadata,
                         prepare_model, resolve_skeleton, verify_report_path)
from .paths import write_json_atomic
from .quantization import convert_tflite  # noqa: F401
from .skeleton import SKELETONS, Skeleton, get_skeleton
from .verification import (FP32_TOLERANCE, MOVED_LIMITS, MOVED_PIXELS,  # noqa: F401
                           VerificationError, file_size_mb, format_report, keras_heatmaps,
                           verify)
from .writers import write_onnx, write_saved_model, write_tflite


@dataclass(frozen=True)
class Exported:
    path: Path
    format: str
    quantization: str
    metadata: dict
    verification: dict | None


class CropSource(Protocol):
    """Where sample crops come from (``mssh_keras.data.sample_crops.SampleCrops``): each
    method returns (n, S, S, 3) float32 person crops and a line saying what they are."""

    def verification(self, skeleton: Skeleton, input_size: int,
                     n: int) -> tuple[np.ndarray, str]: ...

    def calibration(self, skeleton: Skeleton, input_size: int,
                    n: int) -> tuple[np.ndarray, str]: ...


def output_names(base: str, fmt: str, quantization: str = "fp32") -> str:
    """File names: base.tflite (fp32), base_fp16.tflite..., base.onnx, base_saved_model/."""
    if fmt == "savedmodel":
        return f"{base}_saved_model"
    if fmt == "onnx":
        return f"{base}.onnx"
    return f"{base}.tflite" if quantization == "fp32" else f"{base}_{quantization}.tflite"


def export(network, formats: Iterable[str], output_dir, *, crops: CropSource,
           source=None, quantizations: Sequence[str] = ("fp32",),
           stack: int | None = None, batch_size: int = 1, input_size: int | None = None,
           skeleton: str | None = None, preset: str | None = None, base_name: str = "model",
           calibration_samples: int = 100, verify_samples: int = 32, num_threads: int = 2,
           limits: dict[str, float] | None = None, check: bool = True,
           echo=print) -> list[Exported]:
    """Write and verify the requested formats; returns one Exported per file.

    ``network`` is a loaded Keras network (see ``load_network``); ``source`` its file (for
    run_config.json and the metadata). ``crops`` gives the verification crops (and the
    int8 calibration crops). Quantizations other than fp32 apply to TFLite only. With
    ``check``, a file failing verification raises VerificationError after every file was
    written and reported.
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
    # The crops only feed both models the same images: a joint set the code does not know
    # (a COCO-format run's) is checked on LSP-14 crops (synthetic people by default).
    sk = get_skeleton(meta["skeleton"]["name"]) if meta["skeleton"]["name"] in SKELETONS \
        else get_skeleton("lsp14")
    samples, sample_source = crops.verification(sk, s, verify_samples)
    ref = keras_heatmaps(model, samples)
    calib = calib_source = None
    if "tflite" in formats and "int8" in quantizations:
        calib, calib_source = crops.calibration(sk, s, calibration_samples)

    results: list[Exported] = []

    def finish(path: Path, fmt: str, q: str, m: dict) -> None:
        report = verify(path, model, samples, q, num_threads, reference_heatmaps=ref,
                        sample_source=sample_source, limits=limits)
        report["size_mb"] = round(file_size_mb(path), 3)
        write_json_atomic(verify_report_path(path), report)
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
                    m["calibration"] = calib_source
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
