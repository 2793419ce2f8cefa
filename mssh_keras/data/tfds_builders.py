"""TFDS builders for LSP, LSPET and MPII, fed only from manually placed official files.

Importing this module registers ``lsp``, ``lspet`` and ``mpii`` with TFDS. Nothing is
downloaded: each builder reads ``manual_dir`` (the dataset folder itself, or a folder that
holds it under the dataset's name, e.g. ``MANUAL/lspet/joints.mat``), lists records with
the readers in this package, checks every image (``check_records`` with a full decode by
TensorFlow's decoder, the one training uses, so a truncated or corrupt file is skipped and
logged with its name at build time instead of crashing an epoch later) and stores each
JPEG's bytes unchanged.

What each prepared dataset was built from (the manual folder, its files' names, sizes and
CRC-32 checksums, and a digest of them) is recorded next to it in
``SOURCE_RECORD``; ``check_source`` refuses, with a message saying what to do, a
``manual_dir`` whose files differ, instead of silently reading the old prepared data.

Splits: lsp train/test, lspet train/val (TFDS reserves "all"; use "train+val"),
mpii train/val.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from mssh_keras.data import lsp, lspet, mpii
from mssh_keras.data.records import DatasetFilesError, check_records, summarize_names
from mssh_keras.paths import portable_path, write_json_atomic

log = logging.getLogger(__name__)

VERSION = tfds.core.Version("1.0.0")
RELEASE_NOTES = {"1.0.0": "Official annotations, 0-based pixels, flags 0/1/2, hourglass boxes."}


def features(num_joints: int, head_size: bool = False) -> tfds.features.FeaturesDict:
    """The example contract as TFDS features (image bytes kept as the original JPEG)."""
    extra = {"head_size": tfds.features.Tensor(shape=(), dtype=np.float32)} if head_size else {}
    return tfds.features.FeaturesDict({**extra,
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "joints": tfds.features.Tensor(shape=(num_joints, 2), dtype=np.float32),
        "flags": tfds.features.Tensor(shape=(num_joints,), dtype=np.int32),
        "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "scale": tfds.features.Tensor(shape=(), dtype=np.float32),
        "image_id": tfds.features.Text(),
    })


def resolve_manual_root(manual_dir: Path, name: str, marker: str, instructions: str) -> Path:
    """``manual_dir`` if it holds ``marker``, else ``manual_dir/name`` if that does."""
    for candidate in (manual_dir, manual_dir / name):
        if (candidate / marker).exists():
            return candidate
    raise DatasetFilesError(f"{name}: {marker} found neither in {manual_dir} nor in "
                            f"{manual_dir / name}.\n{instructions}")


class _PoseBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared part: subclasses say which reader lists which split."""

    VERSION = VERSION
    RELEASE_NOTES = RELEASE_NOTES
    NUM_JOINTS = 14
    MARKER = "joints.mat"
    HOMEPAGE = ""
    SPLIT_NAMES: tuple[str, ...] = ()
    # Full decode of every image while building (a few ms each, once): damage inside the
    # JPEG data would otherwise only show when TensorFlow decodes it during training.
    DECODE_CHECK = True
    HEAD_SIZE = False  # MPII also stores the PCKh head size

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=features(self.NUM_JOINTS, self.HEAD_SIZE),
                                              homepage=self.HOMEPAGE)

    def _read(self, root: Path, split: str) -> list[dict]:
        raise NotImplementedError

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = resolve_manual_root(Path(dl_manager.manual_dir), self.name, self.MARKER,
                                   self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        generators = {}
        for split in self.SPLIT_NAMES:
            records = self._read(root, split)
            good, problems = check_records(records, decode=self.DECODE_CHECK,
                                           name=f"{self.name} {split}")
            if problems:
                log.warning("%s %s: skipped %d of %d examples: %s", self.name, split,
                            len(problems), len(records),
                            ", ".join(p.image_id for p in problems))
            if good:
                generators[split] = self._generate_examples(good)
            else:  # TFDS cannot write an empty split; a partial copy may lack one
                log.warning("%s: split %r has no usable example in %s and is not written",
                            self.name, split, root)
        if not generators:
            raise DatasetFilesError(f"{self.name}: no usable example in {root}.\n"
                                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return generators

    def _generate_examples(self, records: list[dict]):
        for i, r in enumerate(records):
            yield f"{i:06d}_{r['image_id']}", {
                "image": r["path"], "joints": r["joints"], "flags": r["flags"],
                "center": r["center"], "scale": r["scale"], "image_id": r["image_id"],
                **({"head_size": r.get("head_size", np.nan)} if self.HEAD_SIZE else {})}


class Lsp(_PoseBuilder):
    """Leeds Sports Pose, 2,000 images: train = im0001-im1000, test = im1001-im2000."""

    HOMEPAGE = lsp.URL
    SPLIT_NAMES = ("train", "test")
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put the LSP release (lsp_dataset.zip or lsp_dataset_original.zip from {lsp.URL}),
unpacked, into manual_dir or manual_dir/lsp:
  joints.mat                     (3 x 14 x 2000)
  images/im0001.jpg ... images/im2000.jpg"""

    def _read(self, root: Path, split: str) -> list[dict]:
        return lsp.read_lsp(root, split)


class Lspet(_PoseBuilder):
    """LSP-extended, 10,000 images; val = image numbers divisible by 10."""

    HOMEPAGE = lspet.URL
    SPLIT_NAMES = ("train", "val")
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put the LSPET release (lspet_dataset.zip from {lspet.URL}), unpacked, into
manual_dir or manual_dir/lspet:
  joints.mat                     (14 x 3 x 10000)
  images/im00001.jpg ... images/im10000.jpg"""

    def _read(self, root: Path, split: str) -> list[dict]:
        return lspet.read_lspet(root, split)


class Mpii(_PoseBuilder):
    """MPII Human Pose single-person crops; val = the 2,958 people of the Tompson split."""

    NUM_JOINTS = 16
    HEAD_SIZE = True
    MARKER = "images"
    HOMEPAGE = "http://human-pose.mpi-inf.mpg.de/"
    SPLIT_NAMES = ("train", "val")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put MPII into manual_dir or manual_dir/mpii:\n"
        + mpii.LAYOUT.replace("DIR/", ""))

    def _read(self, root: Path, split: str) -> list[dict]:
        return mpii.read_mpii(root, split)


BUILDERS: dict[str, type[_PoseBuilder]] = {"lsp": Lsp, "lspet": Lspet, "mpii": Mpii}


# --------------------------------------------------------------------------------------
# Provenance: what a prepared dataset was built from.
SOURCE_RECORD = "mssh_source.json"


def manual_root(builder: _PoseBuilder, manual_dir: str | os.PathLike) -> Path:
    return resolve_manual_root(Path(manual_dir), builder.name, builder.MARKER,
                               builder.MANUAL_DOWNLOAD_INSTRUCTIONS)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def source_fingerprint(root: str | os.PathLike, known: dict | None = None) -> dict:
    """The manual folder's identity: every file's (name, size, CRC-32), hidden files
    skipped, and a digest of them. Cheap on later checks: a file whose size and
    modification time match ``known`` (the recorded ``index``) is not read again; only new
    or touched files are (a copy of the folder is read once, then recorded)."""
    root = Path(root)
    known = known or {}
    index: dict[str, list[int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel, st = path.relative_to(root).as_posix(), path.stat()
            old = known.get(rel)
            if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
                crc = old[2]
            else:
                crc = _crc32(path)
            index[rel] = [st.st_size, st.st_mtime_ns, crc]
    digest = hashlib.sha256("".join(f"{rel}\0{size}\0{crc}\n" for rel, (size, _, crc)
                                    in index.items()).encode()).hexdigest()[:32]
    return {"manual_dir": portable_path(root), "files": len(index),
            "bytes": sum(v[0] for v in index.values()), "digest": digest, "index": index}


def is_prepared(builder) -> bool:
    return (Path(builder.data_dir) / "dataset_info.json").is_file()


def record_source(builder: _PoseBuilder, manual_dir: str | os.PathLike) -> dict:
    """Write what ``builder``'s prepared data was built from (atomically) and return it."""
    record = {"dataset": builder.name, "version": str(builder.version),
              **source_fingerprint(manual_root(builder, manual_dir))}
    write_json_atomic(Path(builder.data_dir) / SOURCE_RECORD, record, indent=1)
    return record


def undecodable_examples(builder: _PoseBuilder) -> list[str]:
    """Image ids of stored examples TensorFlow cannot decode (a full pass, a few ms each)."""
    import tensorflow as tf

    bad = []
    for split in builder.info.splits:
        raw = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        for example in raw:
            try:
                tf.io.decode_image(example["image"], channels=3, expand_animations=False)
            except (tf.errors.OpError, ValueError):
                bad.append(example["image_id"].numpy().decode())
    return bad


def check_source(builder: _PoseBuilder, manual_dir: str | os.PathLike) -> None:
    """Refuse a prepared dataset that was built from other files than ``manual_dir``'s.

    Same files (names, sizes, annotation contents) at another path are fine. A dataset
    prepared before sources were recorded is checked once (every image decoded by
    TensorFlow) and then recorded as built from ``manual_dir``.
    """
    prepared = Path(builder.data_dir)
    where = f"the prepared {builder.name} in {prepared}"
    try:
        root = manual_root(builder, manual_dir)
    except DatasetFilesError:
        raise DatasetFilesError(
            f"--manual-dir {manual_dir} holds no {builder.name} files ({builder.MARKER}), but "
            f"{where} exists: drop --manual-dir to use it, or point --manual-dir at the "
            f"{builder.name} folder") from None
    record_path = prepared / SOURCE_RECORD
    if not record_path.is_file():
        bad = undecodable_examples(builder)
        if bad:
            raise DatasetFilesError(
                f"{where} (prepared by an older version) holds {len(bad)} image(s) "
                f"TensorFlow cannot decode ({summarize_names(bad, 5)}): delete {prepared} "
                f"to rebuild it from --manual-dir {manual_dir} (the rebuild skips them)")
        record_source(builder, manual_dir)
        log.warning("%s: recorded that %s was prepared from %s (it predates source "
                    "records; if it was built from other files, delete it to rebuild)",
                    builder.name, prepared, root)
        return
    try:
        before = json.loads(record_path.read_text())
        now = source_fingerprint(root, known=before["index"])
        same = before["digest"] == now["digest"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetFilesError(f"{record_path} is damaged ({e}): delete {prepared} to "
                                f"rebuild {builder.name} from --manual-dir") from None
    if same:
        if now["index"] != before["index"]:  # same contents, new times (a copy): remember
            write_json_atomic(record_path, {**before, **now, "manual_dir": before["manual_dir"]},
                              indent=1)
        return
    old, new = before["index"], now["index"]
    changed = sorted(k for k in old.keys() & new.keys()
                     if (old[k][0], old[k][2]) != (new[k][0], new[k][2]))
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    what = "; ".join(f"{label} {len(names)} ({summarize_names(names, 3)})"
                     for label, names in (("changed", changed), ("new", added),
                                          ("missing", removed)) if names) \
        or "the files differ"
    raise DatasetFilesError(
        f"--manual-dir {manual_dir} differs from the files {where} was built from "
        f"({before.get('manual_dir')}): {what}. Delete {prepared} to rebuild from the new "
        f"files, or pass another --data-dir")
