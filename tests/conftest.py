"""What several test modules share: the repository root, the real-data folder and the tiny
network. Test modules import the constants (``from conftest import TINY, REAL_DATA``);
pytest puts this folder on ``sys.path``, and so does running a test file as a script.
"""
from __future__ import annotations

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
