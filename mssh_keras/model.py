"""MSSH network: pre-processing network -> dispatch -> hourglass stacks -> heads.

Stack j works at resolution ``schedule[j]``. Its input is Newell's running input
(previous input + 1x1 remaps of the previous stack's features and heatmaps), resampled
to its resolution; where the resolution changes, the pre-processing network's map of
that scale is *dispatched* and fused in (pixel-wise add, or concat + 1x1). Stacks that
repeat a resolution chain exactly as in Newell, so ``schedule=(64,)*8`` with residual
blocks *is* Newell's 8-stack hourglass.
"""
from __future__ import annotations

import keras
from keras import layers

from .blocks import bn_relu, conv, get_block
from .config import ModelConfig
from .hourglass import hourglass
from .preprocess import preprocessing_network

INPUT_NAME = "image"


def _resample(x, size: int, name: str):
    """Bring a map to ``size`` x ``size``: bilinear up, average-pool down."""
    cur = x.shape[1]
    if cur == size:
        return x
    if cur < size:
        return layers.UpSampling2D(size // cur, interpolation="bilinear", name=name)(x)
    return layers.AveragePooling2D(cur // size, name=name)(x)


def build_network(cfg: ModelConfig, name: str = "mssh") -> keras.Model:
    """Functional network: RGB image in [0, 255] -> one heatmap tensor per stack.

    Normalisation lives inside the model so every runtime feeds raw RGB pixels.
    """
    block = get_block(cfg.block)
    inputs = keras.Input((cfg.input_size, cfg.input_size, 3), name=INPUT_NAME)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inputs)
    feats = preprocessing_network(x, cfg.scales, cfg.filters, block, cfg.stem_filters,
                                  cfg.trunk_filters, cfg.lateral)
    outputs, prev_res, running = [], None, None
    for j, res in enumerate(cfg.schedule, start=1):
        if running is None:
            x = feats[res]
        else:
            x = _resample(running, res, f"s{j}_resample")
            if res != prev_res:
                if cfg.fusion == "add":
                    x = layers.Add(name=f"s{j}_dispatch_add")([feats[res], x])
                else:
                    x = layers.Concatenate(name=f"s{j}_dispatch_concat")([feats[res], x])
                    x = conv(x, cfg.filters, 1, f"s{j}_dispatch_1x1")
        hg = hourglass(x, cfg.depth(res), cfg.filters, block, f"s{j}_hg")
        feat = block(hg, cfg.filters, f"s{j}_head")
        feat = bn_relu(conv(feat, cfg.filters, 1, f"s{j}_head_1x1"), f"s{j}_head_1x1")
        # Near-zero init (as HRNet): the untrained net predicts ~0 instead of noise, which
        # is most of the loss on fine stacks and otherwise costs the first epochs.
        heatmaps = layers.Conv2D(cfg.num_joints, 1, name=f"stack{j}", dtype="float32",
                                 kernel_initializer=keras.initializers.RandomNormal(
                                     stddev=0.001))(feat)
        outputs.append(heatmaps)
        if j < len(cfg.schedule):
            remap_f = conv(feat, cfg.filters, 1, f"s{j}_remap_features")
            remap_p = conv(heatmaps, cfg.filters, 1, f"s{j}_remap_heatmaps")
            running = layers.Add(name=f"s{j}_next")([x, remap_f, remap_p])
        prev_res = res
    return keras.Model(inputs, outputs, name=name)


def float32_network(network: keras.Model, cfg: ModelConfig,
                    twin: keras.Model | None = None) -> keras.Model:
    """``network``'s weights in a float32 network (itself when it already is one).

    A network built under the mixed_bfloat16 policy keeps float32 variables but computes
    in bfloat16; saved as is, its files would load as a bfloat16 model. What a run saves
    and exports is this float32 twin (pass the previous ``twin`` to reuse it).
    """
    if network.dtype_policy.name == "float32":
        return network
    if twin is None:
        old = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            twin = build_network(cfg, name=network.name)
        finally:
            keras.config.set_dtype_policy(old)
    twin.set_weights(network.get_weights())
    return twin


def inference_model(network: keras.Model, stack: int | None = None) -> keras.Model:
    """Image -> heatmaps of one stack (default: the last), as a plain functional model.

    ``stack=k`` is the early exit: only stacks 1..k are computed, a faster, coarser answer.
    """
    n = len(network.outputs)
    k = n if stack is None else stack
    if not 1 <= k <= n:
        raise ValueError(f"stack must be in 1..{n}, got {stack}")
    out = network.get_layer(f"stack{k}").output
    return keras.Model(network.input, layers.Identity(name="heatmaps")(out),
                       name=f"{network.name}_stack{k}")


def count_flops(model: keras.Model) -> int:
    """Multiply-accumulates x2 of the convolutions at batch 1 (the usual 'FLOPs')."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += 2 * kh * kw * cin * cout * h * w
    return total
