"""Every command of README.md that needs no camera or cluster runs, and leaves the checkout
as it was (the issue's "git status is clean after every README command").

The README's commands are parsed from its ```bash blocks; HOW (below) says for each one how
it is exercised, and a test fails when README and HOW disagree, so neither can drift.

The commands run in README order, in-process through their own ``main(argv)`` with the
README's exact argv, in a sandbox folder used as the current folder. The sandbox holds
what a reader's checkout holds under the README's names: ``models/hg-lite-lspet/``
(the shipped model's folder), ``DATA/lspet`` (official LSPET files: the first 20 real
images and their joints.mat columns), ``DATA/train.json`` and ``DATA/images`` (mmpose's
real 3-image COCO sample), ``video.mp4``, ``photos/`` and ``photo.jpg`` (made from a real
LSPET photo). So ``runs/`` lands in the sandbox; export.py's default folder
(``<repo>/exports``, absolute) and TensorFlow Datasets' default folder are pointed into it.

What is shrunk, and nothing else: the presets ``mssh-lite`` and ``hg-lite`` get the tiny
network (conftest.TINY) instead of their ModelConfig (mssh_keras.config.PRESETS, the table
every preset lookup reads); the shipped model the commands default to (evaluate.py,
export.py, ``--init models/hg-lite-lspet/model.keras``) is that tiny network too, untrained
(the real one is tested in test_shipped_model.py and test_export.py); the commands get only
the bounding arguments HOW lists (one epoch of 2 steps of 4 images, 8 validation or
evaluation examples, 2 verification crops). pip commands run with ``--dry-run
--no-index``: resolved against this environment, nothing downloaded or installed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import REAL_DATA, ROOT, TINY

README = ROOT / "README.md"
LSPET = REAL_DATA / "lspet_axelcarlier"
COCO = REAL_DATA / "mmpose_testdata" / "tests" / "data" / "coco"
TRAIN_BOUND = ("--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
               "--val-examples", "8")
PIP_BOUND = ("--dry-run", "--no-index", "--no-build-isolation", "-q")

# README command -> how it is exercised: a tuple = run here with these arguments appended
# (to bound its cost, never to change what it does); a string = why not here, and where.
HOW: dict[str, tuple[str, ...] | str] = {
    "pip install -r requirements.txt": "CI step: .ci/run runs it before the tests",
    "python train.py": (*TRAIN_BOUND, "--synthetic-train", "16"),
    "python -m pytest -q tests": "CI step: .ci/run runs it; it is this suite",
    "pip install .[litert]": "tests/test_package.py installs the repository with [litert] "
                             "into a fresh venv and runs the shipped model",
    "pip install .[onnx]": PIP_BOUND,
    "pip install -e .[train]": PIP_BOUND,
    "pip install .[demo]": PIP_BOUND,
    "python train.py --preset hg-lite --dataset lspet --manual-dir DATA/lspet "
    "--output-dir runs/hg-lite-lspet": TRAIN_BOUND,
    # One epoch more than the run above: resumes after its epoch 1.
    "python train.py --output-dir runs/hg-lite-lspet --resume": ("--epochs", "2"),
    "python train.py --dataset coco --annotations DATA/train.json --images DATA/images "
    "--init models/hg-lite-lspet/model.keras": TRAIN_BOUND,
    "python evaluate.py --manual-dir DATA/lspet": ("--limit", "8"),
    "python evaluate.py --model runs/hg-lite-lspet/best.keras --manual-dir DATA/lspet "
    "--flip-test": ("--limit", "8"),
    "python export.py --format all": ("--verify-samples", "2"),
    "python export.py --model runs/hg-lite-lspet/best.keras --format tflite --quantize fp16":
        ("--verify-samples", "2"),
    "python -m demo": "needs a camera (webcam 0)",
    "python -m demo --source video.mp4 --headless": (),
    "python -m demo --source photos/ --headless": (),
}
# The repository paths the sandbox links to (pip builds the package from them).
LINKED = ("mssh_keras", "demo", "pyproject.toml", "README.md")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def readme_commands() -> list[list[str]]:
    """The README's bash commands in order, as argv lists: continuation lines joined,
    comments dropped, ``&&`` chains split."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command: list[str] = []
            for token in [*shlex.split(line, comments=True), "&&"]:
                if token != "&&":
                    command.append(token)
                elif command:
                    commands.append(command)
                    command = []
    return commands


