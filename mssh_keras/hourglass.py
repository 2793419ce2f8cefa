"""The recursive hourglass (Newell et al., ECCV 2016), built from any block."""
from __future__ import annotations

from keras import layers

from .blocks import Block


def hourglass(x, depth: int, filters: int, block: Block, name: str):
    """One hourglass of ``depth`` poolings: skip branch + (pool, block, recurse, block, up).

    The two branches add at every level, so a depth-d hourglass at resolution r reaches
    down to r / 2**d and returns a map of the input's size.
    """
    if depth < 1:
        raise ValueError(f"hourglass depth must be >= 1, got {depth}")
    up = block(x, filters, f"{name}_up")
    low = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    low = block(low, filters, f"{name}_low1")
    if depth > 1:
        low = hourglass(low, depth - 1, filters, block, f"{name}_d{depth - 1}")
    else:
        low = block(low, filters, f"{name}_low2")
    low = block(low, filters, f"{name}_low3")
    low = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample")(low)
    return layers.Add(name=f"{name}_merge")([up, low])
