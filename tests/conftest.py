"""What several test modules share: the repository root, the real-data folder and the tiny
network. Test modules import the constants (``from conftest import TINY, REAL_DATA``);
pytest puts this folder on ``sys.path``, and so does running a test file as a script.
"""
from __future__ import annotations

import os
from pathlib import Path

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

