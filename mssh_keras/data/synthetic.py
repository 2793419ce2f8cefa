"""Procedurally rendered people: the embedded, offline default dataset.

Why it exists: every part of the project (training, evaluation, export, demo, tests) must
run without downloads. These images are drawn from a seed by a small 3-D stick model seen
through an orthographic camera, so they are deterministic, fast (cv2 primitives only) and
carry exact labels, including self-occlusion flags.

Figure model (person frame: x = the person's own left, y = up, z = forward): a torso box,
neck, head (face or hair depending on the viewing side), tapered capsules for upper/lower
arms and legs, hands and feet. Random joint angles, limb lengths, girth, yaw (facing the
viewer or turned away), camera pitch, in-plane roll, scale and position.

Cues are kept unambiguous so a small CNN can learn the task quickly:
  * joints sit at limb ends/junctions (head_top just inside the top of the head);
  * every limb has a darker rim, a lighter core and a highlight, so boundaries are visible;
  * colours are fixed per limb *type* up to jitter: person-right arm red/orange,
    person-left arm blue, person-right leg purple, person-left leg green; upper segments
    darker than lower ones; left limbs additionally carry ring stripes;
  * the face (eyes) and a chest logo are drawn only on the side facing the camera.
Left/right are person-centric: a figure facing the viewer has its right shoulder on the
image left; a figure turned away has it on the image right.

Flags (contract): 2 visible, 1 when the joint's pixel is covered by a nearer body part
(drawn later, depth ordered) or by a foreground occluder, 0 when the joint lies outside the
image or was dropped at random as "not annotated". Joint coordinates stay true even for
flag 0. ``center``/``scale`` come from ``geometry.center_scale_from_joints`` over *all*
joints (the true body extent is known here, so dropped or cut-off joints do not shrink it).
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..geometry import center_scale_from_joints
from ..skeleton import Skeleton, get_skeleton
from .records import MISSING, OCCLUDED, VISIBLE

# ---------------------------------------------------------------------------------------
# Internal joint set (MPII16 names); other skeletons are mapped onto it by name.
_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
           "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
           "l_elbow", "l_wrist")
_ALIASES = {"neck": "upper_neck"}  # LSP "neck" is the top of the neck, below the chin

# Body parts; label-map ids are index + 1 (0 = background, 255 = foreground occluder).
PARTS = ("torso", "neck", "head", "r_uarm", "r_farm", "r_hand", "l_uarm", "l_farm", "l_hand",
         "r_thigh", "r_shin", "r_foot", "l_thigh", "l_shin", "l_foot")
PART_ID = {p: i + 1 for i, p in enumerate(PARTS)}
OCCLUDER_ID = 255

# The surfaces that "are" a joint: the joint is visible iff its pixel shows one of them.
_OWNERS = {
    "r_ankle": ("r_shin", "r_foot"), "l_ankle": ("l_shin", "l_foot"),
    "r_knee": ("r_thigh", "r_shin"), "l_knee": ("l_thigh", "l_shin"),
    "r_hip": ("r_thigh", "torso"), "l_hip": ("l_thigh", "torso"),
    "pelvis": ("torso", "r_thigh", "l_thigh"),
    "thorax": ("torso", "neck"),
    "upper_neck": ("neck", "head"),
    "head_top": ("head",),
    "r_wrist": ("r_farm", "r_hand"), "l_wrist": ("l_farm", "l_hand"),
    "r_elbow": ("r_uarm", "r_farm"), "l_elbow": ("l_uarm", "l_farm"),
    "r_shoulder": ("r_uarm", "torso"), "l_shoulder": ("l_uarm", "torso"),
}

# Hue ranges (degrees) per limb type and side: the left/right cue.
_LIMB_HUES = {("r", "arm"): (-10.0, 25.0), ("l", "arm"): (195.0, 235.0),
              ("r", "leg"): (275.0, 320.0), ("l", "leg"): (95.0, 145.0)}

_SHIFT = 4                      # cv2 fixed-point bits: sub-pixel accurate drawing
_ONE = float(1 << _SHIFT)
_AA = cv2.LINE_AA
_TRAIN_OFFSET, _VAL_OFFSET, _SEED_STRIDE = 0, 50_000_000, 100_000_000

# Fixed noise bank: per-image noise is a random window of it (much cheaper than sampling).
_NOISE = np.random.default_rng(20240601).normal(0.0, 1.0, (256, 256, 3)).astype(np.float32)

_INDEX_CACHE: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


def _skeleton_indices(skeleton: Skeleton) -> np.ndarray:
    """Index into the internal joint set for each of ``skeleton``'s joints."""
    key = (skeleton.name, skeleton.joints)
    if key not in _INDEX_CACHE:
        idx = []
        for name in skeleton.joints:
            internal = _ALIASES.get(name, name)
            if internal not in _JOINTS:
                raise ValueError(f"synthetic renderer cannot draw joint {name!r} of skeleton "
                                 f"{skeleton.name!r}; it knows {list(_JOINTS) + list(_ALIASES)}")
            idx.append(_JOINTS.index(internal))
        _INDEX_CACHE[key] = np.asarray(idx, np.int64)
    return _INDEX_CACHE[key]


