"""Fine-tuning: start a run from a trained network (``--init MODEL.keras``), maybe with the
pre-processing network frozen for its first epochs (``--freeze-trunk-epochs N``).

What is loaded: every layer's weights, by layer name, which needs the same architecture
(the run takes the init model's: its ``<file>.json`` metadata or the ``run_config.json``
next to it says which). The exception is the heatmap heads, the 1x1 convolutions named
``stack{j}`` (features -> one heatmap per joint) and ``s{j}_remap_heatmaps`` (heatmaps ->
the next stack's input, see model.py), whose shapes follow the joint count: when the
run's joints differ from the init model's they are rebuilt, i.e. freshly initialised,
except the channels of joints whose names match (``joint_names.canonical``: ``r_knee`` of
LSP and ``right_knee`` of COCO are one joint), which are copied; the remap rows of new
joints start at zero, so the trained stacks see the same input as before until those
joints have learned something.

Freezing: the *trunk* is the pre-processing network (stem, trunk and its per-scale outputs,
the layers named ``pre_*``; model.py / preprocess.py). Frozen layers keep their weights and
their BatchNorm statistics (Keras runs a non-trainable BatchNorm in inference mode); the
hourglasses and heads train from the first step. The optimizer is built over every
variable first, so checkpoints hold the same optimizer state frozen or not, and a run
resumed after the frozen epochs simply trains everything.
"""
from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from .joint_names import canonical

HEAD_LAYER = re.compile(r"^(stack\d+|s\d+_remap_heatmaps)$")
TRUNK_PREFIX = "pre_"


class InitError(ValueError):
    """An --init model that cannot start this run, with a message naming the file."""


@dataclass
class InitModel:
    path: Path
    network: keras.Model
    config: dict | None          # its ModelConfig fields, when its files say so
    joints: tuple | None         # its joint names, when its files say so
    preset: str | None


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def describe_init(path: str | Path) -> dict:
    """What the files next to ``path`` say about it (no TensorFlow): {config, joints,
    preset}, each None when unknown. Read from ``<file>.json`` (export / shipped-model
    metadata) and the training run's ``run_config.json``."""
    p = Path(path)
    meta = _json(p.with_name(p.name + ".json")) or {}
    run = _json(p.parent / "run_config.json") or {}
    config = meta.get("model_config") or run.get("model")
    joints = None
    if isinstance(meta.get("skeleton"), dict):
        joints = meta["skeleton"].get("joints")
    elif isinstance(run.get("skeleton_definition"), dict):
        joints = run["skeleton_definition"].get("joints")
    elif isinstance(run.get("skeleton"), str):
        from .skeleton import SKELETONS
        known = SKELETONS.get(run["skeleton"])
        joints = known.joints if known else None
    preset = meta.get("preset") or (run.get("options") or {}).get("preset")
    if config:
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return {"config": config, "joints": tuple(joints) if joints else None, "preset": preset}


def check_init_file(path: str | Path) -> Path:
    """``path`` if it can be a Keras model file, else InitError saying why (no TensorFlow)."""
    p = Path(path)
    if not p.is_file() or not p.name.endswith(".keras"):
        what = "does not exist" if not p.exists() else "is not a .keras file"
        raise InitError(f"--init {p} {what}: pass a trained model (.keras), e.g. "
                        f"runs/<run>/best.keras or models/hg-lite-lspet/model.keras")
    if not zipfile.is_zipfile(p):
        raise InitError(f"--init {p} is not a Keras model (a .keras file is a zip archive; "
                        f"this one is not, or is cut off)")
    return p


