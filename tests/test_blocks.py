"""Tests for the building blocks (mssh_keras/blocks.py) and the hourglass built from them."""
from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from mssh_keras.blocks import BLOCKS, get_block
from mssh_keras.config import ModelConfig
from mssh_keras.hourglass import hourglass
from mssh_keras.model import build_network
from conftest import TINY

# Conv-kernel parameters of each block at width f (input width f), in units of f^2:
#   residual: 1x1 f->f/2, 3x3 f/2->f/2, 1x1 f/2->f       = 1/2 + 9/4 + 1/2       = 3.25
#   IR-A:     3 x 1x1 f->f/4, 3 x 3x3 f/4->f/4, 1x1 3f/4->f = 3/4 + 27/16 + 3/4 = 3.1875
#   IR-B:     IR-A + 1x1 f->f/4, 3x3 f/4->f/4, wider projection (f->f) = 4.25
KERNEL_UNITS = {"residual": 3.25, "ira": 3.1875, "irb": 4.25}


def _block_model(name: str, width_in: int, filters: int, size: int = 8) -> keras.Model:
    inp = keras.Input((size, size, width_in))
    return keras.Model(inp, get_block(name)(inp, filters, "b"))


def _conv_kernel_params(model: keras.Model) -> int:
    return sum(int(np.prod(l.kernel.shape)) for l in model.layers
               if isinstance(l, layers.Conv2D))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_keeps_shape_and_ends_in_a_linear_sum(name):
    same = _block_model(name, 16, 16)
    assert same.output.shape == (None, 8, 8, 16)
    assert isinstance(same.layers[-1], layers.Add)
    # No projection when the widths match; a 1x1 projection when they differ.
    assert not any(l.name == "b_skip" for l in same.layers)
    wider = _block_model(name, 8, 16)
    assert wider.output.shape == (None, 8, 8, 16)
    assert wider.get_layer("b_skip").kernel.shape == (1, 1, 8, 16)
    # The linear sum can go negative (no ReLU after the add), so branches add cleanly.
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    assert (np.asarray(same(x)) < 0).any()


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("f", [32, 64])
def test_block_parameter_count_matches_its_formula(name, f):
    assert _conv_kernel_params(_block_model(name, f, f)) == KERNEL_UNITS[name] * f * f


def test_ira_is_about_the_size_of_the_residual_block():
    """Swapping residual -> IR-A changes the receptive field, not the model size."""
    f = 128
    res = _block_model("residual", f, f).count_params()
    ira = _block_model("ira", f, f).count_params()
    irb = _block_model("irb", f, f).count_params()
    assert abs(ira - res) / res < 0.05, (ira, res)
    assert 1.2 < irb / res < 1.4, (irb, res)


def test_hourglass_returns_its_input_size_and_reaches_the_minimum():
    inp = keras.Input((16, 16, 16))
    out = hourglass(inp, 2, 16, get_block("residual"), "hg")
    model = keras.Model(inp, out)
    assert out.shape == (None, 16, 16, 16)
    sizes = {l.output.shape[1] for l in model.layers if isinstance(l, layers.MaxPooling2D)}
    assert sizes == {8, 4}  # depth 2 from 16 reaches 16 / 2**2
    with pytest.raises(ValueError, match="depth"):
        hourglass(inp, 0, 16, get_block("residual"), "bad")


def test_unknown_block_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown block 'dense'.*ira"):
        get_block("dense")


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_network_of_each_block_saves_and_loads_without_custom_objects(name, tmp_path):
    cfg = ModelConfig(**{**TINY, "block": name})
    net = build_network(cfg)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    before = np.asarray(net(x, training=False))
    path = tmp_path / f"{name}.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: built-in layers only
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), before)
    assert [w.shape for w in loaded.weights] == [w.shape for w in net.weights]
