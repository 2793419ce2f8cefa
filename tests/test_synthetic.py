"""Tests for the procedurally rendered people (mssh_keras/data/synthetic.py)."""
from __future__ import annotations

import re
import time

import cv2
import numpy as np
import pytest

from mssh_keras.data.synthetic import (OCCLUDER_ID, PART_ID, SyntheticPose, render_debug,
                                       render_example)
from mssh_keras.geometry import center_scale_from_joints
from mssh_keras.skeleton import LSP14, MPII16

N_SEEDS = 240
SIZE = 128


@pytest.fixture(scope="module")
def renders():
    """(example, info) for a fixed batch of seeds, LSP14 joints."""
    return [render_debug(s, LSP14, SIZE) for s in range(N_SEEDS)]


def _pix(joints: np.ndarray) -> np.ndarray:
    return np.rint(joints).astype(np.int64)


def test_same_seed_same_bytes_different_seed_differs():
    a, b, c = render_example(7, LSP14), render_example(7, LSP14), render_example(8, LSP14)
    assert a["image"].tobytes() == b["image"].tobytes()
    assert a["joints"].tobytes() == b["joints"].tobytes()
    assert np.array_equal(a["flags"], b["flags"])
    assert a["image_id"] == b["image_id"] == "synthetic_00000007"
    assert a["image"].tobytes() != c["image"].tobytes()
    assert not np.allclose(a["joints"], c["joints"])


@pytest.mark.parametrize("skeleton", [LSP14, MPII16, "lsp14", "mpii16"])
@pytest.mark.parametrize("size", [128, 96])
def test_example_contract(skeleton, size):
    k = 14 if skeleton in (LSP14, "lsp14") else 16
    for seed in range(5):
        ex = render_example(seed, skeleton, size)
        assert set(ex) == {"image", "joints", "flags", "center", "scale", "image_id"}
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (size, size, 3)
        assert ex["joints"].dtype == np.float32 and ex["joints"].shape == (k, 2)
        assert ex["flags"].dtype == np.int32 and ex["flags"].shape == (k,)
        assert set(np.unique(ex["flags"])) <= {0, 1, 2}
        assert ex["center"].dtype == np.float32 and ex["center"].shape == (2,)
        assert ex["scale"].dtype == np.float32 and ex["scale"].shape == ()
        assert np.isfinite(ex["joints"]).all()
        c, s = center_scale_from_joints(ex["joints"], np.ones(k, bool))
        np.testing.assert_allclose(ex["center"], c, rtol=1e-6)
        np.testing.assert_allclose(ex["scale"], s, rtol=1e-6)
        assert re.fullmatch(r"synthetic_\d{8}", ex["image_id"])


def test_both_skeletons_label_the_same_figure():
    for seed in range(5):
        a, b = render_example(seed, LSP14), render_example(seed, MPII16)
        assert a["image"].tobytes() == b["image"].tobytes()
        for i, name in enumerate(LSP14.joints):
            j = MPII16.index("upper_neck" if name == "neck" else name)
            np.testing.assert_array_equal(a["joints"][i], b["joints"][j])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="size"):
        render_example(0, LSP14, size=8)
    with pytest.raises(ValueError, match="seed"):
        render_example(-1, LSP14)
    with pytest.raises(ValueError, match="unknown joint set"):
        render_example(0, "coco17")


def test_visible_joints_land_on_the_figure(renders):
    diffs = []
    for ex, info in renders:
        ij = _pix(ex["joints"])
        bg_diff = np.abs(ex["image"].astype(np.int32) - info.background.astype(np.int32)).sum(-1)
        for j in np.flatnonzero(ex["flags"] == 2):
            x, y = ij[j]
            assert info.label[y, x] in info.owners[j], (ex["image_id"], LSP14.joints[j])
            diffs.append(bg_diff[y, x])
    diffs = np.asarray(diffs)
    assert len(diffs) > 10 * N_SEEDS
    # The pixel under a visible joint shows the figure, not the scene behind it.
    assert (diffs > 30).mean() > 0.98


