"""MPII Human Pose readers: hourglass h5, HRNet/mmpose JSON and the official RELEASE .mat.

All three describe the same people in MATLAB 1-based pixels (checked on the shared copies:
the JSON's joints equal ``valid.h5``'s ``part`` and the official ground truth
``pos_gt_src``; HRNet and mmpose subtract 1 when they load the JSON). Every reader therefore
subtracts 1, and brings the person box to the hourglass convention (center y += 15 * scale,
scale *= 1.25, then scale_px = 200 * scale), so all sources yield identical records up to
the h5's rounding (``valid.h5`` stores ``part`` floored to whole pixels: < 1 px).

Flags: 0 = missing (h5: part (0, 0); JSON: joints_vis 0; .mat: no point with that id),
1 = annotated but not visible (h5 ``visible`` 0 with a real part; .mat is_visible 0),
2 = visible. The JSON has no visibility, only "labelled": labelled joints get 2.

Standard split (Tompson et al., used by the hourglass/HRNet/mmpose code): the 2,958 people
of ``valid.h5`` (2,729 images, listed in ``valid_images.txt``) are validation; the other
annotated people of the official training images are training.

Expected layout (``DIR``)::

    DIR/images/*.jpg                             (mpii_human_pose_v1.tar.gz)
    and one annotation source:
    DIR/annot/train.h5, DIR/annot/valid.h5       (princeton-vl/pose-hg-train data/mpii/annot)
    DIR/annot/train.json, DIR/annot/valid.json   (HRNet; mmpose's mpii_train.json /
                                                  mpii_val.json are accepted too)
    DIR/mpii_human_pose_v1_u12_1.mat + DIR/annot/valid_images.txt
                                                 (official annotations + the split list)
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mssh_keras.data.records import (MISSING, OCCLUDED, VISIBLE, DatasetFilesError,
                                     make_record, summarize_names)

log = logging.getLogger(__name__)

NUM_JOINTS = 16
SPLITS = ("train", "val")
NUM_VAL_PEOPLE = 2958
IMAGES_URL = "https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1.tar.gz"
ANNOT_URL = "https://datasets.d2.mpi-inf.mpg.de/andriluka14cvpr/mpii_human_pose_v1_u12_2.zip"
PIXEL_STD = 200.0  # MPII "scale" is the person height / 200 px


def hourglass_box(center, scale: float) -> tuple[np.ndarray, float]:
    """Raw MPII objpos/scale (1-based) -> 0-based centre and crop side in px.

    The shift down by 15 * scale and the 1.25 padding are the hourglass/HRNet adjustment
    (raw objpos sits near the chest, and scale covers the body height only).
    """
    c = np.asarray(center, np.float64).copy()
    c[1] += 15.0 * scale
    return (c - 1.0).astype(np.float32), PIXEL_STD * 1.25 * float(scale)


# ------------------------------------------------------------------------------- h5

def read_mpii_h5(h5_path: str | os.PathLike, images_dir: str | os.PathLike) -> list[dict]:
    """Records of a pose-hg-train annotation file (train.h5 / valid.h5), one per person.

    Its center/scale already include the hourglass adjustment, so only the 1-based ->
    0-based shift and scale_px = 200 * scale apply.
    """
    import h5py

    try:
        with h5py.File(os.fspath(h5_path), "r") as f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["imgname"][:]]
            centers, scales = f["center"][:], f["scale"][:]
            parts, visible = f["part"][:], f["visible"][:]
            heads = f["normalize"][:] if "normalize" in f else np.full(len(names), np.nan)
    except FileNotFoundError:
        raise DatasetFilesError(f"{h5_path} does not exist") from None
    except (OSError, KeyError) as e:
        raise ValueError(f"{h5_path} is not a pose-hg-train MPII annotation h5 "
                         f"(imgname, center, scale, part, visible): {e}") from e
    images_dir = Path(images_dir)
    records = []
    for name, center, scale, part, vis, head in zip(names, centers, scales, parts, visible,
                                                     heads):
        present = ~(part == 0).all(-1)
        flags = np.where(present, np.where(vis > 0, VISIBLE, OCCLUDED), MISSING)
        records.append(make_record(images_dir / name, part - 1.0, flags, name,
                                   center=np.asarray(center) - 1.0,
                                   scale=PIXEL_STD * float(scale), head_size=float(head)))
    return records


# ----------------------------------------------------------------------------- JSON

def read_mpii_json(json_path: str | os.PathLike, images_dir: str | os.PathLike) -> list[dict]:
    """Records of an HRNet/mmpose MPII JSON (list of {image, joints, joints_vis, center, scale}).

    Its coordinates are MATLAB 1-based like the other sources (HRNet and mmpose subtract 1
    on loading) and its center/scale are raw, so both get converted here.
    """
    try:
        with open(json_path) as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise DatasetFilesError(f"{json_path} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path} is not valid JSON: {e}") from e
    if not isinstance(entries, list):
        raise ValueError(f"{json_path}: expected a list of people, got {type(entries).__name__}")
    images_dir = Path(images_dir)
    records = []
    for k, e in enumerate(entries):
        try:
            name = e["image"]
            joints = np.asarray(e.get("joints", np.zeros((NUM_JOINTS, 2))), np.float64)
            vis = np.asarray(e.get("joints_vis", np.zeros(NUM_JOINTS)))
            center, scale = e["center"], float(e["scale"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"{json_path}: entry {k} lacks {err} "
                             "(expected image, joints, joints_vis, center, scale)") from err
        if joints.shape != (NUM_JOINTS, 2) or vis.shape != (NUM_JOINTS,):
            raise ValueError(f"{json_path}: entry {k} ({name}) has joints {joints.shape} / "
                             f"joints_vis {vis.shape}, expected (16, 2) / (16,)")
        flags = np.where(vis > 0, VISIBLE, MISSING)
        if center[0] == -1:  # HRNet's marker for "no box": derive it from the joints
            c, s = None, None
        else:
            c, s = hourglass_box(center, scale)
        records.append(make_record(images_dir / name, joints - 1.0, flags, name,
                                   center=c, scale=s, head_size=np.nan))
    return records


# -------------------------------------------------------------------- official .mat

def _items(x) -> list:
    """MATLAB struct array / single struct / empty [] -> Python list (squeeze_me output)."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return list(x.flat)
    return [x]


