"""Tests for the per-stack Gaussian targets (``HeatmapCodec.encode``, mssh_keras/codec.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mssh_keras.codec import HeatmapCodec, heatmap_to_input, input_to_heatmap

SIZE = 64


def _maps(joints, flags, resolution=16, **kw):
    heat, mask = HeatmapCodec(SIZE, (resolution,), **kw).encode_resolution(
        np.asarray(joints, np.float32), np.asarray(flags, np.int32), resolution)
    return np.asarray(heat), np.asarray(mask)


def _subpixel_peak(heat: np.ndarray) -> np.ndarray:
    """Exact centre of a sampled Gaussian: the log of a Gaussian is a parabola, so a
    3-point parabola through the log-values around the argmax recovers its vertex."""
    v, u = np.unravel_index(np.argmax(heat), heat.shape)
    def vertex(a, b, c):
        la, lb, lc = np.log([a, b, c])
        return 0.5 * (la - lc) / (la - 2 * lb + lc)
    return np.array([u + vertex(*heat[v, u - 1:u + 2]), v + vertex(*heat[v - 1:v + 2, u])])


def test_peak_is_exactly_at_a_joint_on_a_heatmap_pixel_centre():
    # Heatmap pixel (5, 9) at stride 4 is centred on input pixel 5*4 + 1.5 (geometry.py).
    stride = SIZE / 16
    joint = [heatmap_to_input(5, stride), heatmap_to_input(9, stride)]
    assert joint == [21.5, 37.5]
    heat, mask = _maps([joint], [2])
    assert heat.shape == (16, 16, 1) and mask.tolist() == [1.0]
    assert np.unravel_index(np.argmax(heat[..., 0]), (16, 16)) == (9, 5)  # (row y, col x)
    assert heat[9, 5, 0] == 1.0


def test_subpixel_peak_follows_the_heatmap_coordinate_convention():
    rng = np.random.default_rng(0)
    for resolution in (8, 16, 32):
        stride = SIZE / resolution
        joints = rng.uniform(2 * stride, SIZE - 2 * stride, (6, 2)).astype(np.float32)
        heat, _ = _maps(joints, [2] * 6, resolution)
        for k in range(6):
            expected = input_to_heatmap(joints[k].astype(np.float64), stride)
            np.testing.assert_allclose(_subpixel_peak(heat[..., k]), expected, atol=1e-3)
            # ... and back to the input crop: the peak is where the joint is.
            np.testing.assert_allclose(heatmap_to_input(_subpixel_peak(heat[..., k]), stride),
                                       joints[k], atol=4e-3 * stride)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_sigma_is_in_heatmap_pixels(sigma):
    joint = [heatmap_to_input(8, 4.0), heatmap_to_input(8, 4.0)]
    heat, _ = _maps([joint], [2], 16, sigma=sigma)
    h = heat[..., 0]
    for d in (1, 2, 3):
        expected = np.exp(-d * d / (2 * sigma * sigma))
        assert h[8, 8 + d] == pytest.approx(expected, rel=1e-5)
        assert h[8 - d, 8] == pytest.approx(expected, rel=1e-5)
        assert h[8 + d, 8 + d] == pytest.approx(expected ** 2, rel=1e-5)  # separable
    # The same sigma at every resolution: the same number of pixels under every peak.
    coarse, _ = _maps([[heatmap_to_input(4, 8.0)] * 2], [2], 8, sigma=sigma)
    assert coarse[4, 5, 0] == pytest.approx(h[8, 9], rel=1e-5)


def test_amplitude_visible_occluded_and_configurable():
    j = [[20.0, 20.0], [40.0, 30.0], [30.0, 44.0]]
    heat, mask = _maps(j, [2, 1, 2])
    assert mask.tolist() == [1.0, 1.0, 1.0]
    assert heat[..., 0].max() == pytest.approx(1.0, abs=0.2) and heat[..., 0].min() >= 0
    assert heat[..., 1].min() == pytest.approx(-1.0, abs=0.2) and heat[..., 1].max() <= 0
    np.testing.assert_allclose(heat[..., 1], -_maps(j, [2, 2, 2])[0][..., 1], atol=1e-7)
    # Newell's convention (+1 for occluded too) and "occluded = predict nothing".
    plus, _ = _maps(j, [2, 1, 2], occluded_amplitude=1.0)
    np.testing.assert_allclose(plus[..., 1], -heat[..., 1], atol=1e-7)
    zero, zmask = _maps(j, [2, 1, 2], occluded_amplitude=0.0)
    assert not zero[..., 1].any() and zmask[1] == 1.0  # still supervised: predict zero
    half, _ = _maps(j, [2, 1, 2], visible_amplitude=0.5)
    np.testing.assert_allclose(half[..., 0], 0.5 * heat[..., 0], atol=1e-7)


def test_unannotated_and_out_of_crop_joints_are_masked():
    joints = [[30.0, 30.0],      # annotated, visible
              [-26.0, 0.0],      # flag 0: LSPET-style garbage coordinates
              [30.0, 30.0],      # flag 0 at a valid place: still masked
              [-3.0, 30.0],      # outside the crop (left)
              [30.0, SIZE + 2.0],  # outside the crop (below)
              [SIZE - 1.0, 0.0]]  # last pixel: inside
    heat, mask = _maps(joints, [2, 0, 0, 2, 1, 2])
    assert mask.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    for k in (1, 2, 3, 4):
        assert not heat[..., k].any(), k
    assert heat[..., 0].max() > 0.5 and heat[..., 5].max() > 0.5


@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
def test_crop_border_is_the_same_at_every_resolution(resolution):
    """Pixel 0 covers [-0.5, 0.5): a joint is inside iff x, y in [-0.5, SIZE - 0.5)."""
    inside = [[-0.49, 10.0], [10.0, -0.49], [SIZE - 0.51, 10.0], [10.0, SIZE - 0.51]]
    outside = [[-0.51, 10.0], [10.0, -0.51], [SIZE - 0.49, 10.0], [10.0, SIZE - 0.49]]
    _, mask = _maps(inside + outside, [2] * 8, resolution)
    assert mask.tolist() == [1.0] * 4 + [0.0] * 4


def test_stack_targets_one_map_per_stack_at_its_resolution():
    schedule = (8, 16, 16, 32)
    joints = np.array([[21.5, 37.5], [10.0, 50.0], [70.0, 3.0]], np.float32)
    flags = np.array([2, 1, 2], np.int32)
    maps, mask = HeatmapCodec(SIZE, schedule, 1.0, 1.0, -1.0).encode(joints, flags)
    assert [tuple(m.shape) for m in maps] == [(r, r, 3) for r in schedule]
    np.testing.assert_array_equal(np.asarray(maps[1]), np.asarray(maps[2]))
    assert np.asarray(mask).tolist() == [1.0, 1.0, 0.0]
    for m, r in zip(maps, schedule):
        ref, ref_mask = _maps(joints, flags, r)
        np.testing.assert_array_equal(np.asarray(m), ref)
        np.testing.assert_array_equal(np.asarray(mask), ref_mask)
        # Each stack puts its peak at its own heatmap coordinate of the same point.
        stride = SIZE / r
        peak = np.unravel_index(np.argmax(np.asarray(m)[..., 0]), (r, r))
        np.testing.assert_allclose(peak[::-1], input_to_heatmap(joints[0], stride), atol=0.5)
