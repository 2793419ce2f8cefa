"""COCO keypoints JSON reader, for any category and any joint set.

This is the format annotation tools export (CVAT, Label Studio, Roboflow: "COCO
keypoints")::

    FILE.json  {"images":      [{"id", "file_name", ...}, ...],
                "annotations": [{"id", "image_id", "category_id", "keypoints": [x, y, v] x K,
                                 "bbox": [x, y, w, h], "iscrowd", "num_keypoints", ...}, ...],
                "categories":  [{"id", "name", "keypoints": [K joint names],
                                 "skeleton": [[a, b], ...] (1-based joint numbers)}, ...]}
    DIR/<file_name>   the images

Conventions decoded here, once:

* Visibility ``v``: 0 = not labelled -> ``MISSING`` (coordinates zeroed, masked out of the
  loss and the metrics); 1 = labelled but not visible -> ``OCCLUDED`` (the paper's
  occluded target amplitude); 2 = visible -> ``VISIBLE``.
* Coordinates are used as they are, as 0-based image pixels (as pycocotools, mmpose and
  HRNet use COCO keypoints).
* Every annotation of the category that is not a crowd (``iscrowd`` 0 or absent) and has at
  least one labelled keypoint (v > 0; ``num_keypoints`` is not trusted) is one top-down
  example, cropped from its ``bbox``: centre of the box, square side max(w, h) x 1.25
  (``geometry.box_to_center_scale``, the padding LSP's joint boxes get).
* Image files: ``DIR/file_name``, else ``DIR/<file_name without its folders>`` (some
  exports write ``images/x.jpg``); an absolute ``file_name`` is used as it is. ``DIR``
  defaults to the annotation file's folder (Roboflow's layout). Absent or corrupt images
  (TensorFlow's decoder, the one training uses, decodes each image once) and people whose
  labelled keypoints lie far outside their image are counted, named and skipped.
* The joint set comes from the category (``skeleton_from_category``). A file with several
  keypoint categories needs ``category`` (a name or an id).
* Validation split: a second file (``val_annotations``), or else a deterministic hold-out
  of this one: the images whose CRC-32 of ``file_name`` (UTF-8) is divisible by 10 (about
  10 % of the images; an image keeps its split when others are added or removed). When
  that rule picks none of the images with people (tiny sets), the image with the smallest
  CRC-32 is held out instead, if there are at least two. ``all`` is every image.

Structural problems (not JSON, missing keys, a keypoint list that does not match the
category, a reference to an unknown image) raise ``CocoFormatError`` naming the file and
the entry (its index in the list and its id).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mssh_keras import geometry, joint_names
from mssh_keras.data.records import (MISSING, OCCLUDED, VISIBLE, DatasetFilesError, Problem,
                                     check_record, format_problems, make_record)
from mssh_keras.skeleton import SKELETONS, Skeleton

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "all")
VAL_EVERY = 10
BOX_PADDING = geometry.JOINT_BOX_PADDING
# COCO visibility -> contract flag.
FLAGS = {0: MISSING, 1: OCCLUDED, 2: VISIBLE}


class CocoFormatError(ValueError):
    """A COCO file whose structure is wrong, with a message naming the file and the entry."""


# ---------------------------------------------------------------------------- skeleton
def skeleton_from_category(category: dict, source: str | os.PathLike = "category",
                           flip_pairs: str | None = None) -> Skeleton:
    """The joint set of a COCO category.

    * joints: ``keypoints`` (names, unique);
    * limbs: ``skeleton``, pairs of 1-based joint numbers as COCO defines them. A list that
      contains 0 and fits 0-based numbering (some converters write that) is read as
      0-based, with a warning. A list with numbers outside the joints (e.g. CrowdPose's
      files, which carry COCO's 17-joint skeleton for 14 joints) does not belong to these
      joints: it is ignored with a warning naming the entries (limbs only draw);
    * flip pairs: the left and right joints of the same stem (``joint_names``:
      ``left_eye``/``right_eye``, ``l_hip``/``r_hip``, ``Left Knee``/``Right Knee``...),
      unless ``flip_pairs`` says otherwise (``parse_flip_pairs``);
    * PCK torso: left shoulder - right hip, when both exist (any spelling);
    * name: the category's name and the joint count, e.g. ``person17``.
    """
    where = f"{source}: category {category.get('id')!r} ({category.get('name', '?')!r})"
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip()
                                                           for n in names):
        raise CocoFormatError(f"{where}: 'keypoints' must be a non-empty list of joint names, "
                              f"got {str(names)[:200]}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CocoFormatError(f"{where}: joint names must be unique; repeated: {dupes}")
    k = len(names)
    limbs = _limbs(category.get("skeleton") or [], k, where)
    if flip_pairs is None:
        pairs, unpaired = joint_names.flip_pairs_from_names(names)
        if unpaired:
            log.warning("%s: joints %s look left/right but have no partner of the same name; "
                        "they stay themselves when an image is mirrored (set pairs with "
                        "--flip-pairs)", where, unpaired)
    else:
        pairs = parse_flip_pairs(flip_pairs, names)
    slug = re.sub(r"[^a-z0-9]+", "_", str(category.get("name") or "custom").lower()).strip("_")
    name = f"{slug or 'custom'}{k}"
    if name in SKELETONS:  # never pass for a built-in set with other metric definitions
        name = f"{name}_coco"
    return Skeleton(name=name, joints=tuple(names), flip_pairs=pairs, limbs=limbs,
                    torso_pair=joint_names.torso_pair(names))


def _limbs(raw, k: int, where: str) -> tuple[tuple[int, int], ...]:
    try:
        pairs = [(int(a), int(b)) for a, b in raw]
    except (TypeError, ValueError):
        raise CocoFormatError(f"{where}: 'skeleton' must be a list of [a, b] joint numbers, "
                              f"got {str(raw)[:200]}") from None
    if not pairs:
        return ()
    lo = min(min(p) for p in pairs)
    hi = max(max(p) for p in pairs)
    if lo >= 1 and hi <= k:
        return tuple((a - 1, b - 1) for a, b in pairs)
    if lo == 0 and hi <= k - 1:
        log.warning("%s: 'skeleton' uses joint number 0, so it is read as 0-based (COCO's "
                    "is 1-based)", where)
        return tuple(pairs)
    bad = [list(p) for p in pairs if not (1 <= p[0] <= k and 1 <= p[1] <= k)]
    log.warning("%s: 'skeleton' has limbs with joint numbers outside 1..%d (%s): it does not "
                "belong to these %d keypoints and is ignored (no limbs are drawn; fix the "
                "category's 'skeleton' to draw them)", where, k, bad[:5], k)
    return ()


def parse_flip_pairs(text: str, names) -> tuple[tuple[int, int], ...]:
    """``--flip-pairs``: "none" (no swaps) or comma-separated ``A:B`` pairs, each side a
    joint name as written in the category or a 1-based joint number, e.g.
    ``"left_eye:right_eye,4:5"``. A joint may be in one pair only."""
    names = list(names)
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return ()

    def index(token: str) -> int:
        token = token.strip()
        if token in names:
            return names.index(token)
        if token.isdigit() and 1 <= int(token) <= len(names):
            return int(token) - 1
        raise ValueError(f"--flip-pairs: {token!r} is neither a joint name nor a number "
                         f"1..{len(names)}; joints: {names}")

    pairs, seen = [], set()
    for item in text.split(","):
        if ":" not in item:
            raise ValueError(f"--flip-pairs: {item.strip()!r} is not a pair A:B")
        a, b = (index(t) for t in item.split(":", 1))
        if a == b or a in seen or b in seen:
            raise ValueError(f"--flip-pairs: {item.strip()!r} repeats a joint (each joint "
                             f"may be in one pair, with another joint)")
        seen.update((a, b))
        pairs.append((a, b))
    return tuple(pairs)


def skeleton_definition(skeleton: Skeleton) -> dict:
    """Everything needed to rebuild ``skeleton`` (run_config.json's record of it)."""
    return {**skeleton.to_dict(),
            "torso_pair": list(skeleton.torso_pair) if skeleton.torso_pair else None}


def skeleton_from_dict(d: dict) -> Skeleton:
    """Inverse of ``skeleton_definition`` (also reads model metadata's skeleton). A built-in
    set with the same name and joints comes back as itself, with its PCP limbs."""
    known = SKELETONS.get(d.get("name"))
    if known is not None and list(known.joints) == list(d["joints"]):
        return known
    torso = d.get("torso_pair") or joint_names.torso_pair(d["joints"])
    return Skeleton(name=str(d["name"]), joints=tuple(d["joints"]),
                    flip_pairs=tuple(tuple(int(v) for v in p) for p in d.get("flip_pairs", ())),
                    limbs=tuple(tuple(int(v) for v in p) for p in d.get("limbs", ())),
                    torso_pair=tuple(torso) if torso else None)


# ---------------------------------------------------------------------------- the file
@dataclass
class CocoFile:
    """One parsed annotation file (for one category)."""
    path: Path
    images_dir: Path
    category: dict
    skeleton: Skeleton
    images: dict          # image id -> image entry
    annotations: list     # every annotation of the category (crowds included), checked
    records: list         # one per example person, before the image checks
    skipped: dict = field(default_factory=dict)  # why other annotations are not examples

    def describe(self) -> str:
        other = ", ".join(f"{n} {why}" for why, n in self.skipped.items() if n)
        return (f"{self.path}: {len(self.records)} people with keypoints in "
                f"{len({r['coco_image_id'] for r in self.records})} images, "
                f"{self.skeleton.num_joints} joints ({self.skeleton.name})"
                + (f"; not used: {other}" if other else ""))


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetFilesError(f"annotation file {path} does not exist") from None
    except IsADirectoryError:
        raise DatasetFilesError(f"{path} is a folder: --annotations takes the COCO JSON "
                                f"file") from None
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise CocoFormatError(f"{path} is not a UTF-8 text file ({e})") from None


def _entry(kind: str, i: int, entry) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    return f"{kind}[{i}]" + (f" (id {ident})" if ident is not None else "")


def _need(entry, keys, where: str) -> None:
    if not isinstance(entry, dict):
        raise CocoFormatError(f"{where} is not a JSON object: {str(entry)[:100]}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise CocoFormatError(f"{where} lacks {', '.join(repr(k) for k in missing)} "
                              f"(has {sorted(entry)})")


def choose_category(categories: list, category, path: Path) -> dict:
    with_kp = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    if category is not None:
        found = [c for c in with_kp if str(c.get("id")) == str(category)
                 or c.get("name") == category]
        if len(found) != 1:
            known = [f"{c.get('id')} ({c.get('name')!r})" for c in with_kp]
            raise CocoFormatError(f"{path}: no single keypoint category {category!r}; "
                                  f"keypoint categories: {known}")
        return found[0]
    if not with_kp:
        raise CocoFormatError(f"{path}: no category has 'keypoints' (joint names): not a "
                              f"COCO keypoints file (a detection-only export?)")
    if len(with_kp) > 1:
        known = [f"{c.get('id')} ({c.get('name')!r})" for c in with_kp]
        raise CocoFormatError(f"{path}: {len(with_kp)} categories have keypoints ({known}): "
                              f"choose one with --category NAME_OR_ID")
    return with_kp[0]


def image_path(images_dir: Path, file_name: str) -> Path:
    """Where ``file_name`` is: absolute as is, DIR/file_name, else DIR/<its base name>."""
    p = Path(file_name)
    if p.is_absolute():
        return p
    direct = images_dir / p
    if direct.exists():
        return direct
    flat = images_dir / p.name
    return flat if flat.exists() else direct


def read_coco(annotations: str | os.PathLike, images: str | os.PathLike | None = None,
              category=None, flip_pairs: str | None = None) -> CocoFile:
    """Parse and check ``annotations`` (see the module docstring); images are not opened."""
    path = Path(annotations)
    st = path.stat() if path.is_file() else None
    key = (str(path.resolve()), st.st_mtime_ns if st else None, st.st_size if st else None)
    return _read_coco(key, str(images) if images is not None else None,
                      None if category is None else str(category), flip_pairs)


@functools.lru_cache(maxsize=8)
def _read_coco(key, images, category, flip_pairs) -> CocoFile:
    path = Path(key[0])
    doc = _load_json(path)
    if not isinstance(doc, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with 'images', 'annotations' "
                              f"and 'categories', got a {type(doc).__name__} (an MPII/HRNet "
                              f"list? those go through --dataset mpii)")
    missing = [k for k in ("images", "annotations", "categories") if k not in doc]
    if missing:
        raise CocoFormatError(f"{path} lacks {', '.join(repr(k) for k in missing)}: not a "
                              f"COCO keypoints file (has {sorted(doc)})")
    for k in ("images", "annotations", "categories"):
        if not isinstance(doc[k], list):
            raise CocoFormatError(f"{path}: {k!r} must be a list")
    cat = choose_category(doc["categories"], category, path)
    _need(cat, ("id",), f"{path}: category {cat.get('name', '?')!r}")
    skeleton = skeleton_from_category(cat, path, flip_pairs)
    k = skeleton.num_joints
    images_dir = Path(images) if images is not None else path.parent

    image_entries: dict = {}
    for i, im in enumerate(doc["images"]):
        where = f"{path}: {_entry('images', i, im)}"
        _need(im, ("id", "file_name"), where)
        if im["id"] in image_entries:
            raise CocoFormatError(f"{where}: image id {im['id']!r} is used twice")
        image_entries[im["id"]] = im

    anns, records = [], []
    skipped = {"crowd": 0, "without labelled keypoints": 0, "of other categories": 0}
    used_ids: set = set()
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path}: {_entry('annotations', i, ann)}"
        if not isinstance(ann, dict):
            raise CocoFormatError(f"{where} is not a JSON object")
        if len(doc["categories"]) > 1 or "category_id" in ann:
            _need(ann, ("category_id",), where)
            if str(ann["category_id"]) != str(cat["id"]):
                skipped["of other categories"] += 1
                continue
        _need(ann, ("image_id", "keypoints", "bbox"), where)
        if ann["image_id"] not in image_entries:
            raise CocoFormatError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        kp = ann["keypoints"]
        if not isinstance(kp, list) or len(kp) != 3 * k:
            n = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise CocoFormatError(
                f"{where}: 'keypoints' has {n} numbers but category {cat['id']!r} "
                f"({cat.get('name')!r}) has {k} keypoints, so {3 * k} are expected "
                f"([x, y, v] per keypoint)")
        try:
            arr = np.asarray(kp, np.float64).reshape(k, 3)
        except (TypeError, ValueError):
            raise CocoFormatError(f"{where}: 'keypoints' holds non-numbers") from None
        v = arr[:, 2]
        if not np.isin(v, (0, 1, 2)).all():
            raise CocoFormatError(f"{where}: visibility values must be 0, 1 or 2, got "
                                  f"{sorted(set(v.tolist()) - {0.0, 1.0, 2.0})[:5]}")
        labelled = v > 0
        if not np.isfinite(arr[labelled, :2]).all():
            raise CocoFormatError(f"{where}: a labelled keypoint has a non-finite coordinate")
        bbox = ann["bbox"]
        try:
            x, y, w, h = (float(b) for b in bbox)
        except (TypeError, ValueError):
            raise CocoFormatError(f"{where}: 'bbox' must be [x, y, width, height], got "
                                  f"{str(bbox)[:100]}") from None
        if not all(math.isfinite(b) for b in (x, y, w, h)):
            raise CocoFormatError(f"{where}: 'bbox' has a non-finite number: {bbox}")
        ann_id = ann.get("id", f"#{i}")
        if ann_id in used_ids:
            raise CocoFormatError(f"{where}: annotation id {ann_id!r} is used twice")
        used_ids.add(ann_id)
        anns.append({**ann, "id": ann_id, "_index": i})
        if ann.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        if not labelled.any():
            skipped["without labelled keypoints"] += 1
            continue
        im = image_entries[ann["image_id"]]
        flags = np.array([FLAGS[int(x)] for x in v], np.int32)
        if w > 0 and h > 0:
            center, scale = geometry.box_to_center_scale((x, y, x + w, y + h), BOX_PADDING)
        else:  # reported by check_record ("no person box")
            center, scale = (x, y), 0.0
        rec = make_record(image_path(images_dir, str(im["file_name"])), arr[:, :2], flags,
                          str(im["file_name"]), center, scale)
        rec.update(ann_id=ann_id, coco_image_id=ann["image_id"],
                   bbox=np.array([x, y, w, h], np.float32))
        records.append(rec)
    return CocoFile(path, images_dir, cat, skeleton, image_entries, anns, records, skipped)


# ---------------------------------------------------------------------------- splits
def held_out(file_name: str) -> bool:
    """The hold-out rule: CRC-32 of the file name divisible by VAL_EVERY."""
    return zlib.crc32(str(file_name).encode("utf-8")) % VAL_EVERY == 0


def split_records(coco: CocoFile, split: str) -> list[dict]:
    """The records of ``split`` ("train", "val", "all") by the hold-out rule."""
    if split not in SPLITS:
        raise ValueError(f"COCO split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        return list(coco.records)
    names = sorted({r["image_id"] for r in coco.records})
    val = {n for n in names if held_out(n)}
    if not val and len(names) >= 2:
        val = {min(names, key=lambda n: (zlib.crc32(n.encode("utf-8")), n))}
    return [r for r in coco.records if (r["image_id"] in val) == (split == "val")]


_IMAGE_REASONS = ("missing image file", "unreadable image", "decoded size")


def usable_records(records: list[dict], name: str = "COCO",
                   decode: bool = True) -> tuple[list[dict], list[Problem]]:
    """Split records into usable ones and problems (logged with counts and names), like
    ``records.check_records``, but each image file is decoded once however many people
    it shows."""
    good, problems, decoded = [], [], set()
    for r in records:
        reason = check_record(r, decode=decode and r["path"] not in decoded)
        if reason is None or not reason.startswith(_IMAGE_REASONS):
            decoded.add(r["path"])
        if reason is None:
            good.append(r)
        else:
            who = r["image_id"] + (f" (annotation {r['ann_id']})" if "ann_id" in r else "")
            problems.append(Problem(who, r["path"], reason))
    if problems:
        log.warning("%s: %d of %d people are left out:\n%s", name, len(problems),
                    len(records), format_problems(problems))
    return good, problems


@dataclass(frozen=True)
class CocoSource:
    """A COCO-format dataset as the command lines give it: the training file, its images,
    an optional validation file, the category and the flip-pair override."""
    annotations: str
    images: str | None = None
    val_annotations: str | None = None
    val_images: str | None = None
    category: str | None = None
    flip_pairs: str | None = None

    def file(self, split: str = "train") -> CocoFile:
        if split == "val" and self.val_annotations:
            return read_coco(self.val_annotations, self.val_images or self.images,
                             self.category, self.flip_pairs)
        return read_coco(self.annotations, self.images, self.category, self.flip_pairs)

    @property
    def skeleton(self) -> Skeleton:
        return self.file("train").skeleton

    def records(self, split: str) -> tuple[CocoFile, list[dict]]:
        """(file, usable records) of ``split``: with a validation file, "val" is all of it
        and "train" all of the training file; without one, the hold-out rule splits the
        training file. Raises DatasetFilesError when nothing is usable."""
        if split not in SPLITS:
            raise ValueError(f"COCO split must be one of {SPLITS}, got {split!r}")
        coco = self.file(split)
        if split == "val" and self.val_annotations:
            train_joints = self.file("train").skeleton.joints
            if coco.skeleton.joints != train_joints:
                raise CocoFormatError(
                    f"{coco.path} has joints {list(coco.skeleton.joints)} but "
                    f"{self.annotations} has {list(train_joints)}: the validation file must "
                    f"annotate the same keypoints")
            chosen = list(coco.records)
        elif self.val_annotations:
            chosen = list(coco.records)
        else:
            chosen = split_records(coco, split)
        good, problems = usable_records(chosen, f"{coco.path.name} {split}")
        if not good:
            why = (f"; {len(problems)} left out: {format_problems(problems, 5)}"
                   if problems else "")
            hint = (" (the hold-out keeps about 1 image in 10: with so few images pass "
                    "--val-annotations)" if split == "val" and not self.val_annotations
                    else "")
            raise DatasetFilesError(f"{coco.path}: no usable person for split {split!r}"
                                    f"{hint}{why}. Images are read from {coco.images_dir}")
        return coco, good

    def examples(self, split: str):
        """The split's examples as a tf.data.Dataset of the example contract."""
        from mssh_keras.data.datasets import from_records

        return from_records(self.records(split)[1])


def main(argv=None) -> int:
    """``python -m mssh_keras.data.coco FILE.json [--images DIR]``: check a file before
    training: what it holds, the joint set read from it, the split and every problem."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("annotations", help="COCO keypoints JSON")
    ap.add_argument("--images", help="its images (default: the JSON's folder)")
    ap.add_argument("--category", help="keypoint category (name or id), if there are several")
    ap.add_argument("--flip-pairs", help="override the derived left/right pairs")
    ap.add_argument("--no-decode", action="store_true",
                    help="check image headers only (faster; training decodes every image)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        c = read_coco(args.annotations, args.images, args.category, args.flip_pairs)
    except (CocoFormatError, DatasetFilesError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sk = c.skeleton
    print(c.describe())
    print(f"images from {c.images_dir}")
    print(f"joints ({sk.num_joints}): {', '.join(sk.joints)}")
    print("flip pairs: " + (", ".join(f"{sk.joints[a]}<->{sk.joints[b]}"
                                      for a, b in sk.flip_pairs) or "none"))
    print(f"limbs: {len(sk.limbs)}; PCK torso: "
          + (f"{sk.joints[sk.torso_pair[0]]} - {sk.joints[sk.torso_pair[1]]}"
             if sk.torso_pair else "none (box PCK and AP only)"))
    good, problems = usable_records(c.records, c.path.name, decode=not args.no_decode)
    val = {id(r) for r in split_records(c, "val")}
    n_val = sum(id(r) in val for r in good)
    print(f"usable: {len(good)} people ({len(good) - n_val} train, {n_val} in the hold-out "
          f"validation split); left out: {len(problems)}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