def _as_skeleton(skeleton: Skeleton | str) -> Skeleton:
    return get_skeleton(skeleton) if isinstance(skeleton, str) else skeleton


# ---------------------------------------------------------------------------------------
# Small helpers.
def _rgb(h_deg: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, min(max(s, 0.0), 1.0),
                                  min(max(v, 0.0), 1.0))
    return (r * 255.0, g * 255.0, b * 255.0)


def _scaled(c, f: float) -> tuple[float, float, float]:
    return (min(c[0] * f, 255.0), min(c[1] * f, 255.0), min(c[2] * f, 255.0))


def _fx(p) -> tuple[int, int]:
    """Point -> cv2 fixed-point integer pair."""
    return (math.floor(p[0] * _ONE + 0.5), math.floor(p[1] * _ONE + 0.5))


# Pure-Python 3-vector helpers: ~10x faster than numpy for single small vectors.
def _v(*terms) -> tuple[float, float, float]:
    """Linear combination: _v(a, u, b, v, ...) = a*u + b*v + ..."""
    x = y = z = 0.0
    for i in range(0, len(terms), 2):
        c, w = terms[i], terms[i + 1]
        x += c * w[0]
        y += c * w[1]
        z += c * w[2]
    return (x, y, z)


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(v, fallback) -> tuple[float, float, float]:
    n = math.sqrt(_dot(v, v))
    return (v[0] / n, v[1] / n, v[2] / n) if n > 1e-6 else tuple(fallback)


def _cols(m: np.ndarray) -> tuple[tuple[float, float, float], ...]:
    return tuple(tuple(float(c) for c in m[:, j]) for j in range(3))


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _capsule(img: np.ndarray, a, b, ra: float, rb: float, color, line_type: int) -> None:
    """Tapered capsule: discs of radius ra at a and rb at b joined by their side lines."""
    f = math.floor
    ax, ay, bx, by = a[0] * _ONE, a[1] * _ONE, b[0] * _ONE, b[1] * _ONE
    ra, rb = ra * _ONE, rb * _ONE
    cv2.circle(img, (f(ax + 0.5), f(ay + 0.5)), f(ra + 0.5), color, -1, line_type, _SHIFT)
    cv2.circle(img, (f(bx + 0.5), f(by + 0.5)), f(rb + 0.5), color, -1, line_type, _SHIFT)
    dx, dy = bx - ax, by - ay
    n = math.hypot(dx, dy)
    if n > 1e-3 * _ONE:
        px, py = -dy / n, dx / n
        quad = np.array([[f(ax + px * ra + 0.5), f(ay + py * ra + 0.5)],
                         [f(bx + px * rb + 0.5), f(by + py * rb + 0.5)],
                         [f(bx - px * rb + 0.5), f(by - py * rb + 0.5)],
                         [f(ax - px * ra + 0.5), f(ay - py * ra + 0.5)]], np.int32)
        cv2.fillConvexPoly(img, quad, color, line_type, _SHIFT)


# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderInfo:
    """Side products of one rendering, for tests and debugging (not part of the contract)."""
    label: np.ndarray          # (H, W) uint8: top-most part id per pixel, 0 bg, 255 occluder
    background: np.ndarray     # (H, W, 3) uint8: the scene without figure/occluder, same post-fx
    owners: tuple[tuple[int, ...], ...]  # per skeleton joint: part ids that show that joint
    dropped: np.ndarray        # (K,) bool: in-image joints marked "not annotated" at random
    draw_order: tuple[int, ...]  # part ids, far to near (the occluder, if any, comes last)
    facing_viewer: bool        # torso front turned towards the camera
    yaw_deg: float             # 0 = facing the viewer, 180 = turned away
    roll_deg: float            # in-plane rotation of the whole figure


