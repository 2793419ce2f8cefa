"""Training callbacks: validation PCK, atomic checkpoints with exact resume, NaN guard,
and the adaptive weights in TensorBoard."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .codec import HeatmapCodec
from .data.records import MISSING
from .geometry import JOINT_BOX_PADDING
from .metrics import keypoint_report, lsp_report
from .paths import write_json_atomic
from .skeleton import Skeleton


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with a message naming the file and what to do."""


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """``model.save`` through a temporary file and a rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    model.save(tmp)
    os.replace(tmp, path)


class ValidationPCK(keras.callbacks.Callback):
    """PCK@0.2 on a bounded validation subset at the end of each epoch, as ``val_pck``.

    Measured in crop coordinates: PCK is a ratio to the torso length, so the similarity
    transform back to the original image does not change it (evaluate.py does map back).
    LSP-14 and MPII-16 get the torso PCK@0.2 and strict PCP@0.5; any other joint set
    (a COCO-format dataset) the box-normalised PCK@0.2 (metrics.keypoint_report), the box
    being the crop's person box: crop side / 1.25.
    """

    def __init__(self, eval_batches: list, network: keras.Model, skeleton: Skeleton,
                 nan_guard: "NaNGuard | None" = None):
        super().__init__()
        self.batches, self.network, self.skeleton = eval_batches, network, skeleton
        self.nan_guard = nan_guard
        last = network.outputs[-1]
        self.codec = HeatmapCodec(network.input.shape[1], (last.shape[1],))
        self._predict = tf.function(keras.Model(network.input, last), reduce_retracing=True)
        self.last_report: dict | None = None

    def evaluate(self) -> dict:
        preds, gts, valid = [], [], []
        for image, meta in self.batches:
            preds.append(self.codec.decode(np.asarray(self._predict(image)))[0])
            gts.append(meta["crop_joints"])
            valid.append(meta["flags"] > MISSING)
        pred, gt, ok = np.concatenate(preds), np.concatenate(gts), np.concatenate(valid)
        if self.lsp_style:
            self.last_report = lsp_report(pred, gt, ok, self.skeleton)
        else:
            box = np.full(len(pred), self.network.input.shape[1] / JOINT_BOX_PADDING)
            self.last_report = keypoint_report(pred, gt, ok, box, self.skeleton)
        return self.last_report

    @property
    def lsp_style(self) -> bool:
        return bool(self.skeleton.pcp_limbs) and self.skeleton.torso_pair is not None

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard is not None and self.nan_guard.failure:
            return  # broken weights: decoding NaN heatmaps would mask the guard's message
        report = self.evaluate()
        tables = report["tables"]
        if not self.lsp_style:
            logs["val_pck"] = tables["PCK (box)"]["@0.2"]
            torso = tables.get("PCK@0.2 (torso)")
            print(f"\nepoch {epoch + 1}: val PCK@0.2 (box) {logs['val_pck']:.1f} %"
                  + (f" (torso PCK@0.2 {torso['Total']:.1f} %)" if torso else ""))
            return
        logs["val_pck"] = tables["PCK@0.2"]["Total"]
        logs["val_pcp"] = tables["strict PCP@0.5"]["Total"]
        print(f"\nepoch {epoch + 1}: val PCK@0.2 {logs['val_pck']:.1f} % "
              f"(strict PCP@0.5 {logs['val_pcp']:.1f} %)")


class NaNGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss; the checkpoints already written stay intact."""

    def __init__(self):
        super().__init__()
        self.failure: str | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True


def optimizer_state(optimizer) -> list:
    """The optimizer variables a checkpoint carries: all but a constant learning rate.

    Keras keeps a float rate as an optimizer variable; restoring it would silently undo a
    ``--resume --lr`` change (and make runs with and without ``lr_drops`` incompatible).
    The rate comes from the run's options; ``iterations`` still restores a schedule.
    """
    return [v for v in optimizer.variables if v.name != "learning_rate"]


