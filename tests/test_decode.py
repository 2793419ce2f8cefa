"""Decoding: sub-pixel accuracy, flip test and the full image -> heatmap -> image chain.

Heatmaps are drawn by the codec's own encoder (``HeatmapCodec.encode_resolution``; a codec
of stride 1 draws at heatmap coordinates), so these are encode -> decode round trips.

Tolerance reasoning: a symmetric peak at offset d (|d| <= 0.5) from its nearest pixel decodes
to that pixel + 0.25 sign(d), so the per-axis error |d - 0.25 sign(d)| is at most 0.25
heatmap px (reached as |d| -> 0 or 0.5); EPS only absorbs float32 rounding.
"""
import numpy as np
import pytest

from mssh_keras import geometry
from mssh_keras.codec import HeatmapCodec, heatmap_to_input
from mssh_keras.data.records import VISIBLE
from mssh_keras.decode import decode_heatmaps, flip_back, heatmap_coords_to_image
from mssh_keras.skeleton import LSP14, MPII16

EPS = 1e-5
H = W = 64
SIGMA = 2.0


def _stack(points, size=W, sigma=SIGMA):
    """One Gaussian channel per point (x, y) in heatmap pixels: (size, size, len(points))."""
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    codec = HeatmapCodec(size, (size,), sigma=sigma)   # stride 1: input = heatmap pixels
    heat, mask = codec.encode_resolution(pts, np.full(len(pts), VISIBLE, np.int32), size)
    assert np.asarray(mask).all()
    return np.asarray(heat)


def _plain_argmax(hm):
    flat = hm.reshape(-1, hm.shape[-1]).argmax(0)
    ys, xs = np.unravel_index(flat, hm.shape[:2])
    return np.stack([xs, ys], -1).astype(np.float64)


def test_round_trip_subpixel_within_quarter_pixel_and_better_than_argmax():
    rng = np.random.default_rng(0)
    pts = rng.uniform(3, W - 4, size=(400, 2))
    hm = _stack(pts)                                      # one channel per position
    coords, conf = decode_heatmaps(hm)
    assert coords.shape == (400, 2) and conf.shape == (400,)
    err = np.abs(coords - pts)
    assert err.max() <= 0.25 + EPS, err.max()
    plain = np.abs(_plain_argmax(hm) - pts)
    # Uniform offsets: plain argmax averages 0.25 px per axis, the shift 0.125 px.
    assert err.mean() < 0.6 * plain.mean(), (err.mean(), plain.mean())
    assert abs(err.mean() - 0.125) < 0.02 and abs(plain.mean() - 0.25) < 0.03
    assert np.all(conf > 0.9)


def test_integer_peak_decodes_exactly_and_border_is_not_shifted():
    hm = _stack([(10, 20), (0, 5.3), (W - 1, H - 1)])
    coords, conf = decode_heatmaps(hm)
    np.testing.assert_allclose(coords[0], (10, 20))
    assert coords[1, 0] == 0.0 and coords[1, 1] == pytest.approx(5.25)   # x at border
    np.testing.assert_allclose(coords[2], (W - 1, H - 1))
    np.testing.assert_allclose(conf[[0, 2]], 1.0)


def test_batch_matches_single():
    rng = np.random.default_rng(1)
    batch = np.stack([_stack(rng.uniform(2, 60, size=(5, 2))) for _ in range(3)])
    coords, conf = decode_heatmaps(batch)
    assert coords.shape == (3, 5, 2) and conf.shape == (3, 5)
    for b in range(3):
        c1, f1 = decode_heatmaps(batch[b])
        np.testing.assert_array_equal(coords[b], c1)
        np.testing.assert_array_equal(conf[b], f1)


@pytest.mark.parametrize("skeleton", [LSP14, MPII16])
def test_flip_back_of_flipped_heatmaps_is_original(skeleton):
    rng = np.random.default_rng(2)
    joints = rng.uniform(2, 61, size=(skeleton.num_joints, 2))
    hm = _stack(joints)
    perm = skeleton.flip_permutation
    mirrored = joints.copy()
    mirrored[:, 0] = W - 1 - mirrored[:, 0]
    # What a perfect network sees on the flipped input: mirrored joints, left/right swapped.
    hm_flipped = _stack(mirrored[perm])
    back = flip_back(hm_flipped, perm)
    np.testing.assert_allclose(back, hm, atol=1e-6)
    np.testing.assert_allclose(flip_back(back, perm), hm_flipped, atol=1e-6)
    # Flip test average of two perfect predictions decodes like either one.
    np.testing.assert_allclose(decode_heatmaps((hm + back) / 2)[0], decode_heatmaps(hm)[0])
    # Batched input too.
    np.testing.assert_allclose(flip_back(hm_flipped[None], perm)[0], hm, atol=1e-6)


def test_full_chain_image_to_heatmap_and_back():
    rng = np.random.default_rng(3)
    size, stride = 256, 4
    hm_size = size // stride
    codec = HeatmapCodec(size, (hm_size,), sigma=SIGMA)
    assert codec.stride == stride
    for trial in range(40):
        center = rng.uniform(100, 500, size=2)
        scale = rng.uniform(80, 600)
        rot = rng.uniform(-40, 40)
        flip = bool(trial % 2)
        m = geometry.crop_matrix(center, scale, size, rot, flip)
        # A point inside the crop, away from the heatmap border.
        hm_pt = rng.uniform(3, hm_size - 4, size=2)
        crop_pt = heatmap_to_input(hm_pt, stride)
        img_pt = geometry.transform_points(crop_pt, geometry.invert_affine(m))
        # Forward: image point -> crop -> heatmap target (the codec's encoder).
        hm, _ = codec.encode_resolution(geometry.transform_points(img_pt, m)[None],
                                        [VISIBLE], hm_size)
        back, _ = codec.decode(np.asarray(hm), m)
        coords, _ = decode_heatmaps(np.asarray(hm))
        np.testing.assert_array_equal(back, heatmap_coords_to_image(coords, stride, m))
        # Per crop axis the error is <= stride/4 input px; in the image that is scaled by
        # scale/size and may be rotated, so bound the Euclidean error by sqrt(2) of it.
        crop_err = np.abs(geometry.transform_points(back, m) - geometry.transform_points(img_pt, m))
        assert crop_err.max() <= stride / 4 + 1e-3, (trial, crop_err)
        img_err = np.linalg.norm(back[0] - img_pt)
        assert img_err <= np.sqrt(2) * stride / 4 * scale / size + 1e-3, (trial, img_err)


def test_batched_crop_matrices():
    ms = np.stack([geometry.crop_matrix((100, 100), 200, 256, 0, False),
                   geometry.crop_matrix((300, 50), 100, 256, 30, True)])
    coords = np.array([[[10.0, 20.0]], [[31.5, 7.25]]])
    out = heatmap_coords_to_image(coords, 4, ms)
    for b in range(2):
        np.testing.assert_allclose(out[b], heatmap_coords_to_image(coords[b], 4, ms[b]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="heatmaps must be"):
        decode_heatmaps(np.zeros((64, 64)))
    with pytest.raises(ValueError, match="NaN"):
        decode_heatmaps(np.full((8, 8, 1), np.nan))
    with pytest.raises(ValueError, match="permutation"):
        flip_back(np.zeros((8, 8, 3)), [0, 1])
    with pytest.raises(ValueError, match="crop_matrix"):
        heatmap_coords_to_image(np.zeros((2, 2)), 4, np.eye(3))
