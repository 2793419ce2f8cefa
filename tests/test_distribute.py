"""Distributed training (tf.distribute): MirroredStrategy and MultiWorkerMirroredStrategy.

Each scenario runs in a child Python process (this file, run as a script): two logical CPU
devices, and the collective ops of MultiWorkerMirroredStrategy, can only be configured
before TensorFlow starts, and would otherwise leak into the other tests.

BatchNorm: each replica normalises with the statistics of its own slice of the batch, so
plain BN cannot give the weights of a single-device step. The exact comparisons therefore
freeze BN (``trainable=False``: inference mode, a fixed affine map), or synchronise it
(``synchronized=True``: the statistics are all-reduced over replicas). SGD, not the
training's RMSprop: RMSprop divides by the gradient's own scale, so it would hide a loss
that is wrongly scaled by the number of replicas.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY  # the multi-worker run's network

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
LR = 0.05           # SGD rate of the mirrored comparisons
BATCH = 8           # global batch: 4 examples per replica
STEPS = 2


# --------------------------------------------------------------------------- children
def _mirrored_child(result_path: str) -> None:
    """Default strategy vs MirroredStrategy over two logical CPUs, same global batch."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras import layers

    from mssh_keras.blocks import bn_relu, conv
    from mssh_keras.losses import stack_losses
    from mssh_keras.trainer import PoseTrainer

    k = 14

    def network():
        """Two stacks (4x4 then 8x8) with BN and a remap between them, as MSSH, tiny."""
        inp = keras.Input((16, 16, 3))
        h = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
        h = bn_relu(conv(h, 8, 3, "stem", strides=2, bias=False), "stem")           # 8x8
        s1 = bn_relu(conv(layers.AveragePooling2D(2)(h), 8, 3, "s1", bias=False), "s1")
        out1 = layers.Conv2D(k, 1, name="stack1")(s1)                               # 4x4
        up = layers.UpSampling2D(2)(conv(out1, 8, 1, "remap"))
        s2 = bn_relu(conv(layers.Add()([h, up]), 8, 3, "s2", bias=False), "s2")
        out2 = layers.Conv2D(k, 1, name="stack2")(s2)                               # 8x8
        return keras.Model(inp, [out1, out2])

    # Targets = the initial network's heatmaps + noise of a per-joint size: the stacks beat
    # an all-zero prediction, by a different margin per joint, so Algorithm 1 gives
    # clearly non-uniform weights (on pure noise targets it would keep them uniform). The
    # two halves of the batch get opposite noise profiles: per-replica weights differ.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, 16, 16, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    ramp = np.linspace(0.05, 1.0, k, dtype="float32")
    noise = np.where(np.arange(BATCH)[:, None, None, None] < BATCH // 2, ramp, ramp[::-1])
    targets = tuple((p + rng.normal(0, 1, p.shape) * noise * p.std()).astype("float32")
                    for p in (np.asarray(t) for t in network()(x, training=False)))
    mask = (rng.uniform(size=(BATCH, k)) > 0.2).astype("float32")
    data = tf.data.Dataset.from_tensors((x, (targets, mask))).repeat()

    def fit(strategy, bn: str, adaptive: bool, steps: int):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            net = network()
            for layer in net.layers:
                if isinstance(layer, layers.BatchNormalization):
                    if bn == "frozen":
                        layer.trainable = False     # inference mode, gamma/beta frozen too
                    elif bn == "sync":
                        layer.synchronized = True
            trainer = PoseTrainer(net, adaptive=adaptive)
            trainer.compile(optimizer=keras.optimizers.SGD(LR))
        init = [v.numpy() for v in net.weights]
        history = trainer.fit(data, epochs=1, steps_per_epoch=steps, verbose=0).history
        return net, trainer, init, history

    def compare(bn: str) -> dict:
        ref, _, init, ref_hist = fit(tf.distribute.get_strategy(), bn, False, STEPS)
        mir, _, _, mir_hist = fit(mirrored, bn, False, STEPS)
        a, b = [v.numpy() for v in ref.weights], [v.numpy() for v in mir.weights]
        update = max(float(np.abs(w - w0).max()) for w, w0 in zip(a, init))
        diff = max(float(np.abs(p - q).max()) for p, q in zip(a, b))
        return {"update": update, "diff": diff, "loss": [ref_hist["loss"][0], mir_hist["loss"][0]]}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"replicas": mirrored.num_replicas_in_sync,
               "frozen": compare("frozen"), "sync": compare("sync")}

    # Adaptive weights are per replica: replica r computes w^r from its half of the batch
    # and its gradient is that of sum_j sum_i w^r_ji Loss^r_ji / global batch; the
    # gradients are summed. Expected values, computed here on each half by hand:
    keras.utils.set_random_seed(1)
    with mirrored.scope():
        net = network()
        for layer in net.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
        trainer = PoseTrainer(net, adaptive=True)
        trainer.compile(optimizer=keras.optimizers.SGD(LR))
    init = [v.numpy() for v in net.trainable_weights]
    half = BATCH // 2
    grads, weights = None, []
    for lo in (0, half):
        sl = slice(lo, lo + half)
        with tf.GradientTape() as tape:
            preds = net(x[sl], training=True)
            total, _, _, w = stack_losses(preds, tuple(t[sl] for t in targets), mask[sl],
                                          float(BATCH), adaptive=True)
        g = [np.asarray(v) for v in tape.gradient(total, net.trainable_weights)]
        grads = g if grads is None else [p + q for p, q in zip(grads, g)]
        weights.append(np.asarray(w))
    full_w = np.asarray(stack_losses(net(x, training=True), targets, mask, float(BATCH),
                                     adaptive=True)[3])
    trainer.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    logged = trainer.pop_mean_weights()
    expected = [w0 - LR * g for w0, g in zip(init, grads)]
    results["adaptive"] = {
        "logged_vs_mean_of_halves": float(np.abs(logged - np.mean(weights, axis=0)).max()),
        "full_batch_vs_mean_of_halves": float(np.abs(full_w - np.mean(weights, axis=0)).max()),
        "step_vs_expected": max(float(np.abs(v.numpy() - e).max())
                                for v, e in zip(net.trainable_weights, expected)),
        "update": max(float(np.abs(e - w0).max()) for e, w0 in zip(expected, init))}
    Path(result_path).write_text(json.dumps(results))


