"""mssh-keras: Multi-Scale Stacked Hourglass pose estimation (Keras 3).

Kept import-free so the TF-free runtime paths (LiteRT, ONNX Runtime) stay fast.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

# The trained model this repository ships (scripts/ship_model.py writes it): the default of
# evaluate.py, export.py and the demo. One place to change when a better model ships.
SHIPPED_MODEL_NAME = "hg-lite-lspet"
_PACKAGE = _Path(__file__).resolve().parent


def _shipped_model_dir() -> _Path:
    """Where the shipped model lies.

    In a checkout of the repository (and an editable install, which runs from it) that is
    ``models/<name>/`` with every file (``model.keras`` too). An installed package
    (``pip install .``) carries ``model.tflite`` with its metadata and model card as
    package data in ``mssh_keras/shipped_models/<name>/``; the repository is recognised by
    its ``pyproject.toml`` next to ``mssh_keras/``, not guessed from a ``models/`` folder.
    """
    repo = _PACKAGE.parent
    if (repo / "pyproject.toml").is_file() and (repo / "models" / SHIPPED_MODEL_NAME).is_dir():
        return repo / "models" / SHIPPED_MODEL_NAME
    return _PACKAGE / "shipped_models" / SHIPPED_MODEL_NAME


SHIPPED_MODEL_DIR = _shipped_model_dir()


def shipped_model(name: str = "model.tflite") -> _Path:
    """The path of one file of the shipped model, or FileNotFoundError saying where to get it.

    ``name``: ``model.tflite`` (in every install), ``model_int8.tflite`` (full int8, where
    the model card shipped one), ``model.keras`` (a checkout only), ...
    """
    path = SHIPPED_MODEL_DIR / name
    if path.exists():
        return path
    raise FileNotFoundError(
        f"the shipped model file {name} is not in {SHIPPED_MODEL_DIR}. An installed "
        f"mssh-keras package carries only the TFLite files and their metadata; the other "
        f"files (model.keras for training, evaluation and export) are in models/"
        f"{SHIPPED_MODEL_NAME}/ of the mssh-keras repository: work in a checkout of it "
        f"(pip install -e .[train]) or pass the model file's path explicitly.")
