"""One training run: data -> network -> PoseTrainer.fit with checkpoints and logs.

Everything ``train.py`` does lives here so tests and benchmarks can call it directly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .callbacks import (AdaptiveWeightLogger, Checkpointer, NaNGuard, ValidationPCK,
                        write_json_atomic)
from .config import ModelConfig, TrainConfig, get_preset
from .data.pipeline import Augment, eval_pipeline, training_pipeline
from .model import build_network
from .skeleton import Skeleton, get_skeleton
from .trainer import PoseTrainer, make_optimizer

REAL_DATASETS = ("lsp", "lspet", "mpii", "lsp+lspet")
# Which split validates which dataset.
VAL_SPLIT = {"lsp": "test", "lsp+lspet": "test", "lspet": "val", "mpii": "val",
             "synthetic": "val"}


class TrainingError(RuntimeError):
    """A run that cannot start or continue, with a message naming the problem."""


@dataclass
class RunOptions:
    preset: str = "mssh-lite"
    dataset: str = "synthetic"
    output_dir: str = "runs/default"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    input_size: int | None = None
    steps_per_epoch: int | None = None
    val_examples: int = 256
    adaptive: bool | None = None
    fusion: str | None = None
    lateral: bool | None = None
    block: str | None = None
    resume: bool = False
    data_dir: str | None = None
    manual_dir: str | None = None
    synthetic_train: int = 2000
    seed: int = 0
    strategy: str = "auto"
    verbose: int | str = "auto"
    augment: bool = True
    extra: dict = field(default_factory=dict)

    def configs(self, num_joints: int) -> tuple[ModelConfig, TrainConfig]:
        preset = get_preset(self.preset)
        m, t = preset.model.replace(num_joints=num_joints), preset.train
        model_kw = {k: v for k, v in (("input_size", self.input_size), ("fusion", self.fusion),
                                      ("lateral", self.lateral), ("block", self.block))
                    if v is not None}
        if "input_size" in model_kw:  # keep each stack's stride when the input changes
            f = model_kw["input_size"] / m.input_size
            model_kw["schedule"] = tuple(int(r * f) for r in m.schedule)
        train_kw = {k: v for k, v in (("epochs", self.epochs), ("batch_size", self.batch_size),
                                      ("learning_rate", self.learning_rate),
                                      ("adaptive", self.adaptive)) if v is not None}
        return m.replace(**model_kw), dataclasses.replace(t, **train_kw)


def dataset_skeleton(name: str) -> Skeleton:
    if name == "synthetic":
        return get_skeleton("lsp14")
    if name == "synthetic-mpii":
        return get_skeleton("mpii16")
    from .data.datasets import DATASET_SKELETON
    if name not in DATASET_SKELETON:
        raise TrainingError(f"unknown dataset {name!r}; choose synthetic, synthetic-mpii or "
                            f"{', '.join(sorted(DATASET_SKELETON))}")
    return get_skeleton(DATASET_SKELETON[name])


def load_examples(opts: RunOptions, split: str) -> tf.data.Dataset:
    """Example dicts of the run's dataset ('train' or 'val' = its validation split)."""
    if opts.dataset.startswith("synthetic"):
        from .data.synthetic import SyntheticPose
        size = opts.input_size or get_preset(opts.preset).model.input_size
        synth = SyntheticPose(dataset_skeleton(opts.dataset).name, size=size,
                              num_train=opts.synthetic_train if split == "train" else 0,
                              num_val=opts.val_examples if split == "val" else 0,
                              seed=opts.seed)
        return synth.as_dataset(split)
    from .data import datasets
    real_split = "train" if split == "train" else VAL_SPLIT[opts.dataset]
    return datasets.load(opts.dataset, real_split, opts.data_dir, opts.manual_dir)


def make_strategy(name: str) -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"unknown strategy {name!r}; use auto, default, mirrored or multiworker")


def _config_record(opts, mcfg, tcfg, skeleton) -> dict:
    return {"options": dataclasses.asdict(opts), "model": dataclasses.asdict(mcfg),
            "train": dataclasses.asdict(tcfg), "skeleton": skeleton.name}


