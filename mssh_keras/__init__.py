"""mssh-keras: Multi-Scale Stacked Hourglass pose estimation (Keras 3).

Kept import-free so the TF-free runtime paths (LiteRT, ONNX Runtime) stay fast.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# The trained model this repository ships (scripts/ship_model.py writes it): the default of
# evaluate.py, export.py and the demo. One place to change when a better model ships.
SHIPPED_MODEL_DIR = _Path(__file__).resolve().parents[1] / "models" / "hg-lite-lspet"
