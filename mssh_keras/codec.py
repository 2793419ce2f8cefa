"""The heatmap codec: how a joint becomes a heatmap (training targets) and a heatmap a joint.

``HeatmapCodec`` holds what both directions need: the network's input size, the heatmap
resolution of each stack, the Gaussian's sigma and the visible / occluded amplitudes; each
stack's stride (input_size / resolution) is derived here and nowhere else. mmpose's
``MSRAHeatmap`` codec was the model: ``encode`` keypoints -> Gaussian heatmaps, ``decode``
heatmaps -> keypoints by argmax and a quarter-pixel shift.

Pixel convention (geometry.py): a pixel's *centre* has integer coordinates, 0-based, x to
the right and y down. A heatmap of stride ``s`` has its pixel ``u`` covering input pixels
``[u*s, (u+1)*s)``, so its centre sits at input coordinate ``u*s + (s-1)/2``
(``heatmap_to_input``); horizontal flips map ``x -> W-1-x`` in both spaces.

Encode (TensorFlow, per example inside ``Dataset.map``; paper Eq. 1): every stack is
supervised at its own resolution with a 2-D Gaussian of std ``sigma`` *heatmap pixels*.
sigma = 1 at every stack (Newell's value at 64x64) keeps the same number of pixels under
every peak, so coarse and fine stacks see losses of the same magnitude; in image pixels the
blob is proportionally wider on coarse stacks, the precision those stacks can offer. The
amplitude is +1 for visible joints and -1 for occluded ones (Eq. 1), configurable. Joints
without annotation, or whose centre falls outside the crop, are masked out.

Decode (numpy, no TensorFlow: every runtime uses it): per-joint argmax, then the
quarter-pixel shift (Newell et al. 2016, HRNet's ``get_final_preds``) 0.25 px toward the
higher of its two neighbours, separately in x and in y. For a symmetric peak at sub-pixel
offset ``d`` (|d| <= 0.5) from the argmax pixel, the per-axis error drops from |d| (plain
argmax, mean 0.25 px) to |d - 0.25 sign(d)| <= 0.25 px (mean 0.125 px).

Metadata: an exported model's metadata says ``input_size``, ``heatmap_size``, ``stride``
and how to ``decode`` (``to_metadata`` / ``from_metadata``). Sigma and the amplitudes are
training facts (``run_config.json``'s ``train``); decoding does not need them.

TensorFlow is imported inside ``encode`` only, so the runtimes import this module freely.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import geometry

DECODE_DESCRIPTION = ("per-joint argmax + quarter-pixel shift toward the higher neighbour; "
                      "heatmap pixel u -> input pixel u*stride + (stride-1)/2 "
                      "(mssh_keras.decode)")


# --------------------------------------------------------------------------------------
# Coordinates (numpy arrays and TF tensors alike).
def heatmap_to_input(u, stride: float):
    """Heatmap pixel coordinate -> input-image coordinate (works on numpy and tf tensors)."""
    return u * stride + (stride - 1.0) / 2.0


def input_to_heatmap(x, stride: float):
    """Input-image coordinate -> heatmap pixel coordinate (the inverse of heatmap_to_input)."""
    return (x - (stride - 1.0) / 2.0) / stride


# --------------------------------------------------------------------------------------
# Decoding (numpy).
def check_heatmaps(heatmaps) -> np.ndarray:
    """``heatmaps`` as an array of shape (h, w, K) or (B, h, w, K), else ValueError."""
    hm = np.asarray(heatmaps)
    if hm.ndim not in (3, 4):
        raise ValueError(f"heatmaps must be (h, w, K) or (B, h, w, K), got shape {hm.shape}")
    if hm.shape[-3] < 1 or hm.shape[-2] < 1 or hm.shape[-1] < 1:
        raise ValueError(f"heatmaps have an empty axis: shape {hm.shape}")
    if not np.issubdtype(hm.dtype, np.number):
        raise ValueError(f"heatmaps must be numeric, got dtype {hm.dtype}")
    return hm


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint argmax plus the quarter-pixel shift, in heatmap pixels.

    heatmaps: (h, w, K) or (B, h, w, K). Returns ``coords`` (..., K, 2) float32 as (x, y)
    in heatmap pixels (pixel centres at integers) and ``conf`` (..., K) float32, the
    maximum of each heatmap. The shift is applied on an axis only when both neighbours
    exist (0 < x < w-1, resp. 0 < y < h-1); ties (equal neighbours) do not shift. An
    all-constant heatmap decodes to its first pixel (0, 0) with conf = that value: callers
    judge low-confidence joints by ``conf``.
    """
    hm = check_heatmaps(heatmaps)
    single = hm.ndim == 3
    if single:
        hm = hm[None]
    b, h, w, k = hm.shape
    if np.isnan(hm).any():
        raise ValueError("heatmaps contain NaN; the model output is broken")
    flat = np.moveaxis(hm, -1, 1).reshape(b, k, h * w)           # (B, K, h*w)
    idx = np.argmax(flat, axis=-1)                                # (B, K)
    conf = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    ys, xs = np.divmod(idx, w)

    bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
    x = xs.astype(np.float64)
    y = ys.astype(np.float64)
    inner_x = (xs > 0) & (xs < w - 1)
    inner_y = (ys > 0) & (ys < h - 1)
    # Clipped neighbour indices keep the gathers in bounds; masks discard the border cases.
    right = hm[bi, ys, np.minimum(xs + 1, w - 1), ki].astype(np.float64)
    left = hm[bi, ys, np.maximum(xs - 1, 0), ki].astype(np.float64)
    down = hm[bi, np.minimum(ys + 1, h - 1), xs, ki].astype(np.float64)
    up = hm[bi, np.maximum(ys - 1, 0), xs, ki].astype(np.float64)
    x += np.where(inner_x, 0.25 * np.sign(right - left), 0.0)
    y += np.where(inner_y, 0.25 * np.sign(down - up), 0.0)

    coords = np.stack([x, y], axis=-1).astype(np.float32)
    conf = conf.astype(np.float32)
    if single:
        return coords[0], conf[0]
    return coords, conf