def _visibility(v) -> int | None:
    """is_visible as 0/1, or None when the release left it empty (it does, sometimes)."""
    if isinstance(v, np.ndarray):
        if v.size == 0:
            return None
        v = v.flat[0]
    if isinstance(v, str):
        return int(v) if v.strip() else None
    return None if v is None else int(v)


def read_mpii_mat(mat_path: str | os.PathLike, images_dir: str | os.PathLike,
                  split: str = "all", val_images: Iterable[str] | None = None,
                  single_person_only: bool = False) -> list[dict]:
    """Records of the official ``mpii_human_pose_v1_u12_1.mat`` (struct ``RELEASE``).

    One record per person with joint annotations in a training image (``img_train`` 1;
    test-image annotations are withheld by MPII). ``split``: "all", or "train"/"val" by
    image name against ``val_images`` (the Tompson validation list, ``valid_images.txt``),
    so no image is shared between the two. Joints whose ``is_visible`` is empty count as
    visible. ``single_person_only`` keeps the people listed in ``single_person``.
    """
    import scipy.io

    if split not in ("all", *SPLITS):
        raise ValueError(f"MPII split must be one of {('all', *SPLITS)}, got {split!r}")
    if split != "all" and val_images is None:
        raise ValueError("MPII .mat: the train/val split needs the validation image list "
                         "(annot/valid_images.txt from princeton-vl/pose-hg-train)")
    val = set(val_images or ())
    try:
        release = scipy.io.loadmat(os.fspath(mat_path), struct_as_record=False,
                                   squeeze_me=True)["RELEASE"]
    except FileNotFoundError:
        raise DatasetFilesError(f"{mat_path} does not exist; get it from {ANNOT_URL}") from None
    except KeyError:
        raise ValueError(f"{mat_path} has no RELEASE struct (is it "
                         "mpii_human_pose_v1_u12_1.mat?)") from None
    annolist = _items(release.annolist)
    img_train = np.atleast_1d(release.img_train).astype(int)
    single = np.atleast_1d(getattr(release, "single_person", np.array([])))
    if len(img_train) != len(annolist):
        raise ValueError(f"{mat_path}: img_train has {len(img_train)} entries for "
                         f"{len(annolist)} images")
    images_dir = Path(images_dir)
    records, no_box = [], []
    for i, (anno, is_train) in enumerate(zip(annolist, img_train)):
        if not is_train:
            continue
        name = str(anno.image.name)
        if split != "all" and (name in val) != (split == "val"):
            continue
        keep = None
        if single_person_only:  # single_person holds 1-based annorect indices
            chosen = np.atleast_1d(single[i]).ravel() if i < len(single) else []
            keep = {int(r) - 1 for r in chosen}
        for r, rect in enumerate(_items(getattr(anno, "annorect", None))):
            if keep is not None and r not in keep:
                continue
            points = _items(getattr(getattr(rect, "annopoints", None), "point", None))
            if not points:
                continue  # a head box or position only: not a pose annotation
            joints = np.zeros((NUM_JOINTS, 2))
            flags = np.full(NUM_JOINTS, MISSING, np.int32)
            for p in points:
                jid = int(p.id)
                joints[jid] = float(p.x) - 1.0, float(p.y) - 1.0
                flags[jid] = (OCCLUDED if _visibility(getattr(p, "is_visible", None)) == 0
                              else VISIBLE)
            objpos, scale = getattr(rect, "objpos", None), getattr(rect, "scale", None)
            try:
                c, s = hourglass_box((float(objpos.x), float(objpos.y)), float(scale))
            except (AttributeError, TypeError, ValueError):
                c, s = None, None
                no_box.append(name)
            try:  # PCKh normaliser: 0.6 x the head box diagonal (the official protocol)
                head = 0.6 * float(np.hypot(float(rect.x2) - float(rect.x1),
                                            float(rect.y2) - float(rect.y1)))
            except (AttributeError, TypeError, ValueError):
                head = np.nan
            records.append(make_record(images_dir / name, joints, flags, name, center=c, scale=s,
                                       head_size=head))
    if no_box:
        log.warning("MPII .mat: %d annotated people without objpos/scale got a box from their "
                    "joints: %s", len(no_box), summarize_names(no_box))
    return records