def _entry_point(argv: list[str]):
    """``main`` of the program a README command runs, and its own arguments."""
    import evaluate
    import export
    import train
    from demo import app

    programs = {("python", "train.py"): train.main, ("python", "evaluate.py"): evaluate.main,
                ("python", "export.py"): export.main, ("python", "-m", "demo"): app.main}
    for prefix, main in programs.items():
        if tuple(argv[:len(prefix)]) == prefix:
            return main, argv[len(prefix):]
    raise AssertionError(f"no entry point for {argv}")


def _pip(args: list[str], cwd: Path) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return out.returncode, out.stdout + out.stderr


def _git_status() -> set[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.splitlines())


def _listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")} if folder.is_dir() \
        else set()


def _make_sandbox(root: Path) -> set[str]:
    """The files a README reader has; returns their paths (not the commands' outputs)."""
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    from test_tfds_builders import make_lspet_manual

    from mssh_keras.config import ModelConfig
    from mssh_keras.model import build_network

    shipped = root / "models" / "hg-lite-lspet"
    shipped.mkdir(parents=True)
    build_network(ModelConfig(**TINY)).save(shipped / "model.keras")
    make_lspet_manual(root / "DATA" / "lspet", n=20)
    (root / "DATA" / "train.json").symlink_to(COCO / "test_coco.json")
    (root / "DATA" / "images").symlink_to(COCO)
    image = cv2.imread(str(LSPET / "images" / "im00001.jpg"))
    assert image is not None, f"LSPET photo missing in {LSPET}"
    cv2.imwrite(str(root / "photo.jpg"), image)
    (root / "photos").mkdir()
    cv2.imwrite(str(root / "photos" / "a.jpg"), image)
    cv2.imwrite(str(root / "photos" / "b.jpg"), cv2.flip(image, 1))
    h, w = image.shape[:2]
    video = cv2.VideoWriter(str(root / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                            (w, h))
    for _ in range(3):
        video.write(image)
    video.release()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()
            or p.is_symlink()}


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict:
    """Every runnable README command, in README order, in one sandbox: {command: (exit
    status, printed text, seconds)}, plus the sandbox and the checkout before and after."""
    import evaluate
    import export
    from tensorflow_datasets.core import constants as tfds_constants
    from tensorflow_datasets.core.utils import file_utils as tfds_files

    from mssh_keras import config

    sandbox = tmp_path_factory.mktemp("readme")
    inputs = _make_sandbox(sandbox)
    repo_before = _git_status(), _listing(ROOT / "runs"), _listing(ROOT / "exports")
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sandbox)
        mp.syspath_prepend(str(ROOT))
        for name in ("mssh-lite", "hg-lite"):
            mp.setitem(config.PRESETS, name, dataclasses.replace(
                config.PRESETS[name], model=config.ModelConfig(**TINY)))
        mp.setattr(export, "EXPORTS_DIR", sandbox / "exports")
        shipped = sandbox / "models" / "hg-lite-lspet" / "model.keras"
        mp.setattr(evaluate, "DEFAULT_MODEL", shipped)
        mp.setattr(export, "SHIPPED_MODEL", shipped)
        mp.setattr(export, "MODELS_DIR", shipped.parents[1])
        mp.setattr(tfds_constants, "DATA_DIR", str(sandbox / "tfds"))
        mp.setattr(tfds_files, "_REGISTERED_DATA_DIRS", set())  # other tests' folders
        for argv in readme_commands():
            command, how = " ".join(argv), HOW.get(" ".join(argv))
            if not isinstance(how, tuple) or command in results:  # train.py is there twice
                continue
            t0 = time.time()
            if argv[0] == "pip":
                rc, text = _pip([*argv[1:], *how], sandbox)
            else:
                main, args = _entry_point(argv)
                text_io = io.StringIO()
                with contextlib.redirect_stdout(text_io), contextlib.redirect_stderr(text_io):
                    rc = main([*args, *how])
                text = text_io.getvalue()
            results[command] = rc, text, time.time() - t0
    repo_after = _git_status(), _listing(ROOT / "runs"), _listing(ROOT / "exports")
    print("\nREADME command seconds:", {c: round(r[2], 1) for c, r in results.items()})
    return {"results": results, "sandbox": sandbox, "inputs": inputs,
            "repo": (repo_before, repo_after)}


