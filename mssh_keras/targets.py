"""Ground-truth heatmaps per stack (paper Eq. 1), as TF ops for the tf.data pipeline.

Each stack is supervised at its own resolution with a 2-D Gaussian of std ``sigma``
*heatmap pixels*. The default sigma = 1 at every stack (Newell's value at 64x64) keeps
the same number of pixels under every peak, so coarse and fine stacks see losses of the
same magnitude and no coarse target is undersampled; in image pixels the blob is
proportionally wider on coarse stacks, which is the precision those stacks can offer.

The amplitude is +1 for visible joints and -1 for occluded ones (Eq. 1), configurable.
Joints without annotation, or whose centre falls outside the crop, are masked out.
"""
from __future__ import annotations

import tensorflow as tf

from .data.records import MISSING, VISIBLE
from .geometry import input_to_heatmap


def gaussian_heatmaps(joints, flags, input_size: int, resolution: int, sigma: float = 1.0,
                      visible_amplitude: float = 1.0, occluded_amplitude: float = -1.0):
    """joints (K, 2) in input-crop pixels, flags (K,) 0/1/2 -> heatmaps (R, R, K), mask (K,).

    Unbatched on purpose: it runs inside ``Dataset.map`` per example.
    """
    stride = input_size / resolution
    uv = input_to_heatmap(tf.cast(joints, tf.float32), stride)                 # (K, 2)
    grid = tf.range(resolution, dtype=tf.float32)
    dx = grid[None, :] - uv[:, 0:1]                                            # (K, R)
    dy = grid[None, :] - uv[:, 1:2]
    gx = tf.exp(-dx * dx / (2.0 * sigma * sigma))
    gy = tf.exp(-dy * dy / (2.0 * sigma * sigma))
    flags = tf.cast(flags, tf.int32)
    amplitude = tf.where(flags == VISIBLE, visible_amplitude, occluded_amplitude)
    inside = tf.reduce_all((uv >= -0.5) & (uv < resolution - 0.5), axis=-1)
    mask = tf.cast((flags > MISSING) & inside, tf.float32)
    heat = gy[:, :, None] * gx[:, None, :] * (amplitude * mask)[:, None, None]  # (K, R, R)
    return tf.transpose(heat, (1, 2, 0)), mask


def stack_targets(joints, flags, input_size: int, schedule, sigma: float,
                  visible_amplitude: float, occluded_amplitude: float):
    """One heatmap tensor per stack (shared between stacks of equal resolution) + mask."""
    maps, mask = {}, None
    for res in sorted(set(schedule)):
        maps[res], mask = gaussian_heatmaps(joints, flags, input_size, res, sigma,
                                            visible_amplitude, occluded_amplitude)
    # A joint counts if it is inside the crop; all resolutions agree up to rounding, so
    # the finest map's mask is used for every stack.
    return tuple(maps[r] for r in schedule), mask