def heatmap_coords_to_image(coords: np.ndarray, stride: float,
                            crop_matrix: np.ndarray) -> np.ndarray:
    """Heatmap (x, y) -> input crop (``heatmap_to_input``) -> original image.

    coords: (K, 2) with crop_matrix (2, 3), or (B, K, 2) with crop_matrix (2, 3) shared or
    (B, 2, 3) per example. ``crop_matrix`` is the image->crop matrix used to make the input
    (geometry.crop_matrix, flip included), so a flipped crop is undone here as well.
    """
    pts = np.asarray(coords, dtype=np.float64)
    m = np.asarray(crop_matrix, dtype=np.float64)
    if pts.shape[-1] != 2 or pts.ndim not in (2, 3):
        raise ValueError(f"coords must be (K, 2) or (B, K, 2), got shape {pts.shape}")
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    crop_pts = heatmap_to_input(pts, float(stride))
    if m.shape == (2, 3):
        return geometry.transform_points(crop_pts, geometry.invert_affine(m))
    if m.ndim == 3 and m.shape[1:] == (2, 3) and pts.ndim == 3 and m.shape[0] == pts.shape[0]:
        return np.stack([geometry.transform_points(p, geometry.invert_affine(mi))
                         for p, mi in zip(crop_pts, m)])
    raise ValueError(f"crop_matrix must be (2, 3) or (B, 2, 3) matching coords {pts.shape}, "
                     f"got shape {m.shape}")


# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeatmapCodec:
    """Joints <-> heatmaps for a network of input ``input_size`` whose stacks predict
    heatmaps of side ``resolutions`` (first to last stack; an exported model has one)."""

    input_size: int
    resolutions: tuple[int, ...]
    sigma: float = 1.0                # Gaussian std in heatmap pixels, at every stack
    visible_amplitude: float = 1.0    # Eq. 1: +1 visible
    occluded_amplitude: float = -1.0  # Eq. 1: -1 occluded (0 or +1 also common)

    def __post_init__(self):
        res = tuple(int(r) for r in self.resolutions)
        if int(self.input_size) <= 0 or not res or min(res) <= 0:
            raise ValueError(f"HeatmapCodec needs a positive input size and at least one "
                             f"positive resolution, got {self.input_size}, {self.resolutions}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "resolutions", res)
        for name in ("sigma", "visible_amplitude", "occluded_amplitude"):
            object.__setattr__(self, name, float(getattr(self, name)))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, model_cfg, train_cfg=None) -> "HeatmapCodec":
        """The codec of a ``ModelConfig`` (input size, schedule) and, for encoding, a
        ``TrainConfig`` (sigma, amplitudes; their defaults without one)."""
        enc = {} if train_cfg is None else {
            "sigma": train_cfg.sigma, "visible_amplitude": train_cfg.visible_amplitude,
            "occluded_amplitude": train_cfg.occluded_amplitude}
        return cls(model_cfg.input_size, tuple(model_cfg.schedule), **enc)

    def for_stack(self, stack: int | None = None) -> "HeatmapCodec":
        """The codec of one stack's output (1-based, as the metadata's ``stack``; None: the
        last), e.g. of an exported early-exit model."""
        n = len(self.resolutions)
        k = n if stack is None else int(stack)
        if not 1 <= k <= n:
            raise ValueError(f"stack {stack} does not exist: the codec has {n} stack(s)")
        return replace(self, resolutions=(self.resolutions[k - 1],))

    # ------------------------------------------------------------------ strides
    def stride_of(self, resolution: int) -> float:
        """Input pixels per heatmap pixel at ``resolution``: the one stride computation."""
        return self.input_size / resolution

    @property
    def strides(self) -> tuple[float, ...]:
        return tuple(self.stride_of(r) for r in self.resolutions)

    @property
    def heatmap_size(self) -> int:
        """The last stack's resolution (the network's final output)."""
        return self.resolutions[-1]

    @property
    def stride(self) -> float:
        """The last stack's stride."""
        return self.stride_of(self.heatmap_size)

    # ------------------------------------------------------------------ encode (TF)
    def encode_resolution(self, joints, flags, resolution: int):
        """joints (K, 2) in input-crop pixels, flags (K,) 0/1/2 -> heatmaps (R, R, K) at
        ``resolution`` R and mask (K,). Unbatched on purpose: it runs inside
        ``Dataset.map`` per example."""
        import tensorflow as tf

        from .data.records import MISSING, VISIBLE

        sigma = self.sigma
        stride = self.stride_of(resolution)
        uv = input_to_heatmap(tf.cast(joints, tf.float32), stride)                 # (K, 2)
        grid = tf.range(resolution, dtype=tf.float32)
        dx = grid[None, :] - uv[:, 0:1]                                            # (K, R)
        dy = grid[None, :] - uv[:, 1:2]
        gx = tf.exp(-dx * dx / (2.0 * sigma * sigma))
        gy = tf.exp(-dy * dy / (2.0 * sigma * sigma))
        flags = tf.cast(flags, tf.int32)
        amplitude = tf.where(flags == VISIBLE, self.visible_amplitude,
                             self.occluded_amplitude)
        inside = tf.reduce_all((uv >= -0.5) & (uv < resolution - 0.5), axis=-1)
        mask = tf.cast((flags > MISSING) & inside, tf.float32)
        heat = gy[:, :, None] * gx[:, None, :] * (amplitude * mask)[:, None, None]  # (K, R, R)
        return tf.transpose(heat, (1, 2, 0)), mask

    def encode(self, joints, flags):
        """One heatmap tensor per stack (shared between stacks of equal resolution) and the
        mask (K,): the training targets of one example."""
        maps, mask = {}, None
        for res in sorted(set(self.resolutions)):
            maps[res], mask = self.encode_resolution(joints, flags, res)
        # A joint counts if it is inside the crop; all resolutions agree up to rounding, so
        # the finest map's mask is used for every stack.
        return tuple(maps[r] for r in self.resolutions), mask

    # ------------------------------------------------------------------ decode (numpy)
    def decode(self, heatmaps: np.ndarray,
               crop_matrix: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (h, w, K) or (B, h, w, K) of any stack -> keypoints (..., K, 2) and
        confidences (..., K) float32.

        Keypoints are in input-crop pixels (float32), or, given the image->crop
        ``crop_matrix`` (2, 3) or (B, 2, 3) the input was made with, in the original
        image (float64). The stride is that of the heatmaps' resolution (their rows).
        """
        hm = check_heatmaps(heatmaps)
        stride = self.stride_of(hm.shape[-3])
        coords, conf = decode_heatmaps(hm)
        if crop_matrix is None:
            return heatmap_to_input(coords, stride), conf
        return heatmap_coords_to_image(coords, stride, crop_matrix), conf

    # ------------------------------------------------------------------ metadata
    def to_metadata(self, stack: int | None = None) -> dict:
        """What an exported model's metadata says about its heatmaps (the output of
        ``stack``, 1-based; None: the last)."""
        one = self.for_stack(stack)
        return {"input_size": one.input_size, "heatmap_size": one.heatmap_size,
                "stride": one.stride, "decode": DECODE_DESCRIPTION}

    @classmethod
    def from_metadata(cls, meta: dict, **encoding) -> "HeatmapCodec":
        """The codec of an exported model's output, from its metadata. ``encoding``
        (sigma, visible_amplitude, occluded_amplitude) is not in the metadata; the
        defaults serve decoding, which does not use it. ValueError when the metadata's
        stride is not input_size / heatmap_size."""
        codec = cls(int(meta["input_size"]), (int(meta["heatmap_size"]),), **encoding)
        if "stride" in meta and not np.isclose(float(meta["stride"]), codec.stride):
            raise ValueError(f"stride {meta['stride']} is not input_size / heatmap_size = "
                             f"{codec.input_size} / {codec.heatmap_size}")
        return codec
