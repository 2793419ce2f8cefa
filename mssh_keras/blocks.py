"""Building blocks of the hourglass: Newell's residual, Inception-ResNet-A and -B.

Each block is a function ``block(x, filters, name) -> tensor`` made only of built-in
Keras layers, so any model built from them saves, loads and exports (SavedModel,
TFLite, ONNX) with no custom objects. All blocks keep the spatial size and end in a
*linear* sum (no activation after the add), so hourglass branches add cleanly.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import layers


def conv(x, filters: int, kernel: int, name: str, strides: int = 1, bias: bool = True):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=bias,
                         name=name)(x)


def bn_relu(x, name: str):
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def conv_bn_relu(x, filters: int, kernel: int, name: str):
    return bn_relu(conv(x, filters, kernel, name, bias=False), name)


def shortcut(x, filters: int, name: str):
    """Identity when the widths match, else a 1x1 projection (as Newell's skip layer)."""
    if x.shape[-1] == filters:
        return x
    return conv(x, filters, 1, f"{name}_skip")


def residual(x, filters: int, name: str):
    """Newell's pre-activation bottleneck: BN-ReLU-1x1(f/2), BN-ReLU-3x3(f/2), BN-ReLU-1x1(f)."""
    half = filters // 2
    h = bn_relu(x, f"{name}_a")
    h = conv(h, half, 1, f"{name}_a_conv")
    h = bn_relu(h, f"{name}_b")
    h = conv(h, half, 3, f"{name}_b_conv")
    h = bn_relu(h, f"{name}_c")
    h = conv(h, filters, 1, f"{name}_c_conv")
    return layers.Add(name=f"{name}_add")([shortcut(x, filters, name), h])


def _inception_branches(x, width: int, name: str) -> list:
    """1x1 | 1x1-3x3 | 1x1-3x3-3x3, each conv followed by BN+ReLU."""
    b0 = conv_bn_relu(x, width, 1, f"{name}_b0_1x1")
    b1 = conv_bn_relu(x, width, 1, f"{name}_b1_1x1")
    b1 = conv_bn_relu(b1, width, 3, f"{name}_b1_3x3")
    b2 = conv_bn_relu(x, width, 1, f"{name}_b2_1x1")
    b2 = conv_bn_relu(b2, width, 3, f"{name}_b2_3x3a")
    b2 = conv_bn_relu(b2, width, 3, f"{name}_b2_3x3b")
    return [b0, b1, b2]


def _project_and_add(x, branches: list, filters: int, name: str):
    h = layers.Concatenate(name=f"{name}_concat")(branches)
    h = conv(h, filters, 1, f"{name}_proj")  # linear projection, as in Inception-ResNet
    return layers.Add(name=f"{name}_add")([shortcut(x, filters, name), h])


def inception_resnet_a(x, filters: int, name: str):
    """Inception-ResNet-A (the paper's default block); branch width filters/4.

    With width f/4 its parameter count (~3.2 f^2) matches Newell's residual (~3.25 f^2),
    so swapping blocks changes the receptive field, not the model size.
    """
    return _project_and_add(x, _inception_branches(x, filters // 4, name), filters, name)


def inception_resnet_b(x, filters: int, name: str):
    """Inception-ResNet-A plus a down/up-sampling branch (pool 2, 1x1, 3x3, upsample 2)
    that sees twice the context at little cost. Needs even spatial sizes."""
    width = filters // 4
    branches = _inception_branches(x, width, name)
    b3 = layers.MaxPooling2D(2, name=f"{name}_b3_pool")(x)
    b3 = conv_bn_relu(b3, width, 1, f"{name}_b3_1x1")
    b3 = conv_bn_relu(b3, width, 3, f"{name}_b3_3x3")
    b3 = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_b3_up")(b3)
    return _project_and_add(x, branches + [b3], filters, name)


Block = Callable[..., keras.KerasTensor]
BLOCKS: dict[str, Block] = {
    "residual": residual,
    "ira": inception_resnet_a,
    "irb": inception_resnet_b,
}


def get_block(name: str) -> Block:
    try:
        return BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; choose one of {sorted(BLOCKS)}") from None
