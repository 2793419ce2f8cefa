"""Shared plumbing of the dataset readers: records, image indexing, bad-data checks.

A *record* is one annotated person, before its image is loaded::

    {"path": str, "joints": float32 (K, 2), "flags": int32 (K,),
     "center": float32 (2,), "scale": float32 (), "image_id": str}

with the example contract's conventions (0-based pixel coordinates, flags 2 = visible,
1 = annotated but occluded, 0 = not annotated, whose coordinates are zeroed and must be
masked). Readers never load images: that keeps listing 25k MPII people instant, and
``check_records`` decides separately (and visibly) which records are usable.
"""
from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mssh_keras import geometry

log = logging.getLogger(__name__)

# Joint flags of the example contract (mssh_keras.data): use these names, not the numbers.
VISIBLE, OCCLUDED, MISSING = 2, 1, 0


class DatasetFilesError(FileNotFoundError):
    """A dataset's files are missing or laid out differently than the reader expects."""


def make_record(path: str | os.PathLike, joints: np.ndarray, flags: np.ndarray,
                image_id: str, center=None, scale=None, head_size: float | None = None
                ) -> dict:
    """Build one record; without ``center``/``scale`` the box comes from the joints.

    Joints with flag 0 get coordinates (0, 0) so that garbage such as LSPET's negative
    placeholders cannot leak anywhere. A person without any annotated joint gets
    center (-1, -1) and scale 0: ``check_records`` reports it instead of the reader
    crashing, so one bad entry never hides the rest of a dataset. ``head_size`` (MPII's
    PCKh normaliser, 0.6 x head-box diagonal) is added only when given.
    """
    flags = np.asarray(flags, np.int32)
    joints = np.where((flags > MISSING)[:, None], np.asarray(joints, np.float32), 0.0)
    joints = joints.astype(np.float32)
    if center is None or scale is None:
        if (flags > MISSING).any():
            center, scale = geometry.center_scale_from_joints(joints, flags > MISSING)
        else:
            center, scale = (-1.0, -1.0), 0.0
    record = {"path": str(path), "joints": joints, "flags": flags,
              "center": np.asarray(center, np.float32).reshape(2),
              "scale": np.float32(scale), "image_id": str(image_id)}
    if head_size is not None:
        record["head_size"] = np.float32(head_size)
    return record


def load_mat_variable(path: str | os.PathLike, name: str) -> np.ndarray:
    """One variable of a MATLAB v5 .mat file, with errors that name the file."""
    import scipy.io

    try:
        content = scipy.io.loadmat(os.fspath(path), variable_names=[name])
    except FileNotFoundError:
        raise DatasetFilesError(f"{path} does not exist") from None
    except Exception as e:  # scipy raises several types for non-.mat content
        raise ValueError(f"{path} is not a readable MATLAB .mat file ({e})") from e
    if name not in content:
        raise ValueError(f"{path} has no variable {name!r}")
    return content[name]


def index_images(images_dir: str | os.PathLike, prefix: str = "im") -> dict[int, Path]:
    """Map image number -> path for files named ``<prefix><digits>.jpg`` (any zero padding).

    LSP/LSPET annotations are matched to images by this number, never by folder order,
    so a partial or unsorted image folder cannot shift labels onto the wrong person.
    """
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)\.(jpe?g|png)$", re.IGNORECASE)
    out: dict[int, Path] = {}
    for entry in os.scandir(images_dir):
        m = pattern.match(entry.name)
        if m:
            number = int(m.group(1))
            if number in out:
                raise ValueError(f"two images with number {number} in {images_dir}: "
                                 f"{out[number].name} and {entry.name}")
            out[number] = Path(entry.path)
    return out


def summarize_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ---------------------------------------------------------------------------- checks

