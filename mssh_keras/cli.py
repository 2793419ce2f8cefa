"""argparse value types shared by the command lines: a bad number fails at parse time,
in one line naming the flag, instead of running with it (an endless epoch, an untrained
model saved as final...)."""
from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``150,170``."""
    try:
        values = tuple(int(e) for e in text.split(",") if e.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be positive integers, got {text!r}")
    return values


def add_coco_arguments(ap: argparse.ArgumentParser, val_help: str):
    """The options that name a COCO keypoints dataset, the same in train.py and evaluate.py;
    returns their argument group for each command's own additions."""
    coco = ap.add_argument_group("--dataset coco (your own keypoints, docs/your-own-data.md)")
    coco.add_argument("--annotations", metavar="FILE.json",
                      help="COCO keypoints JSON (CVAT, Label Studio, Roboflow exports)")
    coco.add_argument("--images", metavar="DIR",
                      help="folder of its images (default: the JSON's folder)")
    coco.add_argument("--val-annotations", metavar="FILE.json", help=val_help)
    coco.add_argument("--val-images", metavar="DIR", help="its images (default: --images)")
    coco.add_argument("--category", help="keypoint category (name or id), if there are several")
    return coco
