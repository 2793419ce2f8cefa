"""What several test modules share: the repository root, the real-data folder, the tiny
network and a tiny training run. Test modules import them (``from conftest import TINY``);
pytest puts this folder on ``sys.path``, and so does running a test file as a script.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# The real datasets' official files (LSP, LSPET, MPII and the others the tests read), kept
# next to the repository; MSSH_REAL_DATA points the tests at another copy. Tests that read
# them fail (not skip) when the folder is missing: CI must run them.
REAL_DATA = Path(os.environ.get("MSSH_REAL_DATA") or ROOT.parent / "shared" / "data" / "real")

# The smallest network the training pipeline accepts: one 8x8 stack of residual blocks
# (ModelConfig fields; RunOptions(model_overrides=TINY), ModelConfig(**TINY)). Tests that
# need more (two stacks, another input size) say so: {**TINY, "schedule": (8, 16)}.
TINY = dict(input_size=32, schedule=(8,), filters=16, stem_filters=8, trunk_filters=16,
            min_resolution=4, block="residual")

# Steps per epoch of the tiny synthetic run below.
RUN_STEPS = 4


def run_options(out: Path, **kw):
    """A tiny run on 3 synthetic examples in batches of 4, no augmentation: consecutive
    batches differ, so a resumed run only matches an uninterrupted one if it continues the
    shuffled data stream where the first part stopped (rather than replaying it)."""
    from mssh_keras.training import RunOptions
    base = dict(preset="mssh-lite", dataset="synthetic", output_dir=str(out), epochs=3,
                batch_size=4, steps_per_epoch=RUN_STEPS, val_examples=4, synthetic_train=3,
                augment=False, verbose=0, learning_rate=1e-3, model_overrides=TINY,
                optimizer="rmsprop", lr_schedule="step")
    base.update(kw)
    return RunOptions(**base)


def history_rows(out: Path) -> list[dict]:
    """A run folder's history.csv, one dict of strings per epoch."""
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


def standing_pose(cx: float = 200.0, cy: float = 150.0, height: float = 160.0) -> np.ndarray:
    """A rough upright LSP-14 pose (K, 2), hips at (cx, cy), head top height/2 above them."""
    from mssh_keras.skeleton import LSP14
    u = height / 2
    rel = {"r_ankle": (-0.1, 0.95), "r_knee": (-0.1, 0.5), "r_hip": (-0.1, 0.0),
           "l_hip": (0.1, 0.0), "l_knee": (0.1, 0.5), "l_ankle": (0.1, 0.95),
           "r_wrist": (-0.35, -0.05), "r_elbow": (-0.3, -0.3), "r_shoulder": (-0.2, -0.6),
           "l_shoulder": (0.2, -0.6), "l_elbow": (0.3, -0.3), "l_wrist": (0.35, -0.05),
           "neck": (0.0, -0.7), "head_top": (0.0, -1.0)}
    return np.array([[cx + u * rel[n][0], cy + u * rel[n][1]] for n in LSP14.joints])
