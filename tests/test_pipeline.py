"""Tests for the tf.data input pipeline (mssh_keras/data/pipeline.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mssh_keras import geometry
from mssh_keras.codec import HeatmapCodec, input_to_heatmap
from mssh_keras.data.pipeline import (Augment, crop_example, crop_matrix_tf, eval_pipeline,
                                      training_pipeline, warp)
from mssh_keras.data.synthetic import render_example
from mssh_keras.skeleton import LSP14

NO_AUG_FLIP = Augment(scale=(1.0, 1.0), rotation_prob=0.0, flip_prob=1.0, color=0.0)


def _centroid(img: np.ndarray) -> np.ndarray:
    w = img.astype(np.float64)
    ys, xs = np.mgrid[:w.shape[0], :w.shape[1]]
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


def _dot_image(h: int, w: int, at, sigma: float = 1.5) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w]
    blob = np.exp(-((xs - at[0]) ** 2 + (ys - at[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat((255 * blob)[..., None], 3, axis=-1).astype(np.float32)


def test_crop_matrix_tf_equals_geometry_crop_matrix():
    rng = np.random.default_rng(0)
    for _ in range(40):
        center = rng.uniform(-50, 600, 2)
        scale = rng.uniform(20, 800)
        size = int(rng.choice([32, 64, 128, 256]))
        rot = rng.uniform(-45, 45)
        flip = bool(rng.integers(2))
        ref = geometry.crop_matrix(center, scale, size, rot, flip)
        got = np.asarray(crop_matrix_tf(tf.constant(center, tf.float32), scale, size, rot, flip))
        # float32: compare the translation relative to its magnitude
        np.testing.assert_allclose(got[:, :2], ref[:, :2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[:, 2], ref[:, 2], rtol=1e-5, atol=2e-3)


@pytest.mark.parametrize("rot,flip,scale", [(0.0, False, 100.0), (25.0, False, 60.0),
                                            (-40.0, True, 150.0), (90.0, True, 80.0)])
def test_warp_puts_the_joint_pixel_where_the_transformed_joint_says(rot, flip, scale):
    joint = np.array([71.0, 43.0])
    image = _dot_image(120, 140, joint)
    size = 64
    m = geometry.crop_matrix([65.0, 50.0], scale, size, rot, flip)
    crop = np.asarray(warp(tf.constant(image), tf.constant(m, tf.float32), size))
    assert crop.shape == (size, size, 3)
    expected = geometry.transform_points(joint, m)
    np.testing.assert_allclose(_centroid(crop[..., 0]), expected, atol=0.05)
    peak = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])[::-1]
    assert np.abs(peak - expected).max() <= 0.5 + 1e-6


def test_crop_example_joints_match_geometry():
    ex = render_example(3, LSP14, 96)
    image, joints, flags, m = crop_example(ex, 64, LSP14.flip_permutation, None)
    ref = geometry.crop_matrix(ex["center"], float(ex["scale"]), 64)
    np.testing.assert_allclose(np.asarray(m), ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(joints), geometry.transform_points(ex["joints"], ref),
                               atol=1e-3)
    np.testing.assert_array_equal(np.asarray(flags), ex["flags"])
    assert image.shape == (64, 64, 3) and image.dtype == tf.float32


def test_flip_mirrors_coordinates_and_swaps_left_and_right():
    ex = render_example(11, LSP14, 96)
    perm = LSP14.flip_permutation
    img0, j0, f0, _ = (np.asarray(t) for t in crop_example(ex, 64, perm, None))
    img1, j1, f1, m1 = (np.asarray(t) for t in crop_example(ex, 64, perm, NO_AUG_FLIP))
    np.testing.assert_allclose(m1, geometry.crop_matrix(ex["center"], float(ex["scale"]), 64,
                                                        flip=True), atol=1e-4)
    np.testing.assert_allclose(img1, img0[:, ::-1], atol=1e-2)  # float32 sampling
    # Output joint i is the mirrored input joint perm[i]: the person's left wrist in the
    # mirror image is where the right wrist was, x -> 63 - x.
    np.testing.assert_allclose(j1[:, 0], 63.0 - j0[perm, 0], atol=1e-3)
    np.testing.assert_allclose(j1[:, 1], j0[perm, 1], atol=1e-3)
    np.testing.assert_array_equal(f1, f0[perm])
    lw, rw = LSP14.index("l_wrist"), LSP14.index("r_wrist")
    np.testing.assert_allclose(j1[lw], [63.0 - j0[rw, 0], j0[rw, 1]], atol=1e-3)
    assert perm[LSP14.index("neck")] == LSP14.index("neck")


def _examples(n: int, size: int = 96) -> tf.data.Dataset:
    exs = [render_example(i, LSP14, size) for i in range(n)]
    return tf.data.Dataset.from_tensor_slices(
        {k: np.stack([e[k] for e in exs]) for k in exs[0]})


def test_training_pipeline_output_structure():
    schedule = (8, 16, 16)
    ds = training_pipeline(_examples(6), LSP14, HeatmapCodec(32, schedule), batch_size=4,
                           seed=0)
    image, (maps, mask) = next(iter(ds))
    assert image.shape == (4, 32, 32, 3) and image.dtype == tf.float32
    assert float(tf.reduce_min(image)) >= 0.0 and float(tf.reduce_max(image)) <= 255.0
    assert isinstance(maps, tuple) and [tuple(m.shape) for m in maps] == [
        (4, r, r, 14) for r in schedule]
    assert mask.shape == (4, 14) and set(np.unique(mask)) <= {0.0, 1.0}
    assert sum(1 for _ in ds) == 1  # drop_remainder: 6 examples -> one batch of 4


def test_training_targets_peak_at_the_cropped_joints_without_augmentation():
    ds = training_pipeline(_examples(4), LSP14, HeatmapCodec(64, (16,)), 4, augment=None,
                           shuffle=0)
    ev = eval_pipeline(_examples(4), LSP14, 64, 4)
    (_, ((maps,), mask)), (_, meta) = next(iter(ds)), next(iter(ev))
    maps, mask = np.asarray(maps), np.asarray(mask)
    crop = meta["crop_joints"].numpy()
    hits = 0
    for b in range(4):
        for k in range(14):
            if mask[b, k] and meta["flags"].numpy()[b, k] == 2:
                v, u = np.unravel_index(np.argmax(maps[b, ..., k]), (16, 16))
                uv = input_to_heatmap(crop[b, k], 4.0)
                assert np.abs(np.array([u, v]) - uv).max() <= 0.5 + 1e-5
                hits += 1
    assert hits > 20


def test_eval_pipeline_is_deterministic_and_keeps_what_evaluation_needs():
    ds = eval_pipeline(_examples(5), LSP14, 64, batch_size=2)
    a = list(ds.as_numpy_iterator())
    b = list(ds.as_numpy_iterator())
    assert [x[0].shape[0] for x in a] == [2, 2, 1]
    for (ia, ma), (ib, mb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        for key in ("crop_joints", "flags", "matrix", "joints", "image_id"):
            np.testing.assert_array_equal(ma[key], mb[key])
    first = render_example(0, LSP14, 96)
    m = geometry.crop_matrix(first["center"], float(first["scale"]), 64)
    np.testing.assert_allclose(a[0][1]["matrix"][0], m, atol=1e-4)
    np.testing.assert_allclose(a[0][1]["joints"][0], first["joints"])
    assert a[0][1]["image_id"][0].decode() == first["image_id"]


def test_augmentation_varies_the_crop():
    # The same 4 examples twice in a row from one iterator: each pass draws new
    # augmentation (two fresh iterators may repeat draws once a global seed is set).
    ds = training_pipeline(_examples(4).repeat(), LSP14, HeatmapCodec(32, (8,)), 4, shuffle=0,
                           seed=0)
    batches = iter(ds)
    one, two = next(batches)[0].numpy(), next(batches)[0].numpy()
    assert not np.allclose(one, two)


@pytest.mark.parametrize("lean", [90.0, 180.0, -60.0])
def test_upright_augmentation_turns_the_torso_up(lean):
    """upright_prob=1 turns every crop so the ground-truth hips -> shoulders points up
    (the crops predict(..., upright=True) shows the model); without jitter exactly."""
    from conftest import standing_pose
    from mssh_keras.person_search import rotation_matrix, torso_joints, upright_rotation

    c = np.array([200.0, 150.0])
    joints = (standing_pose(*c) - c) @ rotation_matrix(lean) + c   # turned by -lean
    ex = {"image": np.zeros((300, 400, 3), np.uint8), "joints": joints.astype(np.float32),
          "flags": np.full(14, 2, np.int32), "center": c.astype(np.float32),
          "scale": np.float32(250.0)}
    aug = Augment(scale=(1.0, 1.0), rotation_prob=0.0, flip_prob=0.0, color=0.0,
                  upright_prob=1.0)
    _, crop, _, _ = crop_example(ex, 64, LSP14.flip_permutation, aug, torso_joints(LSP14))
    crop = crop.numpy()
    (lh, rh), (ls, rs) = torso_joints(LSP14)
    v = (crop[ls] + crop[rs]) / 2 - (crop[lh] + crop[rh]) / 2
    assert v[1] < 0 and abs(v[0]) < 1e-3 * np.hypot(*v)        # straight up in the crop
    # The input really leans by ``lean`` (the test would pass trivially on an upright one).
    hips, shoulders = (joints[lh] + joints[rh]) / 2, (joints[ls] + joints[rs]) / 2
    turn = upright_rotation(hips, shoulders)
    assert abs((abs(turn) - abs(lean) + 180) % 360 - 180) < 1e-3, (turn, lean)
    with pytest.raises(ValueError, match="upright_prob"):
        Augment(upright_prob=1.5)


def test_upright_augmentation_off_keeps_the_random_stream_and_the_flag_reaches_it():
    import train
    from conftest import standing_pose
    from mssh_keras.person_search import torso_joints
    from mssh_keras.training import RunOptions, augmentation

    ex = {"image": np.zeros((300, 400, 3), np.uint8),
          "joints": standing_pose().astype(np.float32), "flags": np.full(14, 2, np.int32),
          "center": np.float32([200, 150]), "scale": np.float32(250.0)}
    outs = []   # no torso given (no upright draw possible) vs the torso given, share 0
    for a, torso in ((Augment(), None), (Augment(upright_prob=0.0), torso_joints(LSP14))):
        tf.random.set_seed(1)
        outs.append([crop_example(ex, 64, LSP14.flip_permutation, a, torso)[1].numpy()
                     for _ in range(3)])
    np.testing.assert_array_equal(np.array(outs[0]), np.array(outs[1]))
    assert augmentation(RunOptions(upright_prob=0.5)).upright_prob == 0.5
    assert train.parse_args(["--upright-prob", "0.5"]).upright_prob == 0.5
