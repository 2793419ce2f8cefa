"""One training run: data -> network -> PoseTrainer.fit with checkpoints and logs.

Everything ``train.py`` does lives here so tests and benchmarks can call it directly.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .callbacks import (AdaptiveWeightLogger, Checkpointer, NaNGuard, ValidationPCK,
                        save_model_atomic)
from .codec import HeatmapCodec
from .config import ModelConfig, TrainConfig, get_preset
from .data.pipeline import Augment, eval_pipeline, training_pipeline
from .model import build_network, float32_network
from .paths import REPO, portable_path, writable_dir, write_json_atomic
from .precision import ComputeSettings, dtype_policy, resolve, set_cpu_threads
from .skeleton import Skeleton, get_skeleton
from .trainer import PoseTrainer, make_optimizer

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
    lr_drops: tuple[int, ...] | None = None
    optimizer: str | None = None
    lr_schedule: str | None = None
    warmup_steps: int | None = None
    weight_decay: float | None = None
    sigma: float | None = None
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
    rotation: float | None = None      # augmentation: max rotation in degrees
    rotation_prob: float | None = None  # share of training examples rotated
    zoom_out: float | None = None      # augmentation: whole-frame-like views, person down to
    zoom_out_prob: float | None = None  # 1/zoom_out of a crop, on this share (Augment)
    upright_prob: float | None = None  # augmentation: crops turned torso-up, this share
    # --dataset coco: a COCO keypoints file and its images (data/coco.py); validation on
    # val_annotations, or on the file's deterministic hold-out without one.
    annotations: str | None = None
    images: str | None = None
    val_annotations: str | None = None
    val_images: str | None = None
    category: str | None = None        # which keypoint category, when the file has several
    flip_pairs: str | None = None      # override the left/right pairs derived from the names
    # Fine-tuning (finetune.py): start from this trained .keras network (its architecture);
    # the pre-processing network stays frozen for the first freeze_trunk_epochs epochs.
    init: str | None = None
    freeze_trunk_epochs: int = 0
    precision: str = "auto"            # fp32 | bf16 | auto (per device, precision.py)
    jit: str = "auto"                  # XLA: on | off | auto
    threads: int | None = None         # CPU threads per op (None: TensorFlow's default)
    # ModelConfig fields replaced last (after input_size's schedule scaling), e.g. a tiny
    # network for tests: {"schedule": (8,), "filters": 16}.
    model_overrides: dict = field(default_factory=dict)

    def configs(self, num_joints: int) -> tuple[ModelConfig, TrainConfig]:
        preset = get_preset(self.preset)
        m, t = preset.model.replace(num_joints=num_joints), preset.train
        model_kw = {k: v for k, v in (("input_size", self.input_size), ("fusion", self.fusion),
                                      ("lateral", self.lateral), ("block", self.block))
                    if v is not None}
        if "input_size" in model_kw:  # keep each stack's stride when the input changes
            f = model_kw["input_size"] / m.input_size
            model_kw["schedule"] = tuple(int(r * f) for r in m.schedule)
        train_kw = {k: getattr(self, k) for k in (
            "epochs", "batch_size", "learning_rate", "lr_drops", "adaptive", "optimizer",
            "lr_schedule", "warmup_steps", "weight_decay", "sigma")
            if getattr(self, k) is not None}
        if self.batch_size is not None and self.learning_rate is None:
            train_kw["learning_rate"] = scaled_learning_rate(t.learning_rate, t.batch_size,
                                                             self.batch_size)
        return (m.replace(**model_kw).replace(**self.model_overrides),
                dataclasses.replace(t, **train_kw))


def saved_options(output_dir: str | os.PathLike) -> dict | None:
    """The options a run in ``output_dir`` was started with (None when there is none)."""
    path = Path(output_dir) / "run_config.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        options = record["options"]
    except (ValueError, KeyError, TypeError) as err:
        raise TrainingError(f"{path} is not a run configuration ({err}); restore it from "
                            f"a copy or start a new --output-dir") from None
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    # Runs started before "paths_relative_to" stored their paths relative to the repository.
    base = Path(output_dir) if record.get("paths_relative_to") == "run folder" else REPO
    for key in PATH_OPTIONS:
        if options.get(key):
            options[key] = os.path.normpath(base / Path(options[key]).expanduser())
    return options


def run_relative_path(path: str | os.PathLike | None, run_dir: str | os.PathLike) -> str | None:
    """``path`` relative to the run folder (portable_path where no relative path exists,
    e.g. another Windows drive): a resumed run finds its data from any current folder, and
    a committed run_config.json carries no absolute path of the machine that wrote it."""
    if path is None:
        return None
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(run_dir))).as_posix()
    except ValueError:
        return portable_path(path)


def scaled_learning_rate(base_lr: float, base_batch: int, batch: int) -> float:
    """The preset's RMSprop rate carried to another global batch: x sqrt(batch / base).

    The loss is a mean over the global batch, so a bigger batch gives the same gradient
    with less noise. Square-root scaling is the rule for adaptive optimizers such as
    RMSprop/Adam (Malladi et al., NeurIPS 2022, "On the SDEs and scaling rules for
    adaptive gradient algorithms"); the linear rule (Goyal et al., 2017) is SGD's.
    Applied only when --batch-size is given without --lr.
    """
    return float(base_lr * math.sqrt(batch / base_batch))


def dataset_skeleton(name: str) -> Skeleton:
    from .data.datasets import DATASET_SKELETON
    if name not in DATASET_SKELETON:
        raise TrainingError(f"unknown dataset {name!r}; choose one of "
                            f"{', '.join(sorted([*DATASET_SKELETON, 'coco']))}")
    return get_skeleton(DATASET_SKELETON[name])


# Options that are paths: run_config.json stores them relative to the repository.
PATH_OPTIONS = ("data_dir", "manual_dir", "annotations", "images", "val_annotations",
                "val_images", "init")
COCO_OPTIONS = ("annotations", "images", "val_annotations", "val_images", "category",
                "flip_pairs")


def coco_source(opts: RunOptions):
    """The run's COCO-format dataset (``--dataset coco``), or None for the others."""
    from .data.coco import CocoSource

    given = [f"--{k.replace('_', '-')}" for k in COCO_OPTIONS if getattr(opts, k)]
    if opts.dataset != "coco":
        if given:
            raise TrainingError(f"{', '.join(given)}: only for --dataset coco (a COCO "
                                f"keypoints file), not --dataset {opts.dataset}")
        return None
    if not opts.annotations:
        raise TrainingError("--dataset coco needs --annotations FILE.json (COCO keypoints) "
                            "and --images DIR (default: the JSON's folder)")
    return CocoSource(opts.annotations, opts.images, opts.val_annotations, opts.val_images,
                      opts.category, opts.flip_pairs)


def run_skeleton(opts: RunOptions) -> Skeleton:
    """The joint set the run trains: the dataset's, or a COCO file's category's."""
    source = coco_source(opts)
    return source.skeleton if source is not None else dataset_skeleton(opts.dataset)


def load_examples(opts: RunOptions, split: str) -> tf.data.Dataset:
    """Example dicts of the run's dataset ('train' or 'val' = its evaluation split)."""
    from .data import datasets
    source = coco_source(opts)
    if source is not None:
        return source.examples("train" if split == "train" else "val")
    real_split = "train" if split == "train" else datasets.EVAL_SPLIT[opts.dataset]
    size = (opts.model_overrides.get("input_size") or opts.input_size
            or get_preset(opts.preset).model.input_size)
    num = opts.synthetic_train if split == "train" else opts.val_examples
    return datasets.load(opts.dataset, real_split, opts.data_dir, opts.manual_dir,
                         size=size, num=num, seed=opts.seed)


def cluster_tasks() -> int:
    """How many training tasks (chief + workers) TF_CONFIG describes; 0 when it is unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
        return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    except (ValueError, AttributeError, TypeError) as err:
        raise TrainingError(f"TF_CONFIG is not a JSON object with a 'cluster' of task "
                            f"lists ({err}): {raw[:200]}") from None


def choose_strategy(name: str, tasks: int, gpus: int) -> str:
    """What ``auto`` means for a cluster of ``tasks`` TF_CONFIG tasks and ``gpus`` GPUs."""
    if name != "auto":
        return name
    return "multiworker" if tasks > 1 else "mirrored" if gpus > 1 else "default"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``--strategy``.

    auto = multiworker when TF_CONFIG describes a cluster of several tasks, mirrored when
    more than one GPU is visible, else the default (single-device) strategy. Call it
    before any other TensorFlow op: MultiWorkerMirroredStrategy configures collective ops,
    which TF only allows before the runtime starts; that is why only *physical* devices
    are listed here (listing logical ones would start it).
    """
    tasks = cluster_tasks()
    gpus = len(tf.config.list_physical_devices("GPU")) if name == "auto" else 0
    name = choose_strategy(name, tasks, gpus)
    if name in ("default", "mirrored") and tasks > 1:
        print(f"warning: TF_CONFIG describes {tasks} tasks but --strategy {name} trains "
              f"each one on its own; use --strategy multiworker (or auto)", file=sys.stderr)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"unknown strategy {name!r}; use auto, default, mirrored or multiworker")