class Checkpointer(keras.callbacks.Callback):
    """Each epoch: network weights + optimizer state into ``ckpt/epoch_NNNN``, then an
    atomic switch of ``ckpt/latest.json``; a kill at any moment leaves the previous
    complete checkpoint in place. The best ``val_pck`` also goes to ``best.keras``."""

    def __init__(self, out_dir: Path, network: keras.Model, nan_guard: NaNGuard | None = None,
                 monitor: str = "val_pck", best: float = -math.inf,
                 portable=None):
        """``portable()`` returns the model to save as ``best.keras`` (default: the
        network; a float32 twin for a bfloat16 network)."""
        super().__init__()
        self.dir = Path(out_dir) / "ckpt"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out_dir, self.network, self.nan_guard = Path(out_dir), network, nan_guard
        self.monitor, self.best = monitor, best
        self.portable = portable or (lambda: network)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.nan_guard is not None and self.nan_guard.failure:
            return
        folder = self.dir / f"epoch_{epoch + 1:04d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        self.network.save_weights(folder / "network.weights.h5")
        opt_vars = [np.asarray(v) for v in optimizer_state(self.model.optimizer)]
        np.savez(folder / "optimizer.npz", *opt_vars)
        value = logs.get(self.monitor)
        improved = value is not None and value > self.best
        if improved:
            self.best = float(value)
            save_model_atomic(self.portable(), self.out_dir / "best.keras")
        write_json_atomic(self.dir / "latest.json",
                          {"epoch": epoch + 1, "folder": folder.name, "best": self.best,
                           "logs": {k: float(v) for k, v in logs.items()}})
        for old in self.dir.glob("epoch_*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def latest(out_dir: Path) -> dict | None:
        """The state ``ckpt/latest.json`` points at, or None when there is none.

        Raises CheckpointError naming the file when it is damaged (it is written
        atomically, so only an outside hand can damage it) or names a missing folder.
        """
        pointer = Path(out_dir) / "ckpt" / "latest.json"
        if not pointer.exists():
            return None
        try:
            state = json.loads(pointer.read_text())
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
            int(state["epoch"]), float(state["best"])
            folder = str(state["folder"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            found = ", ".join(sorted(p.name for p in pointer.parent.glob("epoch_*"))) or "none"
            raise CheckpointError(
                f"{pointer} is damaged ({type(e).__name__}: {e}); it must name the last "
                f"checkpoint folder (found: {found}): restore it from a backup, or start a "
                f"new run with another --output-dir") from None
        if not (pointer.parent / folder).is_dir():
            raise CheckpointError(f"{pointer} points at {folder}, which is missing from "
                                  f"{pointer.parent}: restore it, or start a new run with "
                                  f"another --output-dir")
        return state

    @staticmethod
    def restore(out_dir: Path, trainer, network: keras.Model) -> dict:
        """Load the latest checkpoint into ``network`` and the trainer's optimizer.

        A damaged file raises CheckpointError naming it; nothing on disk is changed.
        """
        state = Checkpointer.latest(out_dir)
        if state is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {Path(out_dir) / 'ckpt'}")
        folder = Path(out_dir) / "ckpt" / state["folder"]
        fix = ("restore it from a backup, or start a new run with another --output-dir "
               "(best.keras / final.keras, if any, hold weights without optimizer state)")
        weights = folder / "network.weights.h5"
        try:
            network.load_weights(weights)
        except Exception as e:  # noqa: BLE001 - h5py/Keras raise many types for bad files
            raise CheckpointError(f"cannot resume: {weights} is damaged or does not fit this "
                                  f"network ({type(e).__name__}: {_first_line(e)}); "
                                  f"{fix}") from None
        opt = trainer.optimizer
        opt.build(network.trainable_variables)
        opt_file = folder / "optimizer.npz"
        try:
            with np.load(opt_file) as saved:
                values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except Exception as e:  # noqa: BLE001 - zipfile/numpy errors for a cut-off file
            raise CheckpointError(f"cannot resume: {opt_file} is damaged "
                                  f"({type(e).__name__}: {_first_line(e)}); {fix}") from None
        state_vars = optimizer_state(opt)
        if len(values) != len(state_vars):
            raise ValueError(f"checkpoint {folder} has {len(values)} optimizer variables, "
                             f"the model needs {len(state_vars)}: different preset?")
        for var, value in zip(state_vars, values):
            var.assign(value)
        return state


def _first_line(error: Exception, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else "")[:limit]


class AdaptiveWeightLogger(keras.callbacks.Callback):
    """Mean adaptive weight per (stack, joint) each epoch: TensorBoard scalars + JSON."""

    def __init__(self, log_dir: Path, joint_names: tuple[str, ...]):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "adaptive_weights"))
        self.path = Path(log_dir) / "adaptive_weights.json"
        self.names = joint_names
        self.history = json.loads(self.path.read_text()) if self.path.exists() else []

    def on_epoch_end(self, epoch, logs=None):
        weights = self.model.pop_mean_weights()
        with self.writer.as_default(step=epoch + 1):
            for j, row in enumerate(weights, start=1):
                for name, w in zip(self.names, row):
                    tf.summary.scalar(f"stack{j}/{name}", float(w))
        self.writer.flush()
        self.history.append({"epoch": epoch + 1, "weights": weights.round(5).tolist()})
        write_json_atomic(self.path, self.history)
