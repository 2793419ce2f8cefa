"""tf.data input pipeline: person-centred crop, augmentation, per-stack targets.

Input: a dataset of example dicts (see ``mssh_keras/data/__init__.py``). Training
examples get a random scale (0.75-1.25), rotation (+-30 deg, on 60 % of examples, as
Newell), horizontal flip with the left/right joint swap, and colour jitter; evaluation
is deterministic. Optionally (``zoom_out`` > 1, ``zoom_out_prob`` > 0) a share of the
examples is zoomed out instead: the person small and anywhere in the crop, as in a
letterboxed whole frame (what ``PoseEstimator.predict`` without a box starts from).
The crop is one affine warp per example (an image projective transform), built with the
same formula as ``geometry.crop_matrix`` (a test checks they agree).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from ..codec import HeatmapCodec
from ..skeleton import Skeleton


@dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.75, 1.25)
    rotation: float = 30.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    color: float = 0.2       # brightness/contrast/saturation factors in [1-c, 1+c]
    # Whole-frame-like views: with probability zoom_out_prob the crop side is multiplied
    # by a log-uniform factor in [max(scale[1], 1), zoom_out] instead (the person
    # 1/zoom_out of a normal crop's size at the smallest) and the crop is shifted so the
    # person lies anywhere inside it. 1 / 0 = off (the stream of random draws unchanged).
    zoom_out: float = 1.0
    zoom_out_prob: float = 0.0
    # Upright crops (BlazePose's convention, what ``predict(..., upright=True)`` shows the
    # model): on this share of the examples the crop is turned so the ground-truth torso
    # (hips -> shoulders midpoints) points up, the rotation draw above added as jitter.
    # People without an annotated hip and shoulder keep the plain draw. 0 = off (the
    # stream of random draws unchanged).
    upright_prob: float = 0.0

    def __post_init__(self):
        if not (0.0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"Augment.scale must be 0 < lo <= hi, got {self.scale}")
        if not 0.0 <= self.upright_prob <= 1.0:
            raise ValueError(f"Augment.upright_prob must be in [0, 1], got {self.upright_prob}")
        if self.zoom_out < 1.0 or not 0.0 <= self.zoom_out_prob <= 1.0:
            raise ValueError(f"Augment.zoom_out must be >= 1 and zoom_out_prob in [0, 1], "
                             f"got {self.zoom_out}, {self.zoom_out_prob}")


def crop_matrix_tf(center, scale, size: int, rotation_deg, flip):
    """TF twin of ``geometry.crop_matrix``: 2x3 float32 matrix, original -> crop."""
    k = tf.cast(size, tf.float32) / tf.cast(scale, tf.float32)
    t = tf.cast(rotation_deg, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(t) * k, tf.sin(t) * k
    c = (size - 1) / 2.0
    cx, cy = tf.cast(center[0], tf.float32), tf.cast(center[1], tf.float32)
    row0 = tf.stack([cos, sin, c - (cos * cx + sin * cy)])
    row1 = tf.stack([-sin, cos, c - (-sin * cx + cos * cy)])
    flipped0 = tf.stack([-row0[0], -row0[1], -row0[2] + (size - 1)])
    row0 = tf.where(tf.cast(flip, tf.bool), flipped0, row0)
    return tf.stack([row0, row1])


def _inverse_transform(m):
    """Flattened 8-vector of the crop -> original mapping, as affine_transform wants."""
    a, b, tx = m[0, 0], m[0, 1], m[0, 2]
    c, d, ty = m[1, 0], m[1, 1], m[1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    itx, ity = -(ia * tx + ib * ty), -(ic * tx + id_ * ty)
    return tf.stack([ia, ib, itx, ic, id_, ity, 0.0, 0.0])


def warp(image, m, size: int):
    """Crop ``image`` (H, W, 3) with the 2x3 matrix ``m`` -> (size, size, 3) float32.

    ``tf.raw_ops`` because keras.ops.image.affine_transform cannot change the output
    size, and sampling a full MPII frame to keep a 128x128 corner is 50x the work.
    """
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=_inverse_transform(m)[None],
        output_shape=tf.constant([size, size]), fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")
    return out[0]


def _jitter(image, strength: float):
    f = tf.random.uniform((3,), 1.0 - strength, 1.0 + strength)
    gray = tf.reduce_mean(image, axis=-1, keepdims=True)
    image = gray + (image - gray) * f[0]                       # saturation
    mean = tf.reduce_mean(image)
    image = mean + (image - mean) * f[1]                       # contrast
    return tf.clip_by_value(image * f[2], 0.0, 255.0)          # brightness


def _zoom_out(s, center, scale, augment: Augment):
    """(scale factor, crop centre) of a whole-frame-like view on ``zoom_out_prob`` of the
    examples: the person (extent scale / 1.25, the joint-box padding) small in the crop,
    shifted anywhere the crop still holds it."""
    from ..geometry import JOINT_BOX_PADDING

    far = tf.random.uniform(()) < augment.zoom_out_prob
    lo = math.log(max(augment.scale[1], 1.0))
    z = tf.exp(tf.random.uniform((), lo, math.log(augment.zoom_out)))
    room = tf.maximum(scale * z - scale / JOINT_BOX_PADDING, 0.0) / 2.0
    shift = tf.random.uniform((2,), -1.0, 1.0) * room
    return tf.where(far, z, s), tf.where(far, center + shift, center)


def upright_angle_tf(joints, flags, torso):
    """(crop rotation in degrees that turns the hips -> shoulders vector straight up, whether
    both midpoints exist): TF twin of ``person_search.upright_rotation`` on the annotated
    joints (a pair's midpoint, or its one annotated joint)."""
    (lh, rh), (ls, rs) = torso
    seen = tf.cast(flags > 0, tf.float32)

    def mid(a, b):
        n = seen[a] + seen[b]
        return (joints[a] * seen[a] + joints[b] * seen[b]) / tf.maximum(n, 1.0), n > 0

    (hips, h_ok), (shoulders, s_ok) = mid(lh, rh), mid(ls, rs)
    v = shoulders - hips
    ok = h_ok & s_ok & (tf.norm(v) > 1e-3)
    return tf.atan2(v[0], -v[1]) * (180.0 / math.pi), ok


def crop_example(ex: dict, size: int, flip_perm, augment: Augment | None, torso=None):
    """Example dict -> crop (size, size, 3) float32 in [0, 255], joints/flags in the crop, M.
    ``torso``: ((l_hip, r_hip), (l_shoulder, r_shoulder)) indices, for ``upright_prob``."""
    center = tf.cast(ex["center"], tf.float32)
    if augment is not None:
        s = tf.random.uniform((), *augment.scale)
        rot = tf.where(tf.random.uniform(()) < augment.rotation_prob,
                       tf.random.uniform((), -augment.rotation, augment.rotation), 0.0)
        if augment.upright_prob > 0.0 and torso is not None:
            angle, ok = upright_angle_tf(tf.cast(ex["joints"], tf.float32), ex["flags"], torso)
            turn = (tf.random.uniform(()) < augment.upright_prob) & ok
            rot = tf.where(turn, angle + rot, rot)
        flip = tf.random.uniform(()) < augment.flip_prob
        if augment.zoom_out > 1.0 and augment.zoom_out_prob > 0.0:
            s, center = _zoom_out(s, center, tf.cast(ex["scale"], tf.float32), augment)
    else:
        s, rot, flip = tf.constant(1.0), tf.constant(0.0), tf.constant(False)
    m = crop_matrix_tf(center, ex["scale"] * s, size, rot, flip)
    image = warp(ex["image"], m, size)
    joints = tf.cast(ex["joints"], tf.float32) @ tf.transpose(m[:, :2]) + m[:, 2]
    flags = tf.cast(ex["flags"], tf.int32)
    perm = tf.constant(flip_perm, tf.int32)
    joints = tf.where(flip, tf.gather(joints, perm), joints)
    flags = tf.where(flip, tf.gather(flags, perm), flags)
    if augment is not None and augment.color > 0:
        image = _jitter(image, augment.color)
    return image, joints, flags, m


def training_pipeline(ds: tf.data.Dataset, skeleton: Skeleton, codec: HeatmapCodec,
                      batch_size: int, augment: Augment | None = Augment(),
                      shuffle: int = 1000, seed: int | None = None,
                      drop_remainder: bool = True, skip: int = 0) -> tf.data.Dataset:
    """Examples -> batches of (image, (per-stack heatmaps, mask)) for ``PoseTrainer``.

    ``codec`` says the crop size (its input size) and makes each stack's targets
    (``HeatmapCodec.encode``). ``skip`` drops that many shuffled examples before they are cropped (a resumed run
    continues the stream without paying the crop, augmentation and targets of the part
    already trained on).
    """
    from ..person_search import torso_joints

    perm, torso = skeleton.flip_permutation, torso_joints(skeleton)

    def to_xy(ex):
        image, joints, flags, _ = crop_example(ex, codec.input_size, perm, augment, torso)
        maps, mask = codec.encode(joints, flags)
        return image, (maps, mask)

    if shuffle:
        ds = ds.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    if skip:
        ds = ds.skip(skip)
    ds = ds.map(to_xy, num_parallel_calls=tf.data.AUTOTUNE, deterministic=augment is None)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(ds: tf.data.Dataset, skeleton: Skeleton, input_size: int,
                  batch_size: int) -> tf.data.Dataset:
    """Deterministic crops plus what evaluation needs to map predictions back."""
    def to_eval(ex):
        image, joints, flags, m = crop_example(ex, input_size, skeleton.flip_permutation, None)
        # No flip at evaluation, so the flags are the original ones.
        meta = {"crop_joints": joints, "flags": flags, "matrix": m, "joints": ex["joints"],
                "image_id": ex["image_id"]}
        if "head_size" in ex:
            meta["head_size"] = ex["head_size"]
        return image, meta

    return ds.map(to_eval, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)