def _config_record(opts, mcfg, tcfg, skeleton) -> dict:
    from .data.coco import skeleton_definition

    options = dataclasses.asdict(opts)
    options["output_dir"] = portable_path(options["output_dir"])  # no absolute machine paths
    for key in PATH_OPTIONS:  # relative to the run folder: --resume finds them from anywhere
        options[key] = run_relative_path(options[key], opts.output_dir)
    # "skeleton": the joint set's name (lsp14, mpii16, or e.g. person17 for a COCO file);
    # "skeleton_definition": all of it (joints, flip pairs, limbs, torso), which export and
    # PoseEstimator read for a joint set the code does not know.
    return {"options": options, "paths_relative_to": "run folder",
            "model": dataclasses.asdict(mcfg),
            "train": dataclasses.asdict(tcfg), "skeleton": skeleton.name,
            "skeleton_definition": skeleton_definition(skeleton)}


def init_config(opts: RunOptions, num_joints: int, mcfg: ModelConfig,
                saved: dict | None) -> ModelConfig:
    """The architecture of a run with ``--init``: the init model's own (its metadata or
    run_config.json, read without TensorFlow) with this run's joint count; without those
    files the preset's, checked layer by layer when the weights load. A resumed run keeps
    its saved architecture (the weights come from the checkpoint). Architecture options
    that contradict the init model are refused."""
    from .finetune import InitError, check_init_file, describe_init

    if saved is not None:
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["model"].items()}
        return ModelConfig(**cfg)
    try:
        check_init_file(opts.init)
    except InitError as err:
        raise TrainingError(str(err)) from None
    config = describe_init(opts.init)["config"]
    if config is None:
        return mcfg
    cfg = ModelConfig(**{**config, "num_joints": num_joints})
    given = {k: v for k, v in (("input_size", opts.input_size), ("fusion", opts.fusion),
                               ("lateral", opts.lateral), ("block", opts.block))
             if v is not None and getattr(cfg, k) != v}
    if given:
        raise TrainingError(f"--init {opts.init} fixes the architecture "
                            f"({', '.join(f'{k}={getattr(cfg, k)!r}' for k in given)}); "
                            f"drop {', '.join('--' + k.replace('_', '-') for k in given)}")
    return cfg