def test_image_agrees_with_body_mask(renders):
    drawn = []
    for ex, info in renders:
        diff = np.abs(ex["image"].astype(np.int32) - info.background.astype(np.int32)).sum(-1)
        body = info.label > 0
        # Away from the mask (beyond anti-aliasing and blur) the scene is untouched ...
        near = cv2.dilate(body.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        near[:3], near[-3:], near[:, :3], near[:, -3:] = True, True, True, True  # off-image parts
        assert diff[~near].max(initial=0) <= 30, ex["image_id"]
        # ... and inside it the figure is drawn (a shirt may match the wall behind it).
        if body.sum() > 50:
            drawn.append((diff[body] > 15).mean())
    assert np.mean(drawn) > 0.95 and np.min(drawn) > 0.5


def test_occlusion_flags_follow_depth_order(renders):
    n_occluded = n_visible = 0
    for ex, info in renders:
        ij = _pix(ex["joints"])
        rank = {p: i for i, p in enumerate(info.draw_order)}
        for j, f in enumerate(ex["flags"]):
            if f == 0:
                continue
            x, y = ij[j]
            top = int(info.label[y, x])
            owners = [o for o in info.owners[j] if o in rank]
            if f == 2:
                n_visible += 1
                assert top in info.owners[j]
            else:
                n_occluded += 1
                # Covered by something nearer: a body part drawn after the joint's own
                # surfaces, or a foreground occluder.
                assert top != 0 and top not in info.owners[j], (ex["image_id"], j)
                assert top == OCCLUDER_ID or rank[top] > max(rank[o] for o in owners)
    assert n_occluded > 0.03 * n_visible  # self-occlusion actually happens
    assert n_visible > 0.7 * 14 * N_SEEDS


def test_out_of_image_joints_are_flagged_zero(renders):
    n_out = 0
    for ex, info in renders:
        ij = _pix(ex["joints"])
        inside = (ij >= 0).all(1) & (ij < SIZE).all(1)
        n_out += int((~inside).sum())
        assert (ex["flags"][~inside] == 0).all()
        # Inside the image, 0 only marks the few randomly "not annotated" joints.
        np.testing.assert_array_equal(ex["flags"][inside] == 0, info.dropped[inside])
    assert n_out > 0
    dropped = np.mean([info.dropped.mean() for _, info in renders])
    assert 0 < dropped < 0.05


def test_left_right_is_person_centric(renders):
    r_sh, l_sh, r_hip, l_hip = (LSP14.index(n)
                                for n in ("r_shoulder", "l_shoulder", "r_hip", "l_hip"))
    seen = {True: 0, False: 0}
    for ex, info in renders:
        upright = abs(info.roll_deg) < 20
        frontal = abs(info.yaw_deg) < 40 or abs(info.yaw_deg - 180) < 40
        if not (upright and frontal):
            continue
        seen[info.facing_viewer] += 1
        j = ex["joints"]
        # Facing the viewer: the person's right is on the image left; turned away: mirrored.
        assert (j[r_sh, 0] < j[l_sh, 0]) == info.facing_viewer, ex["image_id"]
        assert (j[r_hip, 0] < j[l_hip, 0]) == info.facing_viewer, ex["image_id"]
    assert seen[True] >= 20 and seen[False] >= 10


def test_left_and_right_limbs_look_different(renders):
    """Person-right limbs are warm (arm) / purple (leg), left ones blue / green."""
    ranges = {"r_uarm": (-25, 40), "r_farm": (-25, 40), "l_uarm": (185, 245), "l_farm": (185, 245),
              "r_thigh": (265, 330), "r_shin": (265, 330),
              "l_thigh": (85, 155), "l_shin": (85, 155)}
    hits = {p: [] for p in ranges}
    for ex, info in renders:
        hsv = cv2.cvtColor(ex["image"], cv2.COLOR_RGB2HSV_FULL)
        hue = hsv[..., 0].astype(np.float64) * 360 / 256
        for part, (lo, hi) in ranges.items():
            region = info.label == PART_ID[part]
            if region.sum() < 20:
                continue
            h = float(np.median(hue[region]))
            h = h - 360 if h > 180 and lo < 0 else h
            hits[part].append(lo <= h <= hi)
    for part, ok in hits.items():
        assert len(ok) > N_SEEDS // 2 and np.mean(ok) > 0.95, (part, np.mean(ok))


def test_figures_fill_a_standard_crop(renders):
    rel_scale = np.array([float(ex["scale"]) / SIZE for ex, _ in renders])
    centre_inside = np.array([((ex["center"] >= 0) & (ex["center"] < SIZE)).all()
                              for ex, _ in renders])
    extent = np.array([np.ptp(ex["joints"], 0).max() / SIZE for ex, _ in renders])
    assert centre_inside.mean() > 0.85
    assert 0.5 < np.median(extent) < 0.9
    assert np.percentile(extent, 5) > 0.3 and extent.max() < 1.0
    assert 0.6 < np.median(rel_scale) < 1.1


def test_synthetic_pose_splits_and_cache():
    ds = SyntheticPose("mpii16", size=64, num_train=6, num_val=4, seed=3)
    tr, va = ds.arrays("train"), ds.arrays("val")
    assert ds.arrays("train") is tr  # cached
    assert tr["image"].shape == (6, 64, 64, 3) and tr["image"].dtype == np.uint8
    assert tr["joints"].shape == (6, 16, 2) and tr["flags"].shape == (6, 16)
    assert tr["center"].shape == (6, 2) and tr["scale"].shape == (6,)
    assert va["image"].shape[0] == 4
    assert not set(tr["image_id"]) & set(va["image_id"])
    ex = ds.example("val", 2)
    for key in ("image", "joints", "flags", "center", "scale"):
        np.testing.assert_array_equal(va[key][2], ex[key])
    assert va["image_id"][2] == ex["image_id"]
    other = SyntheticPose("mpii16", size=64, num_train=6, num_val=4, seed=4)
    assert not set(other.arrays("train")["image_id"]) & set(tr["image_id"])
    with pytest.raises(ValueError, match="split"):
        ds.arrays("test")
    with pytest.raises(IndexError, match="out of range"):
        ds.example("train", 6)
    with pytest.raises(ValueError, match="unknown joint set"):
        SyntheticPose("coco")


def test_as_dataset_yields_contract_dicts():
    import tensorflow as tf

    ds = SyntheticPose("lsp14", size=64, num_train=3, num_val=2, seed=0)
    tfds = ds.as_dataset("train")
    spec = tfds.element_spec
    assert spec["image"].dtype == tf.uint8 and tuple(spec["image"].shape) == (64, 64, 3)
    assert spec["joints"].dtype == tf.float32 and tuple(spec["joints"].shape) == (14, 2)
    assert spec["flags"].dtype == tf.int32 and spec["image_id"].dtype == tf.string
    items = list(tfds.as_numpy_iterator())
    assert len(items) == 3
    ref = ds.example("train", 1)
    np.testing.assert_array_equal(items[1]["image"], ref["image"])
    np.testing.assert_array_equal(items[1]["joints"], ref["joints"])
    assert items[1]["image_id"].decode() == ref["image_id"]


def test_render_speed_is_reported():
    """A measurement, not a timed assertion (the machine is shared)."""
    render_example(0, LSP14)
    n, best = 100, 0.0
    for rep in range(3):
        t0 = time.perf_counter()
        for s in range(n):
            render_example(1000 + rep * n + s, LSP14, SIZE)
        best = max(best, n / (time.perf_counter() - t0))
    print(f"\nsynthetic render speed: {best:.0f} images/s on one core at {SIZE}x{SIZE}")
    assert best > 0
