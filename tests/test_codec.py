"""The heatmap codec (mssh_keras/codec.py): encode -> decode round trips at every stack
resolution, the one stride computation, and the metadata round trip.

Tolerance: the quarter-pixel decoding of a symmetric peak is off by at most 0.25 heatmap
pixel per axis (tests/test_decode.py explains why); EPS absorbs float32 rounding.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mssh_keras import geometry
from mssh_keras.codec import HeatmapCodec, heatmap_to_input, input_to_heatmap
from mssh_keras.config import PRESETS, ModelConfig, TrainConfig
from mssh_keras.data.records import MISSING, OCCLUDED, VISIBLE
from mssh_keras.decode import decode_heatmaps, heatmap_coords_to_image

EPS = 1e-3
# Every resolution a preset's stacks use (e.g. 32, 64, 128 at input 256), plus coarse ones.
SCHEDULE = (8, 16, 32, 32, 64, 64, 128)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_encode_decode_round_trip_within_a_quarter_heatmap_pixel_at_every_stack(sigma):
    codec = HeatmapCodec(256, SCHEDULE, sigma=sigma)
    rng = np.random.default_rng(int(sigma * 10))
    # Joints anywhere in the crop except the outermost heatmap pixel of the coarsest stack
    # (no neighbour there on one side: the shift is not applied, error up to 0.5 px).
    margin = 1.5 * max(codec.strides)
    joints = rng.uniform(margin, 256 - margin, (200, 2)).astype(np.float32)
    flags = np.full(len(joints), VISIBLE, np.int32)
    maps, mask = codec.encode(joints, flags)
    assert np.asarray(mask).tolist() == [1.0] * len(joints)
    assert [tuple(m.shape) for m in maps] == [(r, r, len(joints)) for r in SCHEDULE]
    for heat, res, stride in zip(maps, SCHEDULE, codec.strides):
        assert stride == 256 / res
        keypoints, conf = codec.decode(np.asarray(heat))
        assert keypoints.shape == (len(joints), 2) and keypoints.dtype == np.float32
        # In heatmap pixels of this stack: within a quarter pixel on each axis ...
        err = np.abs(input_to_heatmap(keypoints.astype(np.float64), stride)
                     - input_to_heatmap(joints.astype(np.float64), stride))
        assert err.max() <= 0.25 + EPS, (res, err.max())
        # ... which is a quarter stride in input pixels, and better than plain argmax.
        assert np.abs(keypoints - joints).max() <= stride / 4 + EPS * stride
        assert err.mean() < 0.2, (res, err.mean())
        assert (conf > 0.6).all()  # a peak between pixels is still most of the amplitude


def test_round_trip_through_the_crop_matrix_into_the_image():
    codec = HeatmapCodec.from_config(ModelConfig(input_size=128, schedule=(16, 32)))
    rng = np.random.default_rng(5)
    m = geometry.crop_matrix((300.0, 220.0), 260.0, 128, rotation=25.0, flip=True)
    image_pts = geometry.transform_points(rng.uniform(12, 116, (14, 2)),
                                          geometry.invert_affine(m))
    crop_pts = geometry.transform_points(image_pts, m).astype(np.float32)
    maps, _ = codec.encode(crop_pts, np.full(14, VISIBLE))
    for heat, stride in zip(maps, codec.strides):
        hm = np.asarray(heat)
        got, conf = codec.decode(hm, m)
        # The same numbers as decoding and mapping back by hand (what runtimes did).
        coords, conf_ref = decode_heatmaps(hm)
        np.testing.assert_array_equal(got, heatmap_coords_to_image(coords, stride, m))
        np.testing.assert_array_equal(conf, conf_ref)
        px = 260.0 / 128  # image pixels per input pixel
        assert np.abs(got - image_pts).max() <= (stride / 4 * np.sqrt(2) + EPS) * px
        # Batched, with one matrix per example.
        batch, _ = codec.decode(np.stack([hm, hm]), np.stack([m, m]))
        np.testing.assert_array_equal(batch[1], got)


def test_occluded_and_missing_joints():
    codec = HeatmapCodec(64, (16,), occluded_amplitude=-1.0)
    joints = np.array([[20.0, 20.0], [40.0, 30.0], [30.0, 44.0]], np.float32)
    (heat,), mask = codec.encode(joints, [VISIBLE, OCCLUDED, MISSING])
    heat = np.asarray(heat)
    assert np.asarray(mask).tolist() == [1.0, 1.0, 0.0]
    assert heat[..., 0].max() > 0.5 and heat[..., 1].min() < -0.5 and not heat[..., 2].any()
    # An occluded joint's trough decodes from the negated map like a visible peak.
    kp, _ = codec.decode(-heat[..., 1:2])
    assert np.abs(kp[0] - joints[1]).max() <= codec.stride / 4 + EPS


def test_strides_and_stacks():
    codec = HeatmapCodec(256, (32, 64, 128), sigma=1.5)
    assert codec.strides == (8.0, 4.0, 2.0) and codec.stride == 2.0
    assert codec.heatmap_size == 128
    assert codec.for_stack(1) == HeatmapCodec(256, (32,), sigma=1.5)
    assert codec.for_stack() == codec.for_stack(3)
    # Non-integer strides are allowed (input 100, heatmap 32) and keep the convention.
    odd = HeatmapCodec(100, (32,))
    assert odd.stride == 100 / 32
    assert heatmap_to_input(0.0, odd.stride) == (odd.stride - 1) / 2
    with pytest.raises(ValueError, match="stack 4"):
        codec.for_stack(4)
    with pytest.raises(ValueError, match="resolution"):
        HeatmapCodec(256, ())
    with pytest.raises(ValueError, match="sigma"):
        HeatmapCodec(256, (64,), sigma=0.0)


def test_from_config_takes_the_schedule_and_the_training_encoding():
    for name, preset in PRESETS.items():
        codec = HeatmapCodec.from_config(preset.model, preset.train)
        assert codec.input_size == preset.model.input_size, name
        assert codec.resolutions == tuple(preset.model.schedule), name
        assert (codec.sigma, codec.visible_amplitude, codec.occluded_amplitude) == (
            preset.train.sigma, preset.train.visible_amplitude,
            preset.train.occluded_amplitude), name
    plain = HeatmapCodec.from_config(ModelConfig())
    defaults = TrainConfig()
    assert (plain.sigma, plain.visible_amplitude, plain.occluded_amplitude) == (
        defaults.sigma, defaults.visible_amplitude, defaults.occluded_amplitude)


def test_metadata_round_trip():
    codec = HeatmapCodec(256, (32, 32, 64, 128))
    for stack in (1, 2, 3, 4, None):
        meta = codec.to_metadata(stack)
        assert set(meta) == {"input_size", "heatmap_size", "stride", "decode"}
        assert HeatmapCodec.from_metadata(meta) == codec.for_stack(stack)
        assert HeatmapCodec.from_metadata(meta).to_metadata() == meta
    meta = codec.to_metadata()
    assert (meta["input_size"], meta["heatmap_size"], meta["stride"]) == (256, 128, 2.0)
    # The training encoding is not in the metadata: given, it is kept.
    enc = {"sigma": 1.5, "visible_amplitude": 1.0, "occluded_amplitude": 0.0}
    tuned = HeatmapCodec(128, (32,), **enc)
    assert HeatmapCodec.from_metadata(tuned.to_metadata(), **enc) == tuned
    # What an exported file's JSON holds (integers, a float stride) reads back the same.
    assert HeatmapCodec.from_metadata(
        {"input_size": 128, "heatmap_size": 32, "stride": 4}) == HeatmapCodec(128, (32,))
    with pytest.raises(ValueError, match="stride"):
        HeatmapCodec.from_metadata({"input_size": 128, "heatmap_size": 32, "stride": 8.0})


def test_codec_is_a_value():
    codec = HeatmapCodec(64, [16, 32], sigma=1, visible_amplitude=1, occluded_amplitude=-1)
    assert codec.resolutions == (16, 32) and isinstance(codec.sigma, float)
    assert codec == HeatmapCodec(64, (16, 32)) and hash(codec) == hash(HeatmapCodec(64, (16, 32)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        codec.sigma = 2.0
