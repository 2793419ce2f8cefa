"""Tests for a training run (mssh_keras/training.py, trainer.py, callbacks.py, train.py).

Every run here is tiny: the first trace of a Keras training step dominates on CPU, so the
runs are shared through module fixtures and each test reads what it needs from them.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mssh_keras.callbacks import Checkpointer
from mssh_keras.config import PRESETS, ModelConfig, TrainConfig
from mssh_keras.model import build_network
from mssh_keras.trainer import PoseTrainer, make_optimizer
from mssh_keras.training import RunOptions, TrainingError, train
from conftest import RUN_STEPS as STEPS, TINY, history_rows, run_options

REPO = Path(__file__).resolve().parents[1]


def _npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 3-epoch run, and a 2-epoch run killed while writing epoch 3's
    checkpoint, then resumed for the 3rd epoch."""
    root = tmp_path_factory.mktemp("runs")
    straight = train(run_options(root / "straight"))
    part = train(run_options(root / "resumed", epochs=2))
    # A kill in the middle of epoch 3's checkpoint: a half-written folder, latest.json
    # still pointing at epoch 2.
    partial = root / "resumed" / "ckpt" / "epoch_0003"
    partial.mkdir()
    (partial / "network.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        resumed = train(run_options(root / "resumed", epochs=3, resume=True))
    return {"root": root, "straight": straight, "part": part, "resumed": resumed,
            "log": log.getvalue()}


def test_short_training_reduces_the_loss(runs):
    losses = [float(r["loss"]) for r in history_rows(runs["root"] / "straight")]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert losses[2] < 0.8 * losses[0], losses


def test_resume_matches_an_uninterrupted_run(runs):
    root = runs["root"]
    assert "resuming" in runs["log"] and "after epoch 2" in runs["log"]
    a, b = runs["straight"]["network"], runs["resumed"]["network"]
    for wa, wb, v in zip(a.get_weights(), b.get_weights(), a.weights):
        np.testing.assert_array_equal(wa, wb, err_msg=v.path)
    # Optimizer state (iterations first, then RMSprop's velocities) is identical too.
    sa = _npz(root / "straight" / "ckpt" / "epoch_0003" / "optimizer.npz")
    sb = _npz(root / "resumed" / "ckpt" / "epoch_0003" / "optimizer.npz")
    assert int(sa[0]) == int(sb[0]) == 3 * STEPS  # restored, not restarted at 0
    assert len(sa) == len(sb) == 1 + len(a.trainable_weights)
    for x, y in zip(sa, sb):
        np.testing.assert_array_equal(x, y)
    latest = json.loads((root / "resumed" / "ckpt" / "latest.json").read_text())
    assert latest["epoch"] == 3 and latest["folder"] == "epoch_0003"
    assert [p.name for p in (root / "resumed" / "ckpt").glob("epoch_*")] == ["epoch_0003"]
    assert [r["epoch"] for r in history_rows(root / "resumed")] == ["0", "1", "2"]
    assert runs["part"]["report"] is not None


def test_a_checkpoint_loads_as_a_model(runs):
    """A run's latest checkpoint is a model file too (evaluate.py / export.py --model
    ckpt/epoch_NNNN/network.weights.h5): the architecture comes from the run folder."""
    from mssh_keras.model_file import load_network

    root = runs["root"]
    net = load_network(root / "straight" / "ckpt" / "epoch_0003" / "network.weights.h5")
    for wa, wb in zip(net.get_weights(), runs["straight"]["network"].get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("lr_drops", [(), (2,)])
def test_restore_keeps_the_runs_learning_rate_and_the_schedule_position(runs, lr_drops):
    """The checkpoint restores weights and iterations but not a constant rate, so
    `--resume --lr` takes effect, and a run may add `--lr-drops` when resuming."""
    net = build_network(ModelConfig(**TINY))
    trainer = PoseTrainer(net)
    trainer.compile(optimizer=make_optimizer(
        TrainConfig(learning_rate=0.5, lr_drops=lr_drops, epochs=3), STEPS))
    state = Checkpointer.restore(runs["root"] / "straight", trainer, net)
    assert state["epoch"] == 3 and int(trainer.optimizer.iterations) == 3 * STEPS
    # Past the drop after epoch 2 the schedule is at 0.5 * 0.1.
    expected = 0.05 if lr_drops else 0.5
    assert float(trainer.optimizer.learning_rate) == pytest.approx(expected)
    for wa, wb in zip(net.get_weights(), runs["straight"]["network"].get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_resume_refuses_mismatched_or_missing_runs(runs, tmp_path):
    root = runs["root"]
    with pytest.raises(TrainingError, match="already holds a run"):
        train(run_options(root / "straight"))
    with pytest.raises(TrainingError, match="model options differ"):
        train(run_options(root / "straight", resume=True, model_overrides={**TINY, "filters": 8}))
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(run_options(tmp_path / "empty", resume=True))


def test_nan_guard_stops_with_the_epoch_and_keeps_the_checkpoint(runs, tmp_path):
    """Resuming with an absurd --lr also checks that the new rate is used on resume."""
    src = runs["root"] / "resumed"
    out = tmp_path / "nan"
    shutil.copytree(src, out)
    with pytest.raises(TrainingError, match=r"epoch 4, batch \d") as err:
        train(run_options(out, resume=True, epochs=5, learning_rate=1e30))
    assert "Last saved checkpoint: epoch 3" in str(err.value)
    assert json.loads((out / "ckpt" / "latest.json").read_text())["epoch"] == 3
    assert sorted(p.name for p in (out / "ckpt").glob("epoch_*")) == ["epoch_0003"]
    for name in ("network.weights.h5", "optimizer.npz"):
        assert ((out / "ckpt" / "epoch_0003" / name).read_bytes()
                == (src / "ckpt" / "epoch_0003" / name).read_bytes()), name


def test_a_tiny_mssh_learns_the_synthetic_task(tmp_path):
    """Two stacks (8x8 -> 16x16, dispatch + adaptive loss) on the synthetic people."""
    model = dict(input_size=32, schedule=(8, 16), filters=32, stem_filters=16,
                 trunk_filters=32, min_resolution=4, block="residual")
    kw = dict(preset="mssh-lite", dataset="synthetic", batch_size=16, steps_per_epoch=40,
              val_examples=64, augment=False, verbose=0, learning_rate=5e-3,
              model_overrides=model)
    before = train(RunOptions(output_dir=str(tmp_path / "untrained"), epochs=0,
                              synthetic_train=16, **kw))
    after = train(RunOptions(output_dir=str(tmp_path / "trained"), epochs=5,
                             synthetic_train=1000, **kw))
    pck0 = before["report"]["tables"]["PCK@0.2"]["Total"]
    pck1 = after["report"]["tables"]["PCK@0.2"]["Total"]
    print(f"val PCK@0.2: untrained {pck0:.1f} %, after 200 steps {pck1:.1f} % "
          f"({after['seconds']:.0f} s)")
    assert pck1 >= pck0 + 25.0, (pck0, pck1)
    losses = [float(r["loss"]) for r in history_rows(tmp_path / "trained")]
    assert losses[-1] < losses[0]


def _run_train_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_train_py_help_lists_the_presets():
    out = _run_train_py("--help")
    assert out.returncode == 0
    for name in PRESETS:
        assert name in out.stdout


def test_train_py_without_dataset_files_fails_cleanly(tmp_path):
    out = _run_train_py("--dataset", "lspet", "--output-dir", str(tmp_path / "run"),
                        "--data-dir", str(tmp_path / "tfds"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "error: lspet" in out.stderr and "joints.mat" in out.stderr


def test_resume_reuses_the_saved_options_unless_the_command_line_names_them(runs):
    """`train.py --output-dir RUN --resume` continues the run as it was started (optimizer,
    schedule, augmentation...); options named on the command line (--epochs) win."""
    sys.path.insert(0, str(REPO))
    import train as train_py
    out = runs["root"] / "straight"
    argv = ["--output-dir", str(out), "--resume", "--epochs", "7", "--threads", "1"]
    kw = train_py.resumed_options(dict(vars(train_py.parse_args(argv))), argv)
    saved = json.loads((out / "run_config.json").read_text())["options"]
    assert kw["resume"] and kw["output_dir"] == str(out)
    assert (kw["epochs"], kw["threads"]) == (7, 1)
    for key in ("preset", "dataset", "optimizer", "lr_schedule", "learning_rate", "augment",
                "batch_size", "steps_per_epoch", "synthetic_train", "val_examples"):
        assert kw[key] == saved[key], key
    assert kw["preset"] == "mssh-lite" and kw["optimizer"] == "rmsprop"