def train(opts: RunOptions) -> dict:
    """Run (or resume) a training; returns the final validation report and paths."""
    skeleton = run_skeleton(opts)
    mcfg, tcfg = opts.configs(skeleton.num_joints)
    if opts.init:  # no TensorFlow yet (see below): the init model loads further down
        cfg_path = Path(opts.output_dir) / "run_config.json"
        saved = json.loads(cfg_path.read_text()) if opts.resume and cfg_path.is_file() else None
        mcfg = init_config(opts, skeleton.num_joints, mcfg, saved)
    elif opts.freeze_trunk_epochs:
        raise TrainingError("--freeze-trunk-epochs needs --init (a trained network to keep)")
    # First of all: thread pools and MultiWorkerMirroredStrategy must be set up before
    # any TF op runs.
    set_cpu_threads(opts.threads)
    strategy = make_strategy(opts.strategy)
    compute = resolve(opts.precision, opts.jit, gpu=bool(tf.config.list_physical_devices("GPU")))
    chief = _is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if tcfg.batch_size % replicas:  # PoseTrainer assumes equal slices: global = local x n
        raise TrainingError(f"--batch-size {tcfg.batch_size} is the global batch and must "
                            f"split evenly over the {replicas} replicas (GPUs x workers)")
    out = Path(opts.output_dir)
    if chief:
        writable_dir(out, "output folder", "--output-dir")  # one line if a file / read-only
    record = _config_record(opts, mcfg, tcfg, skeleton)
    cfg_path = out / "run_config.json"
    state = Checkpointer.latest(out)
    if state is not None and not opts.resume:
        raise TrainingError(f"{out} already holds a run (epoch {state['epoch']}); pass --resume "
                            f"to continue it or choose another --output-dir")
    if opts.resume:
        check_same_skeleton(cfg_path, skeleton)
        if state is None:
            shared = "" if chief else (" (every worker reads the chief's checkpoint: put "
                                       "--output-dir on storage all workers share)")
            raise TrainingError(f"--resume: no checkpoint in {out / 'ckpt'}{shared}")
        saved = json.loads(cfg_path.read_text())
        if saved["model"] != json.loads(json.dumps(dataclasses.asdict(mcfg))):
            raise TrainingError(f"--resume: the model options differ from the run in {out}")
    elif chief:
        write_json_atomic(cfg_path, record)
    keras.utils.set_random_seed(opts.seed)

    train_examples = load_examples(opts, "train")
    n_train = int(train_examples.cardinality())
    steps = opts.steps_per_epoch or (n_train // tcfg.batch_size if n_train > 0 else None)
    if not steps:
        raise TrainingError("cannot tell the training set's size: pass --steps-per-epoch")
    # --batch-size is the GLOBAL batch: fit() splits each batch over the replicas (and
    # workers). Sharding by DATA: every worker runs the whole pipeline and keeps its slice
    # of each global batch, so a step sees the examples of a single-device step (up to
    # the few neighbours an augmenting, non-deterministic parallel map may reorder
    # differently per worker). FILE sharding would need >= one file per worker (TFDS
    # builds LSP/LSPET in very few shards, synthetic data has none) and changes the
    # example order; DATA's cost is that each worker also crops the examples it drops.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # A resumed run continues the data stream where it stopped instead of replaying its
    # start: the same shuffled examples as an uninterrupted run. The examples already
    # trained on are skipped before cropping (their images are still read and decoded).
    done = state["epoch"] * steps * tcfg.batch_size if opts.resume else 0
    train_ds = training_pipeline(
        train_examples.repeat(), skeleton, HeatmapCodec.from_config(mcfg, tcfg),
        tcfg.batch_size, augmentation(opts), seed=opts.seed, skip=done).with_options(options)
    val_batches = []
    if chief:  # validation runs on the chief only, with the plain network, no collectives
        val_examples = load_examples(opts, "val").take(opts.val_examples)
        val_batches = list(eval_pipeline(val_examples, skeleton, mcfg.input_size, 32)
                           .as_numpy_iterator())
        if not val_batches:
            raise TrainingError(f"the validation split of {opts.dataset} is empty")

    init = None
    if opts.init and not opts.resume:  # a resumed run restores its checkpoint instead
        from .finetune import InitError, read_init, transfer_weights
        try:
            init = read_init(opts.init)
        except InitError as err:
            raise TrainingError(str(err)) from None
    with strategy.scope():
        trainer = build_trainer(mcfg, tcfg, compute, steps, name=opts.preset.replace("-", "_"))
        network = trainer.network
        if init is not None:
            try:
                loaded = transfer_weights(network, init, skeleton.joints)
            except InitError as err:
                raise TrainingError(str(err)) from None
            if chief:
                copied = loaded["joints_copied"]
                print(f"initialised from {opts.init}: {loaded['layers']} layers; heatmap "
                      f"heads {loaded['heads']}" + (
                          f" ({len(copied)} of {skeleton.num_joints} joints copied by name)"
                          if loaded["heads"] == "rebuilt" else ""))
    twin: list[keras.Model] = []  # the float32 copy saved for a bfloat16 network, made once

    def portable() -> keras.Model:
        twin[:] = [float32_network(network, mcfg, twin[0] if twin else None)]
        return twin[0]
    initial_epoch, best = 0, -math.inf
    if opts.resume:
        with strategy.scope():  # optimizer slots must be (mirrored) strategy variables
            state = Checkpointer.restore(out, trainer, network)
        initial_epoch, best = state["epoch"], state["best"]
        print(f"resuming {out} after epoch {initial_epoch} (best val PCK {best:.1f} %)")

    # Non-chief workers run the same callbacks (so any collective op inside a save stays
    # in step) but write into a private scratch folder, deleted when training ends.
    work = out if chief else Path(tempfile.mkdtemp(prefix="mssh_worker_"))
    nan_guard = NaNGuard()
    val_cb = ValidationPCK(val_batches, network, skeleton, nan_guard) if chief else None
    freeze = []
    if opts.freeze_trunk_epochs:
        from .finetune import FreezeTrunk
        freeze = [FreezeTrunk(network, opts.freeze_trunk_epochs)]
    callbacks = [nan_guard, *([val_cb] if chief else []), *freeze,
                 Checkpointer(work, network, nan_guard, best=best, portable=portable),
                 keras.callbacks.CSVLogger(str(work / "history.csv"), append=True),
                 keras.callbacks.TensorBoard(str(work / "logs"), update_freq="epoch")]
    if tcfg.adaptive:
        callbacks.append(AdaptiveWeightLogger(work / "logs", skeleton.joints))
    if chief:
        print(f"training {opts.preset} in {compute.describe()}, {steps} steps of "
              f"{tcfg.batch_size} per epoch")
    t0 = time.time()
    try:
        # shuffle=False: the tf.data pipeline shuffles (and resumes its order) itself.
        trainer.fit(train_ds, epochs=tcfg.epochs, initial_epoch=initial_epoch,
                    steps_per_epoch=steps, callbacks=callbacks, shuffle=False,
                    verbose=opts.verbose if chief else 0)
    finally:
        if not chief:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.time() - t0
    if nan_guard.failure:
        last = Checkpointer.latest(out)
        kept = f"epoch {last['epoch']}" if last else "nothing (no epoch finished)"
        raise TrainingError(f"{nan_guard.failure}; training stopped. Last saved checkpoint: "
                            f"{kept} in {out / 'ckpt'} (resume with --resume, maybe a lower "
                            f"--lr)")
    # Workers return report None: the chief alone validates and saves.
    report = (val_cb.last_report or val_cb.evaluate()) if chief else None
    if chief:
        save_model_atomic(portable(), out / "final.keras")
    return {"report": report, "seconds": seconds, "steps_per_epoch": steps,
            "output_dir": str(out), "network": network}


def check_same_skeleton(cfg_path: Path, skeleton: Skeleton) -> None:
    """Refuse to resume a run whose joints changed (e.g. an edited COCO category)."""
    try:
        saved = json.loads(cfg_path.read_text()).get("skeleton_definition")
    except (OSError, ValueError, AttributeError):
        return
    if saved and list(saved.get("joints", [])) != list(skeleton.joints):
        raise TrainingError(f"--resume: {cfg_path} trained joints {saved['joints']}, the data "
                            f"now has {list(skeleton.joints)}: start a new --output-dir (or "
                            f"--init from this run's best.keras)")


def augmentation(opts: RunOptions) -> Augment | None:
    """The run's augmentation: the defaults of ``Augment`` with the options' overrides."""
    if not opts.augment:
        return None
    kw = {k: getattr(opts, k) for k in ("rotation", "rotation_prob", "zoom_out",
                                         "zoom_out_prob", "upright_prob")
          if getattr(opts, k) is not None}
    return Augment(**kw)


def build_trainer(mcfg: ModelConfig, tcfg: TrainConfig, compute: ComputeSettings,
                  steps_per_epoch: int, name: str = "mssh") -> PoseTrainer:
    """Network + PoseTrainer compiled as a run trains it (call in the strategy's scope).

    The optimizer is built by PoseTrainer._maybe_symbolic_build before the first traced
    step (or by Checkpointer.restore on resume), never inside the trace.
    """
    with dtype_policy(compute.precision):
        network = build_network(mcfg, name=name)
    trainer = PoseTrainer(network, adaptive=tcfg.adaptive)
    trainer.compile(optimizer=make_optimizer(tcfg, steps_per_epoch), jit_compile=compute.jit)
    return trainer


def _is_chief(strategy) -> bool:
    """Whether this task writes checkpoints/logs/exports: always, except under
    MultiWorkerMirroredStrategy, where only the "chief" task (or worker 0 when the
    cluster names no chief) does."""
    return bool(strategy.extended.should_checkpoint)
