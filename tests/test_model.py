"""Tests for the MSSH network (mssh_keras/model.py), its presets and its FLOP counter."""
from __future__ import annotations

import gc

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from mssh_keras.config import PRESETS, ModelConfig, get_preset
from mssh_keras.losses import stack_losses
from mssh_keras.model import build_network, count_flops, inference_model
from conftest import TINY

# Pinned sizes of the real presets (trainable parameters, conv FLOPs at batch 1).
# hg-8 with MPII's 16 joints is Newell's 8-stack hourglass: 25.4 M parameters.
PINNED = {
    "mssh-8": (14, 24_753_008, 83_268_468_736),
    "hg-8": (16, 25_434_112, 54_880_370_688),
    "mssh-lite": (14, 432_344, 634_169_344),
    "hg-lite": (14, 685_688, 607_518_720),
    "hg-wide": (14, 1_487_320, 1_137_672_192),
}

TINY_NET = ModelConfig(**{**TINY, "schedule": (8, 16, 16)})  # three stacks, two sizes


def _trainable(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.fixture(scope="module")
def real_presets():
    """Build every pinned preset once at full size; keep only what the tests read.

    In a StatelessScope the variables are created uninitialised: only their shapes are
    read here, and initialising 50 M parameters is about half of the build time.
    """
    info = {}
    for name, (joints, _, _) in PINNED.items():
        with keras.StatelessScope():
            net = build_network(get_preset(name).model.replace(num_joints=joints))
        info[name] = {
            "trainable": _trainable(net), "flops": count_flops(net),
            "outputs": [tuple(o.shape) for o in net.outputs],
            "layers": {l.name for l in net.layers},
            # Sizes the first hourglass pools down to.
            "s1_pools": sorted(l.output.shape[1] for l in net.layers
                               if isinstance(l, layers.MaxPooling2D)
                               and l.name.startswith("s1_hg")),
        }
        del net
        keras.backend.clear_session()
        gc.collect()
    return info


def test_real_preset_sizes_are_pinned(real_presets):
    for name, (_, params, flops) in PINNED.items():
        assert real_presets[name]["trainable"] == params, name
        assert real_presets[name]["flops"] == flops, name
    assert round(real_presets["hg-8"]["trainable"] / 1e6, 2) == 25.43  # Newell: 25.4 M


def test_lite_presets_cost_about_the_same(real_presets):
    mssh, hg = real_presets["mssh-lite"]["flops"], real_presets["hg-lite"]["flops"]
    assert abs(mssh - hg) / hg < 0.10, (mssh, hg)


def test_real_preset_outputs_follow_the_schedule(real_presets):
    for name, (joints, _, _) in PINNED.items():
        schedule = get_preset(name).model.schedule
        assert real_presets[name]["outputs"] == [(None, r, r, joints) for r in schedule], name


def test_hg8_is_newells_single_scale_stack(real_presets):
    names = real_presets["hg-8"]["layers"]
    assert not any("dispatch" in n or "resample" in n for n in names)
    assert real_presets["hg-8"]["s1_pools"] == [4, 8, 16, 32]  # 64x64 down to 4x4
    assert real_presets["mssh-8"]["s1_pools"] == [4, 8, 16]    # 32x32 down to 4x4
    # mssh-8 dispatches the pre-processing map where the resolution changes (32->64->128).
    mssh = real_presets["mssh-8"]["layers"]
    assert {n for n in mssh if "dispatch" in n} == {"s4_dispatch_add", "s7_dispatch_add"}


def _shrunk(cfg: ModelConfig, size: int = 32) -> ModelConfig:
    """The preset's structure (schedule pattern, block, fusion, lateral) at toy width."""
    f = size / cfg.input_size
    schedule = tuple(int(r * f) for r in cfg.schedule)
    return cfg.replace(input_size=size, schedule=schedule, filters=8, stem_filters=8,
                       trunk_filters=8, min_resolution=min(schedule) // 2)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_forward_and_backward(name):
    """timm-style: every preset (new ones included) at toy size, eager (no tracing)."""
    preset = PRESETS[name]
    cfg = _shrunk(preset.model)
    net = build_network(cfg)
    assert [tuple(o.shape) for o in net.outputs] == [
        (None, r, r, cfg.num_joints) for r in cfg.schedule]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    targets = [rng.uniform(0, 1, (2, r, r, cfg.num_joints)).astype(np.float32)
               for r in cfg.schedule]
    mask = np.ones((2, cfg.num_joints), np.float32)
    with tf.GradientTape() as tape:
        preds = net(x, training=True)
        total = stack_losses(preds, targets, mask, 2.0, preset.train.adaptive)[0]
    grads = tape.gradient(total, net.trainable_variables)
    assert np.isfinite(float(total)) and float(total) > 0
    missing = [v.path for v, g in zip(net.trainable_variables, grads) if g is None]
    assert not missing, f"{name}: no gradient reaches {missing[:5]}"
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_early_exit_computes_only_the_first_stacks():
    net = build_network(TINY_NET)
    x = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    full = [np.asarray(o) for o in net(x, training=False)]
    for k, r in enumerate(TINY_NET.schedule, start=1):
        early = inference_model(net, stack=k)
        assert tuple(early.output.shape) == (None, r, r, TINY_NET.num_joints)
        names = {l.name for l in early.layers}
        assert f"stack{k}" in names and f"stack{k + 1}" not in names
        np.testing.assert_allclose(np.asarray(early(x, training=False)), full[k - 1],
                                   rtol=1e-5, atol=1e-5)
    assert tuple(inference_model(net).output.shape) == (None, 16, 16, TINY_NET.num_joints)
    for bad in (0, 4):
        with pytest.raises(ValueError, match="stack must be in 1..3"):
            inference_model(net, stack=bad)


@pytest.mark.parametrize("variant", [{"fusion": "concat"}, {"lateral": True},
                                     {"fusion": "concat", "lateral": True, "block": "irb"}])
def test_fusion_and_lateral_variants_build(variant):
    cfg = TINY_NET.replace(**variant)
    net = build_network(cfg)
    names = {l.name for l in net.layers}
    if cfg.fusion == "concat":
        assert {"s2_dispatch_concat", "s2_dispatch_1x1"} <= names
        assert "s3_dispatch_concat" not in names  # same resolution as stack 2: no dispatch
    if cfg.lateral:
        assert "pre_lateral8to16" in names
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert [o.shape for o in net(x)] == [(1, r, r, 14) for r in cfg.schedule]


@pytest.mark.parametrize("kwargs,message", [
    ({"schedule": (24,)}, "power of two"),
    ({"schedule": (4,), "min_resolution": 4}, ">= 8"),
    ({"schedule": (256,)}, "exceeds the stem"),
    ({"fusion": "mul"}, "fusion must be"),
    ({"schedule": ()}, "at least one"),
    ({"num_joints": 0}, "num_joints"),
])
def test_invalid_configs_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_invalid_build_options_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown block 'dense'"):
        build_network(TINY_NET.replace(block="dense"))
    with pytest.raises(ValueError, match="not reachable"):
        build_network(ModelConfig(input_size=96, schedule=(16,), filters=8))
    with pytest.raises(ValueError, match="unknown preset 'hg-9'.*mssh-8"):
        get_preset("hg-9")


def test_count_flops_by_hand():
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(inp)            # 2*9*3*8 * 16*16
    x = layers.Conv2D(4, 1, strides=2, padding="same")(x)   # 2*1*8*4 * 8*8
    x = layers.MaxPooling2D()(x)                            # not counted
    assert count_flops(keras.Model(inp, x)) == 2 * 9 * 3 * 8 * 256 + 2 * 8 * 4 * 64