def _worker_child(out_dir: str, result_path: str) -> None:
    """One task of a multi-worker run (TF_CONFIG comes from the environment)."""
    import tensorflow as tf

    from mssh_keras.training import RunOptions, train
    result = train(RunOptions(
        preset="mssh-lite", dataset="synthetic", output_dir=out_dir, epochs=1, batch_size=4,
        steps_per_epoch=2, val_examples=4, synthetic_train=8, augment=False, adaptive=True,
        learning_rate=1e-3, verbose=0, strategy="multiworker", model_overrides=TINY))
    net = result["network"]
    strategy = net.distribute_strategy
    # Which examples of a global batch does this worker get (the DATA sharding policy)?
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = tf.data.Dataset.range(64).batch(8, drop_remainder=True).with_options(options)
    first = next(iter(strategy.experimental_distribute_dataset(ds)))
    local = [t.numpy().tolist() for t in strategy.experimental_local_results(first)]
    np.savez(result_path, *[v.numpy() for v in net.trainable_weights])
    Path(result_path + ".json").write_text(json.dumps({
        "replicas": strategy.num_replicas_in_sync, "chief": result["report"] is not None,
        "first_batch": local}))


# ----------------------------------------------------------------------------- helpers
def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _Child:
    """This file run as a script in a child process, output to a log file."""

    def __init__(self, args: list[str], log: Path, **env):
        self.log = log
        with open(log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, str(HERE), *args], cwd=REPO,
                                         env=_env(**env), stdout=f, stderr=subprocess.STDOUT)

    def wait(self, deadline: float) -> None:
        """Until the child exits (killed at ``deadline``); fails with its log's tail."""
        try:
            self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.log.name}: no result in time, killed:\n{self.tail()}")
        assert self.proc.returncode == 0, (f"{self.log.name}: exit {self.proc.returncode}:"
                                           f"\n{self.tail()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


# ------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """All child processes start at once (about a minute of CPU each, mostly tracing the
    first training step): the mirrored comparison and two workers of a cluster on loopback
    ports. Whatever still runs when the module ends is killed."""
    root = tmp_path_factory.mktemp("distribute")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    kids = {"mirrored": _Child(["mirrored", str(root / "mirrored.json")],
                               root / "mirrored.log")}
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        (root / f"tmp{i}").mkdir()
        kids[f"worker{i}"] = _Child(["worker", str(root / "run"), str(root / f"w{i}.npz")],
                                    root / f"worker{i}.log", TF_CONFIG=tf_config,
                                    TMPDIR=str(root / f"tmp{i}"))
    kids["deadline"] = time.monotonic() + 420
    kids["root"] = root
    yield kids
    for kid in kids.values():
        if isinstance(kid, _Child):
            kid.kill()


@pytest.fixture(scope="module")
def mirrored(children) -> dict:
    children["mirrored"].wait(children["deadline"])
    return json.loads((children["root"] / "mirrored.json").read_text())


@pytest.fixture(scope="module")
def workers(children) -> Path:
    try:
        for i in range(2):
            children[f"worker{i}"].wait(children["deadline"])
    finally:  # one worker failing leaves the other waiting on a collective forever
        for i in range(2):
            children[f"worker{i}"].kill()
    return children["root"]


def test_mirrored_matches_single_device_with_frozen_batchnorm(mirrored):
    """Each replica gets global/2 examples and divides by the global batch; the summed
    gradients equal the single-device ones up to float summation order."""
    assert mirrored["replicas"] == 2
    r = mirrored["frozen"]
    assert r["update"] > 1e-3                         # the steps did move the weights
    assert r["diff"] <= 1e-4 * r["update"], r         # a 2x scaling error would be ~1x
    assert r["loss"][1] == pytest.approx(r["loss"][0], rel=1e-5)


def test_mirrored_matches_single_device_with_synchronized_batchnorm(mirrored):
    """Training-mode BN with all-reduced statistics: weights and moving statistics equal."""
    r = mirrored["sync"]
    assert r["update"] > 1e-3
    assert r["diff"] <= 1e-4 * r["update"], r
    assert r["loss"][1] == pytest.approx(r["loss"][0], rel=1e-5)


def test_adaptive_weights_are_computed_per_replica(mirrored):
    """Algorithm 1 runs on each replica's half batch; the log is their mean, and the step
    is the sum of the per-replica gradients (not the full-batch weighting)."""
    r = mirrored["adaptive"]
    assert r["logged_vs_mean_of_halves"] < 1e-6, r
    assert r["full_batch_vs_mean_of_halves"] > 1e-4, r   # so the check above can fail
    assert r["step_vs_expected"] <= 1e-4 * r["update"], r


def test_two_workers_see_different_halves_of_each_global_batch(workers):
    """Two local processes with TF_CONFIG: MultiWorkerMirroredStrategy, 2 replicas, and
    the DATA sharding policy gives each worker its own half of every global batch."""
    info = [json.loads((workers / f"w{i}.npz.json").read_text()) for i in range(2)]
    assert [d["replicas"] for d in info] == [2, 2]
    assert [d["chief"] for d in info] == [True, False]      # worker 0 is the chief
    halves = [d["first_batch"][0] for d in info]
    assert len(halves[0]) == 4 and sorted(halves[0] + halves[1]) == list(range(8)), halves
    # (so the equal weights below come from synchronisation, not from identical data)


def test_two_workers_end_with_the_same_weights(workers):
    """``train()`` on both workers: different data, same weights (broadcast initial
    values + all-reduced gradients)."""
    weights = []
    for i in range(2):
        with np.load(workers / f"w{i}.npz") as z:
            weights.append([z[f"arr_{j}"] for j in range(len(z.files))])
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_chief_writes_the_run_the_other_worker_cleans_up(workers):
    out = workers / "run"
    assert {"run_config.json", "history.csv", "final.keras", "best.keras", "ckpt"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "ckpt" / "latest.json").read_text())["epoch"] == 1
    # The other worker wrote into a scratch folder in its TMPDIR, removed at the end.
    assert list((workers / "tmp1").iterdir()) == []


# --------------------------------------------------------- in-process: options and rules
def test_tf_config_cluster_size(monkeypatch):
    from mssh_keras.training import TrainingError, cluster_tasks
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster_tasks() == 0
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"], "evaluator": ["d:1"]},
        "task": {"type": "worker", "index": 0}}))
    assert cluster_tasks() == 3
    monkeypatch.setenv("TF_CONFIG", "{'cluster': ")
    with pytest.raises(TrainingError, match="TF_CONFIG"):
        cluster_tasks()


def test_auto_strategy_choice():
    from mssh_keras.training import choose_strategy
    assert choose_strategy("auto", tasks=0, gpus=0) == "default"
    assert choose_strategy("auto", tasks=0, gpus=1) == "default"
    assert choose_strategy("auto", tasks=1, gpus=4) == "mirrored"
    assert choose_strategy("auto", tasks=2, gpus=8) == "multiworker"
    assert choose_strategy("mirrored", tasks=2, gpus=0) == "mirrored"


def test_learning_rate_follows_the_global_batch_by_square_root():
    from mssh_keras.config import get_preset
    from mssh_keras.training import RunOptions
    base = get_preset("mssh-lite").train
    _, t = RunOptions(batch_size=base.batch_size * 4).configs(14)
    assert t.learning_rate == pytest.approx(base.learning_rate * 2)
    _, t = RunOptions(batch_size=base.batch_size * 4, learning_rate=1e-3).configs(14)
    assert t.learning_rate == 1e-3                                  # an explicit --lr wins
    _, t = RunOptions().configs(14)
    assert (t.learning_rate, t.batch_size) == (base.learning_rate, base.batch_size)


def test_global_batch_must_split_over_the_replicas(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from mssh_keras import training
    three = SimpleNamespace(num_replicas_in_sync=3,
                            extended=SimpleNamespace(should_checkpoint=True))
    monkeypatch.setattr(training, "make_strategy", lambda name: three)
    with pytest.raises(training.TrainingError, match="split evenly over the 3 replicas"):
        training.train(training.RunOptions(batch_size=16, output_dir=str(tmp_path / "r")))
    assert not (tmp_path / "r").exists()                       # failed before writing


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"mirrored": _mirrored_child, "worker": _worker_child}[mode](*args)
