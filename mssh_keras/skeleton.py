"""Joint sets as data: names, flip pairs, limbs, PCP limbs, drawing sides.

Everything that knows "which index is the left wrist" reads it from here, so the
datasets, the flip augmentation, the metrics and the demo can never disagree.
Left/right are person-centric (the person's own left), as in LSP and MPII.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .joint_names import side


@dataclass(frozen=True)
class Skeleton:
    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    limbs: tuple[tuple[int, int], ...]  # drawn bones
    pcp_limbs: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    # PCK@0.2 (LSP convention): torso = distance between these two joints.
    torso_pair: tuple[int, int] | None = None
    # PCKh: joints excluded from the mean (MPII: pelvis, thorax).
    pckh_excluded: tuple[int, ...] = ()

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        return self.joints.index(name)

    @property
    def flip_permutation(self) -> list[int]:
        """perm such that flipped_joints = joints[perm] (left <-> right)."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @property
    def sides(self) -> tuple[str, ...]:
        """'L', 'R' or 'C' per joint, for colouring (the naming rule of joint_names.py:
        l_hip, left_hip, Left Hip... are all left)."""
        return tuple(side(n) for n in self.joints)

    def to_dict(self) -> dict:
        return {"name": self.name, "joints": list(self.joints),
                "flip_pairs": [list(p) for p in self.flip_pairs],
                "limbs": [list(p) for p in self.limbs]}


LSP14 = Skeleton(
    name="lsp14",
    joints=("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
            "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
            "neck", "head_top"),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
    limbs=((0, 1), (1, 2), (5, 4), (4, 3), (2, 3), (6, 7), (7, 8), (11, 10), (10, 9),
           (8, 9), (8, 2), (9, 3), (12, 13), (8, 12), (9, 12)),
    pcp_limbs={
        # Paper column order: Torso, U.Leg, L.Leg, U.Arm, Forearm, Head.
        # Torso = the two shoulder-hip sides, as in the LSP evaluation code.
        "Torso": ((8, 2), (9, 3)),
        "U.Leg": ((2, 1), (3, 4)),
        "L.Leg": ((1, 0), (4, 5)),
        "U.Arm": ((8, 7), (9, 10)),
        "Forearm": ((7, 6), (10, 11)),
        "Head": ((12, 13),),
    },
    torso_pair=(9, 2),  # left shoulder - right hip
)

MPII16 = Skeleton(
    name="mpii16",
    joints=("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
            "pelvis", "thorax", "upper_neck", "head_top",
            "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist"),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=((0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6), (6, 7), (7, 8), (8, 9),
           (10, 11), (11, 12), (12, 7), (15, 14), (14, 13), (13, 7)),
    pcp_limbs={
        "Torso": ((12, 2), (13, 3)),
        "U.Leg": ((2, 1), (3, 4)),
        "L.Leg": ((1, 0), (4, 5)),
        "U.Arm": ((12, 11), (13, 14)),
        "Forearm": ((11, 10), (14, 15)),
        "Head": ((8, 9),),
    },
    torso_pair=(13, 2),
    pckh_excluded=(6, 7),
)

SKELETONS = {s.name: s for s in (LSP14, MPII16)}


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown joint set {name!r}; known: {sorted(SKELETONS)}") from None


def skeleton_for_joints(num_joints: int) -> Skeleton:
    """The one known joint set with ``num_joints`` joints (for arrays or models that do not
    name theirs); ValueError when none or several have that many."""
    found = [s for s in SKELETONS.values() if s.num_joints == num_joints]
    if len(found) != 1:
        counts = ", ".join(f"{s.name}: {s.num_joints}" for s in SKELETONS.values())
        raise ValueError(f"{'no' if not found else 'more than one'} known skeleton has "
                         f"{num_joints} joints ({counts})")
    return found[0]