class _Rand:
    """Scalar random numbers from a pre-drawn buffer.

    A renderer makes ~150 scalar draws; numpy's per-call overhead would dominate, so draw
    them in bulk. Still fully determined by the generator's seed.
    """

    def __init__(self, rng: np.random.Generator, n: int = 256):
        self.rng, self._n = rng, n
        self._buf, self._i = rng.random(n).tolist(), 0

    def uniform(self, a: float = 0.0, b: float = 1.0) -> float:
        if self._i == self._n:
            self._buf, self._i = self.rng.random(self._n).tolist(), 0
        v = self._buf[self._i]
        self._i += 1
        return a + (b - a) * v

    def integers(self, lo: int, hi: int) -> int:
        """Uniform int in [lo, hi)."""
        return min(lo + int(self.uniform() * (hi - lo)), hi - 1)

    def normal(self, mu: float, sigma: float) -> float:
        u1 = max(self.uniform(), 1e-12)
        u2 = self.uniform()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _sample_pose(r: _Rand) -> tuple[dict[str, tuple], dict]:
    """3-D joints and auxiliary points in the person frame (units ~ body height)."""
    u = r.uniform
    g = u(0.85, 1.2)                                   # girth
    L = {"torso": 0.30 * u(0.9, 1.1), "neck": 0.05 * u(0.8, 1.2), "head": 0.062 * u(0.9, 1.1),
         "uarm": 0.17 * u(0.9, 1.1), "farm": 0.15 * u(0.9, 1.1), "thigh": 0.24 * u(0.9, 1.1),
         "shin": 0.23 * u(0.9, 1.1), "hand": 0.05 * u(0.85, 1.15), "foot": 0.075 * u(0.85, 1.15)}
    R = {"uarm": 0.034 * g, "farm": 0.027 * g, "thigh": 0.05 * g, "shin": 0.037 * g,
         "neck": 0.028 * g, "hand": 0.024 * g, "foot": 0.024 * g}
    sh_half, hip_half, depth = 0.11 * g * u(0.9, 1.1), 0.08 * g * u(0.9, 1.1), 0.06 * g

    bend = math.radians(u(-10, 15) if u() < 0.8 else u(10, 45))
    side = math.radians(u(-12, 12))
    twist = math.radians(u(-25, 25))
    rt = _rot_z(side) @ _rot_x(bend) @ _rot_y(twist)
    axis, spine, fwd = _cols(rt)
    down = _v(-1.0, spine)

    P: dict[str, tuple] = {"pelvis": (0.0, 0.0, 0.0),
                           "l_hip": (hip_half, 0.0, 0.0), "r_hip": (-hip_half, 0.0, 0.0)}
    P["thorax"] = _v(L["torso"], spine)
    sh_center = _v(1.0, P["thorax"], -0.02, spine)
    P["l_shoulder"] = _v(1.0, sh_center, sh_half, axis)
    P["r_shoulder"] = _v(1.0, sh_center, -sh_half, axis)
    rn = rt @ _rot_x(math.radians(u(-25, 25))) @ _rot_z(math.radians(u(-20, 20))) \
        @ _rot_y(math.radians(u(-40, 40)))
    head_left, head_up, head_fwd = _cols(rn)
    P["upper_neck"] = _v(1.0, P["thorax"], L["neck"], head_up)
    P["head_c"] = _v(1.0, P["upper_neck"], L["head"], head_up)
    P["head_top"] = _v(1.0, P["head_c"], 0.9 * L["head"], head_up)

    for sgn, s in ((1.0, "l"), (-1.0, "r")):
        # Arm: polar angle from "down", azimuth 0 = outward, 90 = forward, 180 = across.
        r = u()
        th = math.radians(u(5, 60) if r < 0.5 else (u(40, 125) if r < 0.85 else u(110, 175)))
        ph = math.radians(u(-45, 120) if u() < 0.9 else u(120, 170))
        d = _v(math.cos(th), down, math.sin(th) * math.cos(ph) * sgn, axis,
               math.sin(th) * math.sin(ph), fwd)
        P[f"{s}_elbow"] = _v(1.0, P[f"{s}_shoulder"], L["uarm"], d)
        e = math.radians(u(0, 20) if u() < 0.35 else u(15, 150))
        u1 = _unit(_v(1.0, fwd, -_dot(fwd, d), d), _v(sgn, axis))
        u2 = _cross(d, u1)
        om = math.radians(u(-100, 100))
        nrm = _v(math.cos(om), u1, math.sin(om), u2)
        fd = _v(math.cos(e), d, math.sin(e), nrm)
        P[f"{s}_wrist"] = _v(1.0, P[f"{s}_elbow"], L["farm"], fd)
        hd = _unit(_v(1.0, fd, 0.4 * u(-1, 1), nrm), fd)
        P[f"{s}_handc"] = _v(1.0, P[f"{s}_wrist"], 0.55 * L["hand"], hd)

        # Leg: flexion (forward), abduction (outward), knee bends backwards.
        r = u()
        f = math.radians(u(-20, 30) if r < 0.6 else (u(20, 90) if r < 0.9 else u(60, 115)))
        a = math.radians(u(-10, 35) if u() < 0.9 else u(30, 65))
        d = (sgn * math.sin(a), -math.cos(a) * math.cos(f), math.cos(a) * math.sin(f))
        P[f"{s}_knee"] = _v(1.0, P[f"{s}_hip"], L["thigh"], d)
        k = math.radians(u(0, 30) if u() < 0.6 else u(20, 130))
        back = (0.0, -math.sin(f), -math.cos(f))
        back = _unit(_v(1.0, back, -_dot(back, d), d), (0.0, 0.0, -1.0))
        sd = _v(math.cos(k), d, math.sin(k), back)
        P[f"{s}_ankle"] = _v(1.0, P[f"{s}_knee"], L["shin"], sd)
        fw = (0.0, 0.0, 1.0)
        ft = _unit(_v(1.0, fw, -0.8 * _dot(fw, sd), sd), fw)
        P[f"{s}_toe"] = _v(1.0, P[f"{s}_ankle"], L["foot"], ft)
    geo = {"L": L, "R": R, "depth": depth, "fwd": fwd, "axis": axis, "spine": spine,
           "head_up": head_up, "head_fwd": head_fwd, "head_left": head_left}
    return P, geo


