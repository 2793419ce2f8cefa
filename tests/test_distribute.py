"""Distributed training (tf.distribute): MirroredStrategy and MultiWorkerMirroredStrategy.

Each scenario runs in a child Python process (this file, run as a script): two logical CPU
devices, and the collective ops of MultiWorkerMirroredStrategy, can only be configured
before TensorFlow starts, and would otherwise leak into the other tests.

BatchNorm: each replica normalises with the statistics of its own slice of the batch, so
plain BN cannot give the weights of a single-device step. The exact comparisons therefore
freeze BN (inference mode: a fixed affine map, gamma/beta still trained), or synchronise
it (``synchronized=True``: the statistics are all-reduced over replicas). SGD, not the
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

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
LR = 0.05           # SGD rate of the mirrored comparisons
BATCH = 8           # global batch: 4 examples per replica
STEPS = 3
# The multi-worker run: one 8x8 stack of residual blocks (as test_training.py).
TINY = dict(input_size=32, schedule=(8,), filters=16, stem_filters=8, trunk_filters=16,
            min_resolution=4, block="residual")


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


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


# ------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("mirrored") / "result.json"
    proc = subprocess.run([sys.executable, str(HERE), "mirrored", str(path)], cwd=REPO,
                          env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, _tail(proc.stdout + proc.stderr)
    return json.loads(path.read_text())


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


def test_two_workers_train_in_lockstep(tmp_path):
    """Two local processes with TF_CONFIG on loopback ports: MultiWorkerMirroredStrategy
    through ``train()``. They see different halves of every global batch and end with
    the same weights; only the chief writes the run folder."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs, logs = [], []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        scratch = tmp_path / f"tmp{i}"
        scratch.mkdir()
        log = open(tmp_path / f"worker{i}.log", "w+")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, str(HERE), "worker", str(out), str(tmp_path / f"w{i}.npz")],
            cwd=REPO, env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch)), stdout=log,
            stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 400
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"worker {i} exit {p.returncode}:\n{_tail(texts[i])}"

    info = [json.loads((tmp_path / f"w{i}.npz.json").read_text()) for i in range(2)]
    assert [d["replicas"] for d in info] == [2, 2]
    assert [d["chief"] for d in info] == [True, False]      # worker 0 is the chief
    # DATA sharding: each worker keeps its own half of every global batch of 8.
    halves = [d["first_batch"][0] for d in info]
    assert sorted(halves[0] + halves[1]) == list(range(8)) and len(halves[0]) == 4, halves

    weights = []
    for i in range(2):
        with np.load(tmp_path / f"w{i}.npz") as z:
            weights.append([z[f"arr_{j}"] for j in range(len(z.files))])
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    assert {"run_config.json", "history.csv", "final.keras", "ckpt"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "ckpt" / "latest.json").read_text())["epoch"] == 1
    # The non-chief wrote into a scratch folder of its TMPDIR and removed it.
    assert list((tmp_path / "tmp1").iterdir()) == []


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"mirrored": _mirrored_child, "worker": _worker_child}[mode](*args)
