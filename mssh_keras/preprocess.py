"""The multi-scale pre-processing network: one feature map per stack resolution.

A stem (7x7 stride-2 conv + a block) feeds a trunk that halves the resolution with
max-pooling + a block until every requested scale is reached; each scale gets its own
output block. With a single scale of input/4 this is exactly Newell's pre-processing
(conv, residual, pool, residual, residual). ``lateral=True`` adds the FPN-like top-down
links the paper compares against: each map also receives the upsampled coarser one.
"""
from __future__ import annotations

from keras import layers

from .blocks import Block, bn_relu, conv


def preprocessing_network(x, scales: tuple[int, ...], filters: int, block: Block,
                          stem_filters: int = 64, trunk_filters: int = 128,
                          lateral: bool = False, name: str = "pre") -> dict[int, object]:
    x = conv(x, stem_filters, 7, f"{name}_stem", strides=2)
    x = bn_relu(x, f"{name}_stem")
    x = block(x, trunk_filters, f"{name}_trunk{x.shape[1]}")
    feats: dict[int, object] = {}
    for r in sorted(scales, reverse=True):
        while x.shape[1] > r:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{x.shape[1] // 2}")(x)
            x = block(x, trunk_filters, f"{name}_trunk{x.shape[1]}")
        if x.shape[1] != r:
            raise ValueError(f"scale {r} is not reachable by halving from {x.shape[1]}")
        feats[r] = block(x, filters, f"{name}_out{r}")
    if lateral:
        ordered = sorted(scales)
        for coarse, fine in zip(ordered, ordered[1:]):
            up = layers.UpSampling2D(fine // coarse, interpolation="bilinear",
                                     name=f"{name}_lateral{coarse}to{fine}")(feats[coarse])
            feats[fine] = layers.Add(name=f"{name}_lateral{fine}_add")([feats[fine], up])
    return feats
