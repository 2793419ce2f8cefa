"""Joint names -> side and canonical form: the one naming rule for every joint set.

Datasets and annotation tools spell the same joint many ways: ``l_hip`` (LSP and MPII
here), ``left_hip`` (COCO), ``Left Hip`` / ``Right-ankle`` (AI Challenger, LV-MHP),
``LHip`` (OpenPose), ``hip_left`` or ``hip_l``. The rule, applied to the name as written:

* **left** when the name starts with ``left`` or ``l`` followed by a separator (``_``,
  ``-``, ``.``, a space; any case), or with ``left``/``Left`` or a capital ``L`` followed
  by a capital letter that starts a word (``leftHip``, ``LeftHip``, ``LHip``; not ``LED``),
  or ends with a separator followed by ``left`` or ``l`` (``hip_left``, ``hip_L``);
  **right** the same with ``right``/``r``/``R``; every other joint is on the centre line;
* its **stem** is the rest, lower case, with camel-case boundaries and runs of other
  characters turned into single ``_`` (``Left-Hip`` -> ``hip``, ``LeftUpperArm`` ->
  ``upper_arm``, ``Head top`` -> ``head_top``);
* its **canonical name** is ``l_<stem>``, ``r_<stem>`` or ``<stem>`` (the LSP/MPII
  spelling), which is how joints of different sets are matched (PCK's torso, OKS sigmas,
  copying heads when fine-tuning, the person search's hips and shoulders).

Flip pairs (``flip_pairs_from_names``) are the left and right joints with the same stem.
Left and right are the *person's* own sides (the convention of LSP, MPII and COCO).
"""
from __future__ import annotations

import re

_SEP = r"[_\-. ]+"
_PREFIX = {
    "L": re.compile(rf"^(?:(?i:left|l){_SEP}|(?i:left)(?=[A-Z])|L(?=[A-Z][a-z]))"),
    "R": re.compile(rf"^(?:(?i:right|r){_SEP}|(?i:right)(?=[A-Z])|R(?=[A-Z][a-z]))"),
}
_SUFFIX = {
    "L": re.compile(rf"{_SEP}(?i:left|l)$"),
    "R": re.compile(rf"{_SEP}(?i:right|r)$"),
}


def _stem(text: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def split_name(name: str) -> tuple[str, str]:
    """(side, stem) of a joint name: side 'L', 'R' or 'C' (centre), see the module rule."""
    name = str(name).strip()
    for side in ("L", "R"):
        for pattern in (_PREFIX[side], _SUFFIX[side]):
            rest = pattern.sub("", name, count=1)
            if rest != name and _stem(rest):
                return side, _stem(rest)
    return "C", _stem(name)


def side(name: str) -> str:
    """'L', 'R' or 'C' for one joint name."""
    return split_name(name)[0]


def canonical(name: str) -> str:
    """``l_<stem>``, ``r_<stem>`` or ``<stem>``: e.g. 'Left Shoulder' -> 'l_shoulder'."""
    s, stem = split_name(name)
    return {"L": "l_", "R": "r_", "C": ""}[s] + stem


def find(joints, name: str) -> int | None:
    """Index of the joint whose canonical name is ``canonical(name)``, else None."""
    target = canonical(name)
    for i, joint in enumerate(joints):
        if canonical(joint) == target:
            return i
    return None


def flip_pairs_from_names(joints) -> tuple[tuple[tuple[int, int], ...], list[str]]:
    """(pairs, unpaired): each (left, right) pair of joints with the same stem, in the
    order of the left joints; ``unpaired`` names the sided joints without a partner
    (they map to themselves when an image is flipped)."""
    parts = [split_name(j) for j in joints]
    pairs, used = [], set()
    for i, (s, stem) in enumerate(parts):
        if s != "L":
            continue
        partners = [k for k, (t, other) in enumerate(parts) if t == "R" and other == stem
                    and k not in used]
        if partners:
            pairs.append((i, partners[0]))
            used.update((i, partners[0]))
    unpaired = [str(joints[i]) for i, (s, _) in enumerate(parts) if s != "C" and i not in used]
    return tuple(pairs), unpaired


def torso_pair(joints) -> tuple[int, int] | None:
    """(left shoulder, right hip): the LSP PCK torso, when both joints exist."""
    a, b = find(joints, "l_shoulder"), find(joints, "r_hip")
    return None if a is None or b is None else (a, b)