def test_every_readme_command_is_in_the_table():
    commands = [" ".join(argv) for argv in readme_commands()]
    assert not set(commands) - set(HOW), "README commands HOW does not say how to run"
    assert not set(HOW) - set(commands), "HOW lists commands the README no longer has"


def test_ci_runs_the_commands_the_table_leaves_to_it():
    """Compared without ``python -m`` and ``-q`` (.ci/run runs pip as ``python -m pip -q``)."""
    def plain(argv: list[str]) -> list[str]:
        return [t for t in argv[2 * (argv[:2] == ["python", "-m"]):] if t != "-q"]

    ci = [plain(shlex.split(line, comments=True))
          for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for command, how in HOW.items():
        if isinstance(how, str) and how.startswith("CI step"):
            assert plain(command.split()) in ci, command


def test_every_runnable_command_succeeds(ran):
    runnable = [c for c, how in HOW.items() if isinstance(how, tuple)]
    assert sorted(ran["results"]) == sorted(runnable)
    failed = {c: text[-2000:] for c, (rc, text, _) in ran["results"].items() if rc != 0}
    assert not failed, failed


def test_the_commands_write_where_the_readme_says(ran):
    """Each run's outputs, at the paths the README names; the resume continued the first
    hg-lite run and evaluate / export used its best.keras."""
    box = ran["sandbox"]
    history = (box / "runs" / "hg-lite-lspet" / "history.csv").read_text().splitlines()
    assert len(history) == 3, history  # header, epoch 1, epoch 2 (the resumed one)
    resumed = ran["results"]["python train.py --output-dir runs/hg-lite-lspet --resume"][1]
    assert "resuming runs/hg-lite-lspet after epoch 1" in resumed
    assert (box / "runs" / "mssh-lite-synthetic" / "final.keras").is_file()
    # The fine-tuning run is named after the init model's preset and the dataset.
    [coco] = (box / "runs").glob("*-coco")
    assert (coco / "final.keras").is_file()
    config = json.loads((coco / "run_config.json").read_text())
    assert len(config["skeleton_definition"]["joints"]) == 17
    report = json.loads((box / "runs" / "eval" / "report.json").read_text())
    assert report["model"].endswith("best.keras")  # the last evaluate: the run's model
    assert report["num_examples"] == 2  # DATA/lspet's validation people: im00010, im00020
    exported = _listing(box / "exports" / "hg-lite-lspet")
    for name in ("model.tflite", "model.onnx", "model_saved_model/saved_model.pb",
                 "best_fp16.tflite"):
        assert name in exported, (name, sorted(exported))
    frames = [json.loads(p.read_text())["frames"] for p in (box / "runs" / "demo").glob("*.json")]
    assert sorted(len(f) for f in frames) == [2, 3]  # photos/, video.mp4


def test_the_checkout_stays_as_it_was(ran):
    """What the commands wrote relative to the current folder is all git-ignored there, and
    the checkout itself (git status, the developer's runs/ and exports/) is unchanged."""
    box = ran["sandbox"]
    written = sorted({p.relative_to(box).as_posix() for p in box.rglob("*") if p.is_file()
                      and not p.relative_to(box).as_posix().startswith("tfds/")}
                     - ran["inputs"])  # tfds/ stands in for ~/tensorflow_datasets
    assert written
    check = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT,
                           input="\n".join(written), capture_output=True, text=True,
                           timeout=60)
    assert not set(written) - set(check.stdout.splitlines()), "files not git-ignored"
    (status, runs, exports), (status_after, runs_after, exports_after) = ran["repo"]
    # training/ holds committed long runs that trainings outside this test keep writing.
    new = {e for e in status_after - status if not e[3:].startswith("training/")}
    assert not new, new
    assert (runs_after, exports_after) == (runs, exports)


def test_python_api_block_prints_the_14_joints(ran):
    """The README's Python block, as written, on photo.jpg in the current folder."""
    [block] = _blocks("python")
    from mssh_keras.skeleton import LSP14

    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ran["sandbox"])
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == list(LSP14.joints)
    assert all(0 <= float(ln.split()[3]) <= 1 for ln in lines)  # x, y, score