def read_init(path: str | Path) -> InitModel:
    p = check_init_file(path)
    try:
        # safe_mode: a .keras file is data; refuse Lambda layers that would run code.
        network = keras.saving.load_model(str(p), compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - any load failure, named with the file
        raise InitError(f"cannot load --init {p}: {type(e).__name__}: {e}") from None
    info = describe_init(p)
    if info["joints"] is not None and len(info["joints"]) != network.outputs[0].shape[-1]:
        info["joints"] = None  # stale metadata: trust the network
    return InitModel(p, network, info["config"], info["joints"], info["preset"])


def _joint_map(new_joints, old_joints, old_count: int) -> dict[int, int] | None:
    """new index -> old index of the joints both sets have, or None when they are the same
    set (the heads load whole)."""
    if old_joints is None:  # unknown: the same joints if the count is the same
        return None if old_count == len(new_joints) else {}
    if tuple(old_joints) == tuple(new_joints):
        return None
    old = {canonical(n): i for i, n in enumerate(old_joints)}
    return {i: old[canonical(n)] for i, n in enumerate(new_joints) if canonical(n) in old}


def transfer_weights(network: keras.Model, init: InitModel, joints) -> dict:
    """Load ``init``'s weights into ``network`` (see the module docstring); returns what
    happened: {"layers", "heads": "loaded" | "rebuilt", "joints_copied": [names]}."""
    src = {layer.name: layer for layer in init.network.layers if layer.weights}
    dst = [layer for layer in network.layers if layer.weights]
    missing = sorted(set(src) ^ {layer.name for layer in dst})
    if missing:
        raise InitError(f"--init {init.path} is another architecture than this run's network "
                        f"(layers not in both: {missing[:6]}{' ...' if len(missing) > 6 else ''})")
    old_count = int(init.network.outputs[0].shape[-1])
    mapping = _joint_map(joints, init.joints, old_count)
    for layer in dst:
        old = [np.asarray(w) for w in src[layer.name].get_weights()]
        if HEAD_LAYER.match(layer.name) and mapping is not None:
            new = [np.asarray(w).copy() for w in layer.get_weights()]
            kernel, bias = new
            if layer.name.startswith("stack"):      # (1, 1, F, K), (K,)
                for i, j in mapping.items():
                    kernel[..., i], bias[i] = old[0][..., j], old[1][j]
            else:                                   # remap: (1, 1, K, F), (F,)
                kernel[:] = 0.0
                for i, j in mapping.items():
                    kernel[:, :, i, :] = old[0][:, :, j, :]
                bias[:] = old[1]
            layer.set_weights([kernel, bias])
            continue
        shapes = [w.shape for w in layer.get_weights()]
        if [w.shape for w in old] != shapes:
            raise InitError(f"--init {init.path}: layer {layer.name} has weights of shapes "
                            f"{[w.shape for w in old]}, this run's network {shapes}: another "
                            f"architecture (pass the --preset the model was trained with)")
        layer.set_weights(old)
    copied = [] if mapping is None else [joints[i] for i in sorted(mapping)]
    return {"layers": len(dst), "heads": "loaded" if mapping is None else "rebuilt",
            "joints_copied": copied if mapping is not None else list(joints)}


def trunk_layers(network: keras.Model) -> list:
    return [layer for layer in network.layers if layer.name.startswith(TRUNK_PREFIX)]


class FreezeTrunk(keras.callbacks.Callback):
    """Keeps the pre-processing network frozen during the first ``epochs`` epochs (see the
    module docstring); logs ``trunk_frozen`` (1 or 0) per epoch. Changing what trains
    retraces the train step once (``make_train_function(force=True)``)."""

    def __init__(self, network: keras.Model, epochs: int):
        super().__init__()
        self.layers, self.epochs = trunk_layers(network), int(epochs)
        self.frozen = False

    def _set(self, frozen: bool) -> None:
        if frozen == self.frozen:
            return
        for layer in self.layers:
            layer.trainable = not frozen
        self.frozen = frozen
        self.model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._set(epoch < self.epochs)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["trunk_frozen"] = float(self.frozen)

    def on_train_end(self, logs=None):
        for layer in self.layers:  # saved models never carry a frozen flag
            layer.trainable = True
        self.frozen = False
