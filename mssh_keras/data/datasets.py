"""One entry point for every dataset: ``load(name, split, ...) -> tf.data.Dataset``.

Each element is a dict of the example contract: image uint8 (H, W, 3) RGB, joints float32
(K, 2) 0-based pixels, flags int32 (K,) 2/1/0, center float32 (2,), scale float32 (),
image_id string. Real datasets go through their TFDS builder, which is prepared from
``manual_dir`` on first use and read from ``data_dir`` afterwards. The prepared copy
records what it was built from; a later ``manual_dir`` with other files is refused with
a message (delete the prepared folder to rebuild), never silently ignored.

Names: "lsp", "lspet", "mpii" and the combination "lsp+lspet" (the usual LSP training
set: LSP train + all of LSPET; its "test" split is LSP test). For combinations,
``manual_dir`` holds one folder per dataset (MANUAL/lsp, MANUAL/lspet).
"""
from __future__ import annotations

import contextlib
import os

import numpy as np
import tensorflow as tf

from mssh_keras.data.records import DatasetFilesError

# The embedded offline sets, and their joint sets.
SYNTHETIC = {"synthetic": "lsp14", "synthetic-mpii": "mpii16"}
# Joint set of every name `load` accepts.
DATASET_SKELETON = {"lsp": "lsp14", "lspet": "lsp14", "lsp+lspet": "lsp14", "mpii": "mpii16",
                    **SYNTHETIC}
# The split each dataset is validated/evaluated on.
EVAL_SPLIT = {"lsp": "test", "lsp+lspet": "test", "lspet": "val", "mpii": "val",
              "synthetic": "val", "synthetic-mpii": "val"}

# Our split names per dataset; "all" is the union of the stored TFDS splits (TFDS
# reserves the name "all" itself).
SPLITS = {"lsp": ("train", "test", "all"), "lspet": ("train", "val", "all"),
          "mpii": ("train", "val", "all")}

# Combination name -> split -> the (dataset, split) parts, concatenated in this order.
COMBINATIONS = {
    "lsp+lspet": {"train": (("lsp", "train"), ("lspet", "all")),
                  "test": (("lsp", "test"),)},
}

CONTRACT_KEYS = ("image", "joints", "flags", "center", "scale", "image_id")


def dataset_names() -> list[str]:
    return sorted(DATASET_SKELETON)


def load(name: str, split: str, data_dir: str | None = None,
         manual_dir: str | None = None, *, size: int = 128, num: int | None = None,
         seed: int = 0) -> tf.data.Dataset:
    """Decoded examples of ``name``/``split`` (see the module docstring).

    "synthetic" / "synthetic-mpii" (LSP-14 / MPII-16 figures, splits train/val) are rendered
    offline at ``size`` pixels; ``num`` examples (default 2000 train, 256 val).
    """
    if name in SYNTHETIC:
        from mssh_keras.data.synthetic import SyntheticPose
        if split not in ("train", "val"):
            raise ValueError(f"{name}: unknown split {split!r}; known: ['train', 'val']")
        n = num if num is not None else (2000 if split == "train" else 256)
        synth = SyntheticPose(SYNTHETIC[name], size=size, num_train=n if split == "train" else 0,
                              num_val=n if split == "val" else 0, seed=seed)
        return synth.as_dataset(split)
    if name in COMBINATIONS:
        parts = COMBINATIONS[name].get(split)
        if parts is None:
            known = sorted(COMBINATIONS[name])
            raise ValueError(f"{name}: unknown split {split!r}; known: {known}")
        datasets = [_load_real(part, part_split, data_dir,
                               None if manual_dir is None else os.path.join(manual_dir, part))
                    for part, part_split in parts]
        ds = datasets[0]
        for other in datasets[1:]:
            ds = ds.concatenate(other)
        return ds
    if name in SPLITS:
        return _load_real(name, split, data_dir, manual_dir)
    raise ValueError(f"unknown dataset {name!r}; known: {dataset_names()}")


def _load_real(name: str, split: str, data_dir: str | None,
               manual_dir: str | None) -> tf.data.Dataset:
    import tensorflow_datasets as tfds

    from mssh_keras.data.tfds_builders import (BUILDERS, check_source, is_prepared,
                                               record_source)

    if split not in SPLITS[name]:
        raise ValueError(f"{name}: unknown split {split!r}; known: {sorted(SPLITS[name])}")
    with _preparing(BUILDERS[name](data_dir=data_dir)):
        # Made under the lock: a builder made before it would keep the empty split list it
        # read while another process was still preparing the dataset.
        builder = BUILDERS[name](data_dir=data_dir)
        prepared = is_prepared(builder)
        if prepared and manual_dir is not None:  # built from these files? (else refuse)
            check_source(builder, manual_dir)
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False))
        except AssertionError as e:  # TFDS's way of saying "manual_dir is missing or empty"
            if "Manual directory" not in str(e):
                raise
            raise DatasetFilesError(f"{name}: {e}") from None
        if not prepared and manual_dir is not None:
            record_source(builder, manual_dir)
    stored = builder.info.splits
    if split == "all":
        spec = "+".join(s for s in SPLITS[name] if s in stored)
    elif split in stored:
        spec = split
    else:
        raise ValueError(f"{name}: split {split!r} was not built (no usable example in the "
                         f"manual files); built: {sorted(stored)}")
    ds = builder.as_dataset(split=spec)
    return ds.map(_to_contract, num_parallel_calls=tf.data.AUTOTUNE)


def _to_contract(example: dict) -> dict:
    return {"image": tf.ensure_shape(example["image"], (None, None, 3)),
            "joints": example["joints"], "flags": example["flags"],
            "center": example["center"], "scale": example["scale"],
            "image_id": example["image_id"],
            **({"head_size": example["head_size"]} if "head_size" in example else {})}


def from_records(records: list[dict]) -> tf.data.Dataset:
    """Examples straight from reader records (no TFDS preparation): each image is read and
    decoded on the fly. For small fixed subsets (tests, quick evaluations)."""
    if not records:
        raise ValueError("from_records: no records")
    columns = {k: np.stack([r[k] for r in records]) for k in ("joints", "flags", "center",
                                                               "scale")}
    columns["path"] = np.array([r["path"] for r in records])
    columns["image_id"] = np.array([r["image_id"] for r in records])

    def decode(ex):
        image = tf.io.decode_image(tf.io.read_file(ex["path"]), channels=3,
                                   expand_animations=False)
        out = {k: v for k, v in ex.items() if k != "path"}
        out["image"] = tf.ensure_shape(image, (None, None, 3))
        return out

    return tf.data.Dataset.from_tensor_slices(columns).map(decode)


@contextlib.contextmanager
def _preparing(builder):
    """Hold an exclusive lock on the dataset's folder while it is checked and prepared.

    Two trainings (or test workers) started together on an unprepared dataset would both
    build it and race on TFDS's final rename; with the lock the second waits, then finds
    it prepared. No-op where ``fcntl`` does not exist (Windows).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = os.path.dirname(builder.data_dir)  # DATA_DIR/<name>, above the version folder
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".prepare.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
