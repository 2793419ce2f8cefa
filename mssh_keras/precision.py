"""How a training step computes: number format (fp32 / bfloat16), XLA, CPU threads.

These choices change speed, not the model: the weights stay float32 variables under
every setting, so a checkpoint, ``best.keras``, ``final.keras`` and every export are
float32 whatever trained them. ``auto`` picks per device from the measurements in
``benchmarks/README.md``.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16")
JIT = ("auto", "on", "off")
POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}


@dataclass(frozen=True)
class ComputeSettings:
    precision: str   # fp32 | bf16
    jit: bool        # XLA-compile the train step

    def describe(self) -> str:
        return f"{self.precision}{' + XLA' if self.jit else ''}"


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16 flags).

    Without them TensorFlow emulates bfloat16: measured 5.8x *slower* than fp32 for
    hg-lite on an AVX2-only CPU (benchmarks/README.md).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(precision: str = "auto", jit: str = "auto", gpu: bool = False) -> ComputeSettings:
    """Turn the ``--precision`` / ``--jit`` flags into a concrete setting for this device.

    ``auto`` is fp32 without XLA on CPU: on the CPUs measured so far neither bfloat16
    (emulated without BF16 hardware, and 0.78-0.84x fp32 even with AVX512-BF16 units)
    nor XLA trained faster (benchmarks/README.md); bfloat16 stays one flag away for CPUs
    with AMX, to be measured there with ``benchmarks/train_speed.py``. GPU ``auto``: fp32
    with XLA, Keras's default there.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if jit not in JIT:
        raise ValueError(f"--jit must be one of {JIT}, got {jit!r}")
    if precision == "auto":
        precision = "fp32"
    use_jit = {"on": True, "off": False}.get(jit, gpu)
    return ComputeSettings(precision, use_jit)


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Build layers under ``precision``'s Keras dtype policy, then restore the old one."""
    import keras
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICY[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def use_onednn() -> None:
    """Turn on TensorFlow's oneDNN CPU kernels unless the user chose (TF_ENABLE_ONEDNN_OPTS).

    TensorFlow enables them by default only on CPUs with AVX512-VNNI/BF16 or AMX; on
    others it runs its own convolutions, which measured 1.6x slower for a 3x3 conv
    forward + backward on an AVX2 CPU (benchmarks/README.md). Must run before TensorFlow
    is imported: train.py calls it first thing.
    """
    if "tensorflow" in sys.modules:  # too late (train.py imported by a test): no effect
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def set_cpu_threads(threads: int | None) -> None:
    """Limit TensorFlow's op thread pools (before any op runs): ``threads`` per op and one
    op at a time, so two runs side by side on 2 cores do not fight over both."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