def _palette(r: _Rand) -> dict:
    u = r.uniform
    col = {}
    for (side, kind), (h0, h1) in _LIMB_HUES.items():
        h, s = u(h0, h1), u(0.55, 0.95)
        col[f"{side}_{'uarm' if kind == 'arm' else 'thigh'}"] = _rgb(h, s, u(0.5, 0.72))
        col[f"{side}_{'farm' if kind == 'arm' else 'shin'}"] = _rgb(h + u(-8, 8), s, u(0.8, 1.0))
    col["skin"] = _rgb(u(15, 35), u(0.25, 0.6), u(0.45, 0.95))
    col["hair"] = _rgb(u(15, 40), u(0.3, 0.8), u(0.08, 0.45) if u() < 0.85 else u(0.6, 0.85))
    col["shoe"] = _rgb(u(0, 360), u(0, 0.5), u(0.08, 0.3))
    col["torso"] = _rgb(u(0, 360), u(0.0, 0.6), u(0.3, 0.95))
    col["logo"] = _rgb(u(0, 360), u(0.5, 1.0), u(0.6, 1.0))
    col["eye"] = _rgb(0, 0, u(0.0, 0.15))
    return col


def _background(r: _Rand, size: int) -> np.ndarray:
    """Gradient / blotchy noise / horizon scenes plus random clutter shapes."""
    u = r.uniform
    kind = u()
    if kind < 0.35:
        small = r.rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    elif kind < 0.75:
        k = int(r.integers(3, 9))
        small = r.rng.integers(0, 256, (k, k, 3), dtype=np.uint8)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    else:
        img = np.empty((size, size, 3), np.uint8)
        hz = int(u(0.3, 0.8) * size)
        img[:hz] = _rgb(u(0, 360), u(0, 0.5), u(0.4, 1.0))
        img[hz:] = _rgb(u(0, 360), u(0, 0.6), u(0.2, 0.8))
    for _ in range(int(r.integers(0, 9))):
        c = _rgb(u(0, 360), u(0, 0.8), u(0.15, 1.0))
        t = u()
        x, y = u(-0.1, 1.1) * size, u(-0.1, 1.1) * size
        if t < 0.3:
            w, h = u(0.05, 0.4) * size, u(0.05, 0.4) * size
            cv2.rectangle(img, _fx((x, y)), _fx((x + w, y + h)), c, -1, _AA, _SHIFT)
        elif t < 0.6:
            cv2.circle(img, _fx((x, y)), int(u(0.02, 0.2) * size * _ONE), c, -1, _AA, _SHIFT)
        elif t < 0.8:
            cv2.line(img, _fx((x, y)), _fx((u(0, 1) * size, u(0, 1) * size)), c,
                     int(r.integers(1, 4)), _AA, _SHIFT)
        else:
            pts = np.array([_fx((x + u(-0.15, 0.15) * size, y + u(-0.15, 0.15) * size))
                            for _ in range(int(r.integers(3, 6)))], np.int32)
            cv2.fillPoly(img, [pts], c, _AA, _SHIFT)
    if u() < 0.25:  # limb-like distractor sticks: colour alone must not define a limb
        for _ in range(int(r.integers(1, 3))):
            h = u(0, 360)
            a = (u(0, 1) * size, u(0, 1) * size)
            ang, ln = u(0, 2 * math.pi), u(0.1, 0.3) * size
            b = (a[0] + math.cos(ang) * ln, a[1] + math.sin(ang) * ln)
            r = u(0.015, 0.04) * size
            _capsule(img, a, b, r, r * u(0.7, 1.0), _rgb(h, u(0.4, 0.9), u(0.4, 1.0)), _AA)
    return img