# ------------------------------------------------------------------- directory level

H5_FILES = {"train": "annot/train.h5", "val": "annot/valid.h5"}
JSON_FILES = {"train": ("annot/train.json", "annotations/mpii_train.json"),
              "val": ("annot/valid.json", "annotations/mpii_val.json")}
MAT_FILES = ("mpii_human_pose_v1_u12_1.mat",
             "mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat")
VALID_LIST = "annot/valid_images.txt"
LAYOUT = f"""\
DIR/images/*.jpg (from {IMAGES_URL}) and one annotation source:
  DIR/annot/train.h5 + DIR/annot/valid.h5 (princeton-vl/pose-hg-train, data/mpii/annot), or
  DIR/annot/train.json + DIR/annot/valid.json (HRNet; or mmpose's
      DIR/annotations/mpii_train.json + mpii_val.json), or
  DIR/mpii_human_pose_v1_u12_1.mat (from {ANNOT_URL}) + DIR/annot/valid_images.txt
      (pose-hg-train, for the standard validation split)"""


def find_source(root: str | os.PathLike, split: str) -> tuple[str, Path]:
    """(kind, annotation file) for ``split`` in ``root``: the first of h5, json, mat."""
    root = Path(root)
    if (root / H5_FILES[split]).is_file():
        return "h5", root / H5_FILES[split]
    for rel in JSON_FILES[split]:
        if (root / rel).is_file():
            return "json", root / rel
    for rel in MAT_FILES:
        if (root / rel).is_file():
            if not (root / VALID_LIST).is_file():
                raise DatasetFilesError(f"MPII: found {root / rel} but not {root / VALID_LIST}, "
                                        "the standard validation list it is split by. "
                                        f"Expected {LAYOUT.replace('DIR', str(root))}")
            return "mat", root / rel
    raise DatasetFilesError(f"MPII annotations for split {split!r} not found in {root}. "
                            f"Expected {LAYOUT.replace('DIR', str(root))}")


def read_mpii(root: str | os.PathLike, split: str = "train") -> list[dict]:
    """MPII records of ``split`` ("train" or "val") for the images present in root/images.

    Annotated images missing from root/images are logged (count and names) and left out.
    """
    if split not in SPLITS:
        raise ValueError(f"MPII split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DatasetFilesError(f"MPII images not found: missing {images_dir}. "
                                f"Expected {LAYOUT.replace('DIR', str(root))}")
    kind, path = find_source(root, split)
    if kind == "h5":
        records = read_mpii_h5(path, images_dir)
    elif kind == "json":
        records = read_mpii_json(path, images_dir)
    else:
        val_images = (root / VALID_LIST).read_text().split()
        records = read_mpii_mat(path, images_dir, split, val_images=val_images)
    log.info("MPII %s: %d people from %s", split, len(records), path)
    present = {e.name for e in os.scandir(images_dir)}
    missing = sorted({r["image_id"] for r in records} - present)
    if missing:
        log.warning("MPII %s: %d annotated images are missing from %s and left out: %s",
                    split, len(missing), images_dir, summarize_names(missing))
        records = [r for r in records if r["image_id"] in present]
    return records