def train(opts: RunOptions) -> dict:
    """Run (or resume) a training; returns the final validation report and paths."""
    skeleton = dataset_skeleton(opts.dataset)
    mcfg, tcfg = opts.configs(skeleton.num_joints)
    out = Path(opts.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = _config_record(opts, mcfg, tcfg, skeleton)
    cfg_path = out / "run_config.json"
    state = Checkpointer.latest(out)
    if state is not None and not opts.resume:
        raise TrainingError(f"{out} already holds a run (epoch {state['epoch']}); pass --resume "
                            f"to continue it or choose another --output-dir")
    if opts.resume:
        if state is None:
            raise TrainingError(f"--resume: no checkpoint in {out / 'ckpt'}")
        saved = json.loads(cfg_path.read_text())
        if saved["model"] != json.loads(json.dumps(dataclasses.asdict(mcfg))):
            raise TrainingError(f"--resume: the model options differ from the run in {out}")
    else:
        write_json_atomic(cfg_path, record)
    keras.utils.set_random_seed(opts.seed)

    strategy = make_strategy(opts.strategy)
    train_examples = load_examples(opts, "train")
    val_examples = load_examples(opts, "val").take(opts.val_examples)
    n_train = int(train_examples.cardinality())
    steps = opts.steps_per_epoch or (n_train // tcfg.batch_size if n_train > 0 else None)
    if not steps:
        raise TrainingError("cannot tell the training set's size: pass --steps-per-epoch")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = training_pipeline(
        train_examples.repeat(), skeleton, mcfg.input_size, mcfg.schedule, tcfg.batch_size,
        tcfg.sigma, tcfg.visible_amplitude, tcfg.occluded_amplitude,
        Augment() if opts.augment else None, seed=opts.seed).with_options(options)
    val_batches = list(eval_pipeline(val_examples, skeleton, mcfg.input_size, 32)
                       .as_numpy_iterator())
    if not val_batches:
        raise TrainingError(f"the validation split of {opts.dataset} is empty")

    with strategy.scope():
        network = build_network(mcfg, name=opts.preset.replace("-", "_"))
        trainer = PoseTrainer(network, adaptive=tcfg.adaptive)
        trainer.compile(optimizer=make_optimizer(tcfg.learning_rate, tcfg.lr_drops,
                                                 tcfg.lr_drop_factor, steps))
    initial_epoch, best = 0, -math.inf
    if opts.resume:
        state = Checkpointer.restore(out, trainer, network)
        initial_epoch, best = state["epoch"], state["best"]
        print(f"resuming {out} after epoch {initial_epoch} (best val PCK {best:.1f} %)")

    chief = _is_chief(strategy)
    work = out if chief else Path(os.environ.get("TMPDIR", "/tmp")) / f"worker_{os.getpid()}"
    nan_guard = NaNGuard()
    val_cb = ValidationPCK(val_batches, network, skeleton)
    callbacks = [nan_guard, val_cb,
                 Checkpointer(work, network, nan_guard, best=best),
                 keras.callbacks.CSVLogger(str(work / "history.csv"), append=True),
                 keras.callbacks.TensorBoard(str(work / "logs"), update_freq="epoch")]
    if tcfg.adaptive:
        callbacks.append(AdaptiveWeightLogger(work / "logs", skeleton.joints))
    t0 = time.time()
    trainer.fit(train_ds, epochs=tcfg.epochs, initial_epoch=initial_epoch,
                steps_per_epoch=steps, callbacks=callbacks, verbose=opts.verbose)
    seconds = time.time() - t0
    if nan_guard.failure:
        last = Checkpointer.latest(out)
        kept = f"epoch {last['epoch']}" if last else "nothing (no epoch finished)"
        raise TrainingError(f"{nan_guard.failure}; training stopped. Last saved checkpoint: "
                            f"{kept} in {out / 'ckpt'} (resume with --resume, maybe a lower "
                            f"--lr)")
    report = val_cb.last_report or val_cb.evaluate()
    if chief:
        network.save(out / "final.keras")
    return {"report": report, "seconds": seconds, "steps_per_epoch": steps,
            "output_dir": str(out), "network": network}


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