def _postfx_params(r: _Rand, size: int) -> dict:
    u = r.uniform
    return {"alpha": u(0.8, 1.2), "beta": u(-20, 20),
            "noise": 0.0 if u() < 0.4 else u(2, 9),
            "nx": int(r.integers(0, _NOISE.shape[1] - size + 1)) if size <= _NOISE.shape[1] else 0,
            "ny": int(r.integers(0, _NOISE.shape[0] - size + 1)) if size <= _NOISE.shape[0] else 0,
            "blur": u(0.4, 1.0) if u() < 0.3 else 0.0}


def _postfx(img: np.ndarray, p: dict) -> np.ndarray:
    """Global contrast/brightness, sensor noise and occasional blur."""
    h, w = img.shape[:2]
    out = img.astype(np.float32) * p["alpha"] + p["beta"]
    if p["noise"] > 0:
        if h <= _NOISE.shape[0] and w <= _NOISE.shape[1]:
            noise = _NOISE[p["ny"]:p["ny"] + h, p["nx"]:p["nx"] + w]
        else:
            reps = (-(-h // _NOISE.shape[0]), -(-w // _NOISE.shape[1]), 1)
            noise = np.tile(_NOISE, reps)[:h, :w]
        out += noise * p["noise"]
    out = np.clip(out, 0, 255).astype(np.uint8)
    if p["blur"] > 0:
        out = cv2.GaussianBlur(out, (3, 3), p["blur"])
    return out


def _render(seed: int, skeleton: Skeleton | str, size: int, debug: bool):
    skeleton = _as_skeleton(skeleton)
    if not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"synthetic image size must be an int >= 32, got {size!r}")
    size = int(size)
    if int(seed) < 0:
        raise ValueError(f"synthetic seed must be >= 0, got {seed}")
    sk_idx = _skeleton_indices(skeleton)
    rnd = _Rand(np.random.default_rng(int(seed)))
    u = rnd.uniform

    P, geo = _sample_pose(rnd)
    col = _palette(rnd)
    names = list(P)
    pts3 = np.stack([P[n] for n in names])

    # Camera: yaw (0 = facing the viewer), small pitch, then orthographic projection.
    facing = u() < 0.6
    yaw = u(-65, 65) + (0.0 if facing else 180.0)
    cam = _rot_x(math.radians(u(-15, 15))) @ _rot_y(math.radians(yaw))
    pc = pts3 @ cam.T
    roll = rnd.normal(0, 10) if u() < 0.85 else u(-90, 90)
    roll = float(np.clip(roll, -90, 90))
    cr, sr = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    # Image y points down; positive roll turns the figure counter-clockwise on screen.
    x2 = pc[:, 0] * cr - pc[:, 1] * sr
    y2 = -(pc[:, 0] * sr + pc[:, 1] * cr)
    z = pc[:, 2]

    # Scale the figure to 50-90 % of the image and place it (sometimes partly outside).
    x0, x1, y0, y1 = float(x2.min()), float(x2.max()), float(y2.min()), float(y2.max())
    pad = geo["L"]["head"]
    k = u(0.5, 0.9) * size / (max(x1 - x0, y1 - y0) + pad)
    bw, bh = (x1 - x0) * k, (y1 - y0) * k
    m = pad * k
    cx = u(m + bw / 2, size - m - bw / 2) if size - 2 * m > bw else size / 2
    cy = u(m + bh / 2, size - m - bh / 2) if size - 2 * m > bh else size / 2
    if u() < 0.1:  # cut off by one image border: 5-35 % of the figure's extent outside
        side, out = rnd.integers(0, 4), u(0.05, 0.35)
        if side == 0:
            cx = m + bw / 2 - out * bw           # left border
        elif side == 1:
            cx = size - m - bw / 2 + out * bw    # right border
        elif side == 2:
            cy = m + bh / 2 - out * bh           # top border
        else:
            cy = size - m - bh / 2 + out * bh    # bottom border
    ox, oy = cx - (x0 + x1) / 2 * k, cy - (y0 + y1) / 2 * k

    def to_img(p3: np.ndarray) -> np.ndarray:
        """Person-frame points (N, 3) -> image pixels (N, 2)."""
        q = np.atleast_2d(p3) @ cam.T
        return np.stack([(q[:, 0] * cr - q[:, 1] * sr) * k + ox,
                         -(q[:, 0] * sr + q[:, 1] * cr) * k + oy], 1)

    X, Y = x2 * k + ox, y2 * k + oy
    pt = {n: (float(X[i]), float(Y[i])) for i, n in enumerate(names)}
    zz = {n: float(z[i]) for i, n in enumerate(names)}
    R = {key: max(v * k, 1.5) for key, v in geo["R"].items()}

    img = _background(rnd, size)
    bg = img.copy() if debug else None
    label = np.zeros((size, size), np.uint8)

    cam_fwd = cam @ geo["fwd"]          # torso forward in camera coords (z > 0: towards us)
    head_fwd_c = cam @ geo["head_fwd"]

    def draw_limb(part: str, a: str, b: str, ra: float, rb: float, color) -> None:
        pa, pb = pt[a], pt[b]
        _capsule(img, pa, pb, ra, rb, _scaled(color, 0.6), _AA)              # dark rim
        _capsule(img, pa, pb, ra * 0.72, rb * 0.72, color, _AA)              # body
        dx, dy = pb[0] - pa[0], pb[1] - pa[1]
        n = math.hypot(dx, dy)
        if n > 1e-3:
            nx, ny = -dy / n, dx / n
            o = 0.3 * (ra + rb) / 2
            hl, hw = _scaled(color, 1.35), max(1, int(round(0.25 * (ra + rb) / 2)))
            cv2.line(img, _fx((pa[0] + nx * o, pa[1] + ny * o)),                 # highlight
                     _fx((pb[0] + nx * o, pb[1] + ny * o)), hl, hw, _AA, _SHIFT)
            if part.startswith("l_") and n > 2 * max(ra, rb):  # left limbs: ring stripes
                sc = _scaled(color, 0.45)
                th = max(1, int(round(0.2 * (ra + rb) / 2)))
                for t in (0.35, 0.55, 0.75):
                    r = (ra + (rb - ra) * t) * 0.85
                    cxp, cyp = pa[0] + dx * t, pa[1] + dy * t
                    cv2.line(img, _fx((cxp - nx * r, cyp - ny * r)),
                             _fx((cxp + nx * r, cyp + ny * r)), sc, th, _AA, _SHIFT)
        _capsule(label, pa, pb, ra, rb, PART_ID[part], cv2.LINE_8)

    def draw_torso() -> None:
        d, fwd3 = geo["depth"], geo["fwd"]
        corners3 = []
        for n, w in (("l_shoulder", 1.0), ("r_shoulder", 1.0), ("l_hip", 1.3), ("r_hip", 1.3)):
            q = (P[n][0] * w, P[n][1], P[n][2])
            corners3 += [_v(1.0, q, d, fwd3), _v(1.0, q, -d, fwd3)]
        poly = np.round(to_img(np.stack(corners3)) * _ONE).astype(np.int32)
        hull = cv2.convexHull(poly)
        c = col["torso"]
        cv2.fillConvexPoly(img, hull, c, _AA, _SHIFT)
        cv2.polylines(img, [hull], True, _scaled(c, 0.55), max(1, int(round(R["neck"] * 0.3))),
                      _AA, _SHIFT)
        cv2.fillConvexPoly(label, hull, PART_ID["torso"], cv2.LINE_8, _SHIFT)
        if cam_fwd[2] > 0.3:  # chest logo: only the front of the shirt has one
            lc = to_img(np.array(_v(0.6, P["thorax"], d, fwd3)))[0]
            cv2.circle(img, _fx(lc), int(max(1.5, R["thigh"] * 0.55) * _ONE), col["logo"], -1, _AA,
                       _SHIFT)

    def draw_head() -> None:
        hc, ht = pt["head_c"], pt["head_top"]
        r = geo["L"]["head"] * k
        ang = math.degrees(math.atan2(ht[1] - hc[1], ht[0] - hc[0])) \
            if math.hypot(ht[0] - hc[0], ht[1] - hc[1]) > 0.2 * r else -90.0 - roll
        axes = (int(r * _ONE), int(r * 0.82 * _ONE))
        cv2.ellipse(img, _fx(hc), axes, ang, 0, 360, col["hair"], -1, _AA, _SHIFT)
        cv2.ellipse(label, _fx(hc), axes, ang, 0, 360, PART_ID["head"], -1, cv2.LINE_8, _SHIFT)
        if head_fwd_c[2] > -0.15:  # the face is on the front of the head
            # Face shifted towards where the head looks (a profile cue), kept inside the head.
            hl = geo["L"]["head"]
            h0 = to_img(np.array([P["head_c"],
                                  _v(1.0, P["head_c"], hl, geo["head_fwd"]),
                                  _v(1.0, P["head_c"], 0.35 * hl, geo["head_left"], 0.15 * hl,
                                     geo["head_up"]),
                                  _v(1.0, P["head_c"], -0.35 * hl, geo["head_left"], 0.15 * hl,
                                     geo["head_up"])]))
            off = (h0[1] - h0[0]) * 0.3
            n = math.hypot(off[0], off[1])
            if n > 0.1 * r:
                off *= 0.1 * r / n
            fc = h0[0] + off
            fax = (int(r * 0.85 * _ONE), int(r * 0.7 * _ONE))
            cv2.ellipse(img, _fx(fc), fax, ang, 0, 360, col["skin"], -1, _AA, _SHIFT)
            if head_fwd_c[2] > 0.25:
                for e in h0[2:]:
                    cv2.circle(img, _fx(e - h0[0] + fc), int(max(1.0, 0.13 * r) * _ONE), col["eye"],
                               -1, _AA, _SHIFT)

    def draw_simple(part: str, a: str, b: str, ra: float, rb: float, color) -> None:
        _capsule(img, pt[a], pt[b], ra, rb, _scaled(color, 0.7), _AA)
        _capsule(img, pt[a], pt[b], ra * 0.7, rb * 0.7, color, _AA)
        _capsule(label, pt[a], pt[b], ra, rb, PART_ID[part], cv2.LINE_8)

    # Depth-ordered drawing: sort parts by camera depth (larger z = nearer = drawn later).
    # Legs get a small negative bias so the shirt overlaps the thigh tops; within a chain
    # the distal part wins ties.
    tz = (zz["l_shoulder"] + zz["r_shoulder"] + zz["l_hip"] + zz["r_hip"]) / 4
    items = [(tz, "torso", draw_torso),
             (tz + 1e-3, "neck", lambda: draw_simple("neck", "thorax", "upper_neck", R["neck"],
                                                     R["neck"], col["skin"])),
             (max(zz["head_c"], tz + 2e-3), "head", draw_head)]
    for s in ("l", "r"):
        # (part, start, end, start radius, end radius, draw function, colour, depth bias)
        chain = ((f"{s}_uarm", f"{s}_shoulder", f"{s}_elbow", R["uarm"], R["uarm"] * 0.9,
                  draw_limb, col[f"{s}_uarm"], 0.0),
                 (f"{s}_farm", f"{s}_elbow", f"{s}_wrist", R["farm"], R["farm"] * 0.85,
                  draw_limb, col[f"{s}_farm"], 1e-4),
                 (f"{s}_hand", f"{s}_wrist", f"{s}_handc", R["hand"] * 0.8, R["hand"],
                  draw_simple, col["skin"], 2e-4),
                 (f"{s}_thigh", f"{s}_hip", f"{s}_knee", R["thigh"], R["thigh"] * 0.8,
                  draw_limb, col[f"{s}_thigh"], -0.01),
                 (f"{s}_shin", f"{s}_knee", f"{s}_ankle", R["shin"], R["shin"] * 0.75,
                  draw_limb, col[f"{s}_shin"], -0.01 + 1e-4),
                 (f"{s}_foot", f"{s}_ankle", f"{s}_toe", R["foot"], R["foot"] * 0.9,
                  draw_simple, col["shoe"], -0.01 + 2e-4))
        for part, a, b, ra, rb, fn, c, bias in chain:
            key = (zz[a] + zz[b]) / 2 + bias
            items.append((key, part, lambda fn=fn, args=(part, a, b, ra, rb, c): fn(*args)))
    order = []
    for _, part, fn in sorted(items, key=lambda t: t[0]):
        fn()
        order.append(PART_ID[part])

    if u() < 0.12:  # foreground occluder (a box or a ball in front of the person)
        c = _rgb(u(0, 360), u(0, 0.8), u(0.2, 1.0))
        qx, qy = u(float(X.min()), float(X.max())), u(float(Y.min()), float(Y.max()))
        w, h = u(0.1, 0.3) * size, u(0.1, 0.3) * size
        if u() < 0.5:
            a, b = _fx((qx - w / 2, qy - h / 2)), _fx((qx + w / 2, qy + h / 2))
            cv2.rectangle(img, a, b, c, -1, _AA, _SHIFT)
            cv2.rectangle(label, a, b, OCCLUDER_ID, -1, cv2.LINE_8, _SHIFT)
        else:
            ax = (int(w / 2 * _ONE), int(h / 2 * _ONE))
            cv2.ellipse(img, _fx((qx, qy)), ax, 0, 0, 360, c, -1, _AA, _SHIFT)
            cv2.ellipse(label, _fx((qx, qy)), ax, 0, 0, 360, OCCLUDER_ID, -1, cv2.LINE_8, _SHIFT)
        order.append(OCCLUDER_ID)

    fx = _postfx_params(rnd, size)
    img = _postfx(img, fx)

    # Labels in the requested skeleton's order.
    allj = np.array([pt[n] for n in _JOINTS], np.float32)
    joints = allj[sk_idx]
    K = len(sk_idx)
    flags = np.full(K, MISSING, np.int32)
    owners = tuple(tuple(PART_ID[p] for p in _OWNERS[_JOINTS[j]]) for j in sk_idx)
    ij = np.rint(joints).astype(np.int64)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < size) & (ij[:, 1] >= 0) & (ij[:, 1] < size)
    dropped = inside & (rnd.rng.random(K) < 0.01)
    for j in range(K):
        if inside[j] and not dropped[j]:
            flags[j] = VISIBLE if int(label[ij[j, 1], ij[j, 0]]) in owners[j] else OCCLUDED
    center, scale = center_scale_from_joints(joints, np.ones(K, bool))
    example = {"image": img, "joints": joints, "flags": flags,
               "center": np.asarray(center, np.float32), "scale": np.float32(scale),
               "image_id": f"synthetic_{int(seed):08d}"}
    if not debug:
        return example, None
    info = RenderInfo(label=label, background=_postfx(bg, fx), owners=owners, dropped=dropped,
                      draw_order=tuple(order),
                      facing_viewer=bool(cam_fwd[2] > 0), yaw_deg=float(yaw), roll_deg=roll)
    return example, info