class Problem(NamedTuple):
    image_id: str
    path: str
    reason: str


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """(width, height, format) read from the file header, without decoding pixels.

    Raises ValueError for empty, unknown or cut-off files. A JPEG must also end with its
    end-of-image marker: TensorFlow's decoder fails on truncated JPEGs, which would
    otherwise surface as a crash in the middle of an epoch.
    """
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError("empty file")
    with open(path, "rb") as f:
        head = f.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            w, h = struct.unpack(">II", head[16:24])
            return int(w), int(h), "png"
        if not head.startswith(b"\xff\xd8"):
            raise ValueError("not a JPEG or PNG file")
        f.seek(-2, os.SEEK_END)
        if f.read(2) != b"\xff\xd9":
            # Bytes after the marker are harmless (decoders stop there); only a full
            # decode can tell those files from cut-off ones, and they are rare.
            try:
                _decoded_size(os.fspath(path))
            except ValueError:
                raise ValueError("truncated JPEG (no end-of-image marker)") from None
        f.seek(2)
        while True:
            marker = f.read(2)
            if len(marker) < 2 or marker[0] != 0xFF:
                raise ValueError("corrupt JPEG header")
            code = marker[1]
            if code == 0xFF:  # fill byte
                f.seek(-1, os.SEEK_CUR)
                continue
            if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:
                continue
            length_bytes = f.read(2)
            if len(length_bytes) < 2:
                raise ValueError("corrupt JPEG header")
            (length,) = struct.unpack(">H", length_bytes)
            if length < 2:
                raise ValueError("corrupt JPEG header")
            if code in _SOF:
                data = f.read(5)
                if len(data) < 5:
                    raise ValueError("corrupt JPEG header")
                h, w = struct.unpack(">HH", data[1:5])
                if w == 0 or h == 0:
                    raise ValueError("JPEG header says the image is empty")
                return int(w), int(h), "jpeg"
            if code == 0xDA:  # scan data before any frame header
                raise ValueError("corrupt JPEG header (no frame header)")
            f.seek(length - 2, os.SEEK_CUR)


def _decoded_size(path: str) -> tuple[int, int]:
    import cv2

    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("image does not decode")
    return image.shape[1], image.shape[0]


def tf_decoded_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image decoded by TensorFlow, the decoder training uses.

    OpenCV tolerates damage inside JPEG data that TensorFlow refuses ("jpeg::Uncompress
    failed", e.g. a stray marker in the scan): checking with OpenCV let such files into a
    prepared dataset, to crash every epoch that reached them. Raises ValueError.
    """
    import tensorflow as tf

    try:
        image = tf.io.decode_image(tf.io.read_file(os.fspath(path)), channels=3,
                                   expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", str(e).strip().splitlines()[0])
        raise ValueError(f"image does not decode with TensorFlow, the decoder training uses "
                         f"({text.strip() or type(e).__name__})") from None
    return int(image.shape[1]), int(image.shape[0])


def check_record(record: dict, decode: bool = False, margin: float = 0.5) -> str | None:
    """The reason ``record`` is unusable, or None when it is fine.

    ``margin``: an annotated joint may lie outside the image (people get cut off), but
    one further out than ``margin`` times the image's longer side is an annotation error.
    ``decode=True`` additionally decodes the whole image with TensorFlow's decoder (the
    one training uses; ``tf_decoded_size``), which catches damage inside the compressed
    data; it costs a few ms per image.
    """
    path = record["path"]
    if not os.path.isfile(path):
        return "missing image file"
    try:
        w, h, _ = image_header(path)
        if decode:
            dw, dh = tf_decoded_size(path)
            if (dw, dh) != (w, h):
                return f"decoded size {dw}x{dh} differs from header {w}x{h}"
    except (OSError, ValueError) as e:
        return f"unreadable image: {e}"
    flags = np.asarray(record["flags"])
    if not (flags > MISSING).any():
        return "no annotated joint"
    pts = np.asarray(record["joints"], np.float64)[flags > MISSING]
    m = margin * max(w, h)
    far = (pts[:, 0] < -m) | (pts[:, 0] > w - 1 + m) | (pts[:, 1] < -m) | (pts[:, 1] > h - 1 + m)
    if far.any():
        return f"{int(far.sum())} annotated joint(s) far outside the {w}x{h} image"
    if not np.isfinite(record["scale"]) or record["scale"] <= 0:
        return "no person box (scale <= 0)"
    return None


def check_records(records: list[dict], decode: bool = False, margin: float = 0.5,
                  name: str = "dataset") -> tuple[list[dict], list[Problem]]:
    """Split ``records`` into usable ones and reported problems (never dropped silently).

    Problems: missing/empty/unreadable/truncated image files, no annotated joint, and
    annotated joints far outside the image. A summary with counts and file names is
    logged as a warning.
    """
    good, problems = [], []
    for record in records:
        reason = check_record(record, decode=decode, margin=margin)
        if reason is None:
            good.append(record)
        else:
            problems.append(Problem(record["image_id"], record["path"], reason))
    if problems:
        log.warning("%s: %d of %d records have problems and are left out:\n%s", name,
                    len(problems), len(records), format_problems(problems))
    return good, problems


def format_problems(problems: list[Problem], limit: int = 10) -> str:
    """Problems grouped by kind of reason, with counts and a few file names each."""
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        kind = re.sub(r"\d+", "N", p.reason)
        groups.setdefault(kind, []).append(p)
    lines = [f"  {kind}: {len(ps)} ({summarize_names([p.image_id for p in ps], limit)})"
             for kind, ps in groups.items()]
    return "\n".join(lines)
