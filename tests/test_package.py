"""The package installs: ``pip install .[litert]`` into a fresh virtual environment (no
system site-packages, so no TensorFlow) runs the shipped TFLite model through
PoseEstimator; ``pip install -e .`` runs from the source tree.

The build happens in a temporary copy of the repository, so the checkout is left as it was
(``git status`` is compared before and after). Needs the package registry (pip's own
configuration); about 30 s on a 2-core machine (fresh venv, pip install, two runs).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from mssh_keras import SHIPPED_MODEL_DIR, SHIPPED_MODEL_NAME, __version__

ROOT = Path(__file__).resolve().parents[1]
# What never goes into a build: VCS data, run outputs, caches and earlier build artefacts.
NOT_COPIED = (".git", "runs", "sweeps", "exports", "artifacts", "build", "dist",
              "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks", "*.pyc")

# Runs inside the fresh environment: the shipped model through PoseEstimator, no TensorFlow.
PROBE = r"""
import importlib.util, json, sys
import numpy as np
import mssh_keras
from mssh_keras.runtime import PoseEstimator

image = np.load(sys.argv[1])
out = {"file": mssh_keras.__file__, "shipped_dir": str(mssh_keras.SHIPPED_MODEL_DIR),
       "version": mssh_keras.__version__}
for key, path in (("repo", sys.argv[2]), ("shipped", str(mssh_keras.shipped_model()))):
    est = PoseEstimator(path)
    out[key] = {"backend": est.backend,
                "keypoints": est.predict(image, box=(40, 20, 150, 230)).keypoints.tolist()}
try:
    est = PoseEstimator(mssh_keras.shipped_model("model_int8.tflite"))
    out["int8_quantization"] = est.metadata.get("quantization")
except FileNotFoundError:
    out["int8_quantization"] = None
try:
    mssh_keras.shipped_model("model.keras")
    out["keras_error"] = None
except FileNotFoundError as e:
    out["keras_error"] = str(e)
out["tf_importable"] = [m for m in ("tensorflow", "keras", "tf2onnx")
                        if importlib.util.find_spec(m) is not None]
out["tf_imported"] = [m for m in ("tensorflow", "keras") if m in sys.modules]
print("RESULT " + json.dumps(out))
"""


def _checkout_state() -> tuple:
    """``git status`` entries, and the build artefacts git ignores (build/, *.egg-info)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        status = set(out.stdout.splitlines()) if out.returncode == 0 else set()
    except (OSError, subprocess.TimeoutExpired):
        status = set()
    artefacts = {p.relative_to(ROOT).as_posix() for p in (*ROOT.iterdir(), *ROOT.glob("*/*"))
                 if p.name in ("build", "dist") or p.name.endswith(".egg-info")}
    return status, artefacts


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


def _run(cmd: list, cwd: Path, timeout: float = 900) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
    return out.stdout


def _probe(python: Path, cwd: Path, image: Path, repo_tflite: Path) -> dict:
    stdout = _run([python, "-c", PROBE, image, repo_tflite], cwd=cwd)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_installs_with_the_litert_extra_only_and_runs_the_shipped_model(tmp_path):
    repo_tflite = SHIPPED_MODEL_DIR / "model.tflite"
    assert repo_tflite.is_file(), "the shipped model is part of the repository"
    before = _checkout_state()
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_COPIED))
    work = tmp_path / "work"   # not the repository: its mssh_keras must not shadow the install
    work.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (240, 180, 3), dtype=np.uint8)
    np.save(work / "image.npy", image)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=work)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", f"{src}[litert]"], cwd=work)

    got = _probe(python, work, work / "image.npy", repo_tflite)
    site = venv / "lib"
    assert Path(got["file"]).is_relative_to(site), got["file"]
    # The shipped TFLite model travels as package data: found without the repository.
    assert Path(got["shipped_dir"]).is_relative_to(site)
    assert Path(got["shipped_dir"]).name == SHIPPED_MODEL_NAME
    assert got["version"] == __version__
    assert got["repo"]["backend"] == got["shipped"]["backend"] == "litert"
    assert got["repo"]["keypoints"] == got["shipped"]["keypoints"]
    # The full-int8 file travels with it where the model card shipped one.
    int8 = json.loads((SHIPPED_MODEL_DIR / "card.json").read_text()).get("int8") or {}
    assert got["int8_quantization"] == ("int8" if int8.get("file") else None)
    # The Keras file is not packaged: a clear error that says where it is.
    assert f"models/{SHIPPED_MODEL_NAME}/" in got["keras_error"]
    assert got["tf_importable"] == [] and got["tf_imported"] == []
    # The same keypoints as this checkout's runtime computes.
    from mssh_keras.runtime import PoseEstimator
    ours = PoseEstimator(repo_tflite, backend="litert").predict(image, box=(40, 20, 150, 230))
    np.testing.assert_allclose(np.array(got["repo"]["keypoints"]), ours.keypoints, atol=1e-4)

    # Editable install of the same copy: runs from the source tree, models/ included.
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", src], cwd=work)
    got = _probe(python, work, work / "image.npy", repo_tflite)
    assert Path(got["file"]) == src / "mssh_keras" / "__init__.py"
    assert Path(got["shipped_dir"]) == src / "models" / SHIPPED_MODEL_NAME
    assert got["keras_error"] is None
    assert got["repo"]["keypoints"] == got["shipped"]["keypoints"]

    status, artefacts = _checkout_state()
    assert not status - before[0], f"the build changed the checkout: {status - before[0]}"
    assert artefacts == before[1], f"build artefacts in the checkout: {artefacts - before[1]}"