def render_example(seed: int, skeleton: Skeleton | str = "lsp14", size: int = 128) -> dict:
    """One synthetic person image with its labels (the dataset example contract).

    Deterministic in ``seed``: the same seed gives byte-identical output.
    """
    return _render(seed, skeleton, size, debug=False)[0]


def render_debug(seed: int, skeleton: Skeleton | str = "lsp14",
                 size: int = 128) -> tuple[dict, RenderInfo]:
    """Like :func:`render_example`, plus the part-label map and background for checks."""
    return _render(seed, skeleton, size, debug=True)


# ---------------------------------------------------------------------------------------
class SyntheticPose:
    """A fixed-size synthetic train/val dataset (rendered on demand, cached per split).

    Example ``i`` of a split is rendered from seed
    ``seed * 100_000_000 + {train: 0, val: 50_000_000}[split] + i``, so the splits never
    share an image and every example is reproducible on its own.
    """

    SPLITS = ("train", "val")

    def __init__(self, skeleton_name: str = "lsp14", size: int = 128, num_train: int = 2000,
                 num_val: int = 200, seed: int = 0):
        self.skeleton = get_skeleton(skeleton_name)
        if not (0 <= num_train <= _VAL_OFFSET and 0 <= num_val <= _SEED_STRIDE - _VAL_OFFSET):
            raise ValueError(f"SyntheticPose: num_train/num_val must be in [0, {_VAL_OFFSET}], "
                             f"got {num_train}/{num_val}")
        if seed < 0:
            raise ValueError(f"SyntheticPose: seed must be >= 0, got {seed}")
        self.size, self.seed = int(size), int(seed)
        self.num = {"train": int(num_train), "val": int(num_val)}
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def _check(self, split: str) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"SyntheticPose: unknown split {split!r}; use one of {self.SPLITS}")

    def __len__(self) -> int:
        return self.num["train"] + self.num["val"]

    def seed_of(self, split: str, i: int) -> int:
        self._check(split)
        if not 0 <= i < self.num[split]:
            raise IndexError(f"SyntheticPose: index {i} out of range for split {split!r} "
                             f"with {self.num[split]} examples")
        offset = _TRAIN_OFFSET if split == "train" else _VAL_OFFSET
        return self.seed * _SEED_STRIDE + offset + int(i)

    def example(self, split: str, i: int) -> dict:
        return render_example(self.seed_of(split, i), self.skeleton, self.size)

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """All examples of ``split`` stacked (rendered once, then cached in memory)."""
        self._check(split)
        if split not in self._cache:
            n, s, K = self.num[split], self.size, self.skeleton.num_joints
            out = {"image": np.empty((n, s, s, 3), np.uint8),
                   "joints": np.empty((n, K, 2), np.float32),
                   "flags": np.empty((n, K), np.int32),
                   "center": np.empty((n, 2), np.float32),
                   "scale": np.empty((n,), np.float32)}
            ids = []
            for i in range(n):
                ex = self.example(split, i)
                for key in out:
                    out[key][i] = ex[key]
                ids.append(ex["image_id"])
            out["image_id"] = np.asarray(ids, dtype=np.str_) if ids else np.empty((0,), np.str_)
            self._cache[split] = out
        return self._cache[split]

    def as_dataset(self, split: str):
        """tf.data.Dataset of example dicts, built from the cached arrays."""
        import tensorflow as tf  # imported lazily: rendering itself needs no TensorFlow

        arr = self.arrays(split)
        return tf.data.Dataset.from_tensor_slices({k: v for k, v in arr.items()})
