"""TFDS builders for LSP, LSPET and MPII, fed only from manually placed official files.

Importing this module registers ``lsp``, ``lspet`` and ``mpii`` with TFDS. Nothing is
downloaded: each builder reads ``manual_dir`` (the dataset folder itself, or a folder that
holds it under the dataset's name, e.g. ``MANUAL/lspet/joints.mat``), lists records with
the readers in this package, checks every image (``check_records`` with a full decode, so
a truncated or corrupt file is skipped and logged with its name at build time instead of
crashing an epoch later) and stores each JPEG's bytes unchanged.

Splits: lsp train/test, lspet train/val (TFDS reserves "all"; use "train+val"),
mpii train/val.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from mssh_keras.data import lsp, lspet, mpii
from mssh_keras.data.records import DatasetFilesError, check_records

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
