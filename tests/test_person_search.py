"""Finding the person in a whole frame, upright or upside down (mssh_keras.person_search):
rotation round trips, the coarse-to-fine search's guarantees and stage switches, the
upright refinement, and the evaluation protocols built on them."""
from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mssh_keras import SHIPPED_MODEL_DIR, geometry
from mssh_keras import person_search as ps
from mssh_keras.codec import HeatmapCodec
from mssh_keras.data.records import VISIBLE
from mssh_keras.runtime import Pose, PoseEstimator
from mssh_keras.skeleton import LSP14, MPII16
from conftest import REAL_DATA
from conftest import standing_pose as _standing

LSPET = REAL_DATA / "lspet_axelcarlier"
SHIPPED_TFLITE = SHIPPED_MODEL_DIR / "model.tflite"
HIPS = [LSP14.index("l_hip"), LSP14.index("r_hip")]
SHOULDERS = [LSP14.index("l_shoulder"), LSP14.index("r_shoulder")]




def _turned(points: np.ndarray, degrees: float, about) -> np.ndarray:
    """``points`` turned by ``degrees`` about ``about`` as seen on screen (y down):
    positive = counter-clockwise on screen."""
    t = np.deg2rad(degrees)
    r = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    return (np.asarray(points, np.float64) - about) @ r.T + about


# ----------------------------------------------------------------------------- rotations
@pytest.mark.parametrize("rotation", [0.0, 17.0, 90.0, 135.0, 180.0, -60.0, 270.0])
def test_keypoints_through_a_rotated_crop_and_back(rotation):
    """Image -> rotated crop -> heatmap peaks -> decoded -> image again: the same points
    (within the quarter-pixel decoding of a stride-4 heatmap, in image pixels)."""
    rng = np.random.default_rng(int(rotation) % 97)
    center, scale, size, stride = np.array([310.0, 205.0]), 240.0, 128, 4.0
    m = geometry.crop_matrix(center, scale, size, rotation=rotation)
    # Exact inverse, for any angle.
    pts = rng.uniform([200, 100], [420, 310], (14, 2))
    back = geometry.transform_points(geometry.transform_points(pts, m),
                                     geometry.invert_affine(m))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # Through heatmaps: Gaussians drawn at the joints' crop positions, decoded, mapped back.
    inside = pts[(np.abs(geometry.transform_points(pts, m) - 63.5) < 60).all(axis=1)]
    codec = HeatmapCodec(size, (32,), sigma=1.0)
    assert codec.stride == stride
    hm, _ = codec.encode_resolution(geometry.transform_points(inside, m),
                                    np.full(len(inside), VISIBLE), 32)
    got, _ = codec.decode(np.asarray(hm), m)
    px = scale / size  # image pixels per crop pixel
    assert np.abs(got - inside).max() <= (0.5 * stride * np.sqrt(2) + 0.01) * px


@pytest.mark.parametrize("lean", [0.0, 30.0, 75.0, 90.0, 150.0, 180.0, -120.0])
def test_upright_rotation_puts_the_torso_upright_in_the_crop(lean):
    """A person leaning by ``lean`` degrees: the crop turned by upright_rotation shows the
    shoulders straight above the hips, and lean_angle measures the lean."""
    person = _turned(_standing(), lean, about=np.array([200.0, 150.0]))
    ok = np.ones(14, bool)
    rot = ps.upright_rotation(*ps.torso(person, ok, LSP14))
    assert ps.lean_angle(person, ok, LSP14) == pytest.approx(abs((lean + 180) % 360 - 180),
                                                             abs=1e-6)
    m = geometry.crop_matrix(np.array([200.0, 150.0]), 300.0, 128, rotation=rot)
    crop = geometry.transform_points(person, m)
    hips, shoulders = crop[HIPS].mean(0), crop[SHOULDERS].mean(0)
    assert shoulders[0] == pytest.approx(hips[0], abs=1e-6)
    assert shoulders[1] < hips[1]
    # The crop looks exactly like the upright person's: the lean is undone.
    up = geometry.transform_points(_standing(), geometry.crop_matrix(
        np.array([200.0, 150.0]), 300.0, 128))
    np.testing.assert_allclose(crop, up, atol=1e-6)
    # The confidence-weighted torso angle agrees on a clean pose.
    assert ps.torso_rotation(person, np.ones(14), LSP14) == pytest.approx(rot, abs=1e-6)


def test_roi_from_pose_fits_the_joints_in_the_rotated_axes():
    person = _turned(_standing(height=200.0), 90.0, about=np.array([200.0, 150.0]))
    ok = np.ones(14, bool)
    rot = ps.upright_rotation(*ps.torso(person, ok, LSP14))
    center, side = ps.roi_from_pose(person, ok, LSP14, rot, torso_factor=0.0)
    m = geometry.crop_matrix(center, side * 1.25, 128, rotation=rot)
    crop = geometry.transform_points(person, m)
    assert crop.min() >= 0 and crop.max() <= 127          # every joint inside the crop
    # Upright the body's height (head top to ankles, 195 px) sets the side, not its width.
    assert side == pytest.approx(195.0, rel=1e-6)
    # A box turned by any angle keeps its centre and its longer side (training's turned crops).
    for angle in (0.0, 45.0, 90.0, 200.0):
        center, side = ps.rotated_box_roi((0, 0, 100, 40), angle)
        assert side == pytest.approx(100.0) and center == pytest.approx([50.0, 20.0])


def _score(model, pose) -> float:
    """The search's score of ``pose`` (person_search.crop_score, default weight)."""
    return ps.crop_score(pose.keypoints, pose.confidence, pose.crop_matrix, model.input_size,
                         model.box_padding, ps.DEFAULT_SEARCH.undersize_weight)


# ----------------------------------------------------------------------------- a fake model
class CropModel:
    """A 'model' that knows the true joints but, like a real one, sees only its crop and
    only upright people well: a joint outside the crop scores 0, and every score falls
    with the person's size in the crop (too small or cut) and with how far the crop is
    from upright (cos of the torso's angle in the crop, 0 beyond 90 deg)."""

    def __init__(self, joints, image_wh=(640, 480), skeleton=LSP14, upright_only=True):
        self.skeleton, self.joints = skeleton, np.asarray(joints, np.float64)
        self.metadata = {"thresholds": {"joint_threshold": 0.2}}
        self.box_padding, self.image_wh, self.upright_only = 1.25, image_wh, upright_only
        self.input_size = 128
        self.calls: list = []

    def predict(self, image, box=None, flip_test=False, rotation=0.0, search=None):
        assert search is False, "the search runs single passes"
        self.calls.append((box, rotation))
        w, h = self.image_wh
        if box is None:
            center, side = np.array([(w - 1) / 2, (h - 1) / 2]), float(max(w, h))
        else:
            center, side = geometry.box_to_center_scale(box, self.box_padding)
        m = geometry.crop_matrix(center, side, 128, rotation=rotation)
        crop = geometry.transform_points(self.joints, m)
        inside = (crop >= 0).all(axis=1) & (crop <= 127).all(axis=1)
        extent = np.ptp(crop, axis=0).max() / 128.0       # 0.8 = a training-like fit
        fit = max(0.0, 1.0 - abs(extent - 0.8) / 0.8)
        up = 1.0
        if self.upright_only:
            v = crop[SHOULDERS].mean(0) - crop[HIPS].mean(0)
            up = max(0.0, -v[1] / np.hypot(*v))
        conf = np.where(inside, 0.1 + 0.8 * fit * up, 0.0).astype(np.float32)
        return Pose(keypoints=self.joints.astype(np.float32), confidence=conf, model_ms=1.0,
                    crop_matrix=m, rotation=float(rotation),
                    box=None if box is None else tuple(box))


def test_search_zooms_in_on_a_small_person_and_never_scores_below_its_first_pass():
    joints = _standing(cx=470.0, cy=300.0, height=120.0)       # small, off centre
    model = CropModel(joints)
    pose = ps.search(model, None, config=ps.SearchConfig(max_recrops=3))
    assert pose.model_calls == len(model.calls) == len(pose.scores) >= 2
    assert model.calls[0] == (None, 0.0)                       # 1. the whole frame
    assert _score(model, pose) == max(pose.scores) > pose.scores[0]
    # The final crop frames the person like a training crop.
    center, side = geometry.box_to_center_scale(pose.box, 1.25)
    assert np.linalg.norm(center - (joints.min(0) + joints.max(0)) / 2) < 0.1 * side
    assert 0.6 < np.ptp(joints, axis=0).max() / side < 1.0
    assert pose.model_ms == pytest.approx(pose.model_calls * 1.0)


def test_frame_tiles_cover_the_frame_at_three_places_per_long_enough_axis():
    tiles = ps.frame_tiles(480, 640, 0.6)                      # side 384
    assert len(tiles) == 9
    assert all(t[2] - t[0] == pytest.approx(384.0) == t[3] - t[1] for t in tiles)
    assert min(t[0] for t in tiles) == 0 and max(t[2] for t in tiles) == 640
    assert min(t[1] for t in tiles) == 0 and max(t[3] for t in tiles) == 480
    assert len(ps.frame_tiles(100, 400, 0.6)) == 3                 # too flat for 3 rows
    assert ps.frame_tiles(100, 400, 0.6)[0][1] == pytest.approx(50 - 120)


def test_tiles_find_a_small_person_in_a_corner_and_the_best_starts_are_refined():
    joints = _standing(cx=560.0, cy=380.0, height=110.0)       # small, in a corner
    model = CropModel(joints)
    frame = np.zeros((480, 640, 3), np.uint8)
    cfg = ps.SearchConfig(max_recrops=1, starts=2)
    pose = ps.search(model, frame, config=cfg)
    firsts = model.calls[:10]
    assert firsts[0] == (None, 0.0) and {c[0] for c in firsts[1:]} == set(
        ps.frame_tiles(480, 640, cfg.tiles))
    assert pose.model_calls == len(model.calls) <= 10 + cfg.starts * (2 + cfg.max_recrops)
    # A tile holding the person outscores the letterboxed frame, and the search ends
    # above every first pass, framing the person like a training crop.
    assert max(pose.scores[1:10]) > pose.scores[0]
    assert _score(model, pose) == max(pose.scores) > max(pose.scores[:10])
    center, side = geometry.box_to_center_scale(pose.box, 1.25)
    assert np.linalg.norm(center - (joints.min(0) + joints.max(0)) / 2) < 0.1 * side
    # Tiles off: the whole frame alone starts the one chain.
    model.calls.clear()
    pose = ps.search(model, frame, config=ps.SearchConfig(tiles=0.0, max_recrops=1))
    assert model.calls[0] == (None, 0.0) and pose.model_calls <= 1 + 2
    with pytest.raises(ValueError, match="tiles"):
        ps.SearchConfig(tiles=1.0)


class WorseAfterFirst(CropModel):
    """The first pass is sure of every joint and every crop after it scores 0.05: the
    search must keep the first pass (small in the frame as it is)."""

    def predict(self, image, box=None, flip_test=False, rotation=0.0, search=None):
        pose = super().predict(image, box, flip_test, rotation, search)
        pose.confidence = np.full_like(pose.confidence, 1.0 if len(self.calls) == 1 else 0.05)
        return pose


def test_search_returns_the_first_pass_when_nothing_beats_it():
    model = WorseAfterFirst(_standing(cx=470.0, cy=300.0, height=120.0))
    for cfg in (ps.SearchConfig(), ps.SearchConfig(upright=True)):
        model.calls.clear()
        pose = ps.search(model, None, config=cfg)
        assert pose.box is None and pose.rotation == 0.0        # the first pass itself
        assert _score(model, pose) == pose.scores[0] == max(pose.scores)
        assert pose.model_calls == len(model.calls) >= 2


def test_undersize_measures_the_pose_in_its_crop_against_a_training_crop():
    """A pose whose box is 1/padding of the crop (as training crops frame the joints) is
    not undersized, at any rotation; half that size is log 2 undersized; larger, 0."""
    pts = np.array([[200.0, 100.0], [220.0, 200.0], [210.0, 150.0]])   # 100 px tall
    for rotation in (0.0, 90.0, 180.0):
        def m(side):
            return geometry.crop_matrix(np.array([210.0, 150.0]), side, 128, rotation=rotation)
        assert ps.undersize(pts, m(125.0), 128, 1.25) == pytest.approx(0.0, abs=1e-9)
        assert ps.undersize(pts, m(250.0), 128, 1.25) == pytest.approx(np.log(2.0))
        assert ps.undersize(pts, m(60.0), 128, 1.25) == 0.0            # cut, not small
        assert ps.crop_score(pts, np.full(3, 0.7), m(250.0), 128, 1.25, 0.3) == \
            pytest.approx(0.7 - 0.3 * np.log(2.0))
    assert ps.undersize(pts[:1], m(125.0), 128, 1.25) == np.inf     # no extent to measure
    assert ps.crop_score(pts[:1], np.full(1, 0.7), m(125.0), 128, 1.25, 0.0) == \
        pytest.approx(0.7)                                             # not NaN


class OverconfidentWhenSmall(CropModel):
    """Like the real models: the whole frame, where the person shows small, gets a higher
    mean confidence (0.9) than the crops fitted to them (0.8)."""

    def predict(self, image, box=None, flip_test=False, rotation=0.0, search=None):
        pose = super().predict(image, box, flip_test, rotation, search)
        pose.confidence = np.full_like(pose.confidence, 0.9 if box is None else 0.8)
        return pose


def test_the_score_prefers_a_crop_fitted_to_the_person_over_an_overconfident_small_pass():
    model = OverconfidentWhenSmall(_standing(cx=470.0, cy=300.0, height=120.0))
    pose = ps.search(model, None, config=ps.SearchConfig(tiles=0.0))
    assert pose.box is not None and pose.model_calls >= 2
    assert _score(model, pose) == max(pose.scores) > pose.scores[0]
    # By confidence alone (undersize_weight 0) the whole frame would win.
    alone = ps.search(model, None, config=ps.SearchConfig(tiles=0.0, undersize_weight=0.0))
    assert alone.box is None and alone.model_calls == pose.model_calls
    with pytest.raises(ValueError, match="undersize_weight"):
        ps.SearchConfig(undersize_weight=-0.1)


class DriftingLower(CropModel):
    """Each pass finds the person a little further right and scores lower than the last
    (the first, small in the whole frame, by its confidence of 1)."""

    def predict(self, image, box=None, flip_test=False, rotation=0.0, search=None):
        self.joints = self.joints + np.array([40.0, 0.0])
        pose = super().predict(image, box, flip_test, rotation, search)
        n = len(self.calls)
        pose.confidence = np.full_like(pose.confidence, 1.0 if n == 1 else 0.7 - 0.1 * n)
        return pose


def test_recrops_follow_the_latest_pose_unless_told_to_stop_without_gain():
    for stop, calls in ((False, 2 + 2), (True, 2)):
        model = DriftingLower(_standing(cx=300.0, cy=300.0, height=120.0))
        pose = ps.search(model, None, config=ps.SearchConfig(max_recrops=2,
                                                             stop_without_gain=stop))
        assert pose.model_calls == calls
        assert pose.scores[0] == max(pose.scores) == _score(model, pose)


def test_each_stage_can_be_switched_off_and_the_recrops_are_bounded():
    joints = _standing(cx=470.0, cy=300.0, height=120.0)
    model = CropModel(joints)
    assert ps.search(model, None, config=ps.SearchConfig(refine=False)).model_calls == 1
    assert ps.search(model, None, config=ps.SearchConfig(max_recrops=0)).model_calls <= 2
    for n in (1, 2, 4):
        assert ps.search(model, None, config=ps.SearchConfig(max_recrops=n)).model_calls <= 2 + n
    # Upright alone, on a given box: the coarse orientations, then the torso angle.
    box = (*joints.min(0), *joints.max(0))
    pose = ps.search(model, None, box, config=ps.SearchConfig(refine=False, upright=True))
    assert pose.model_calls <= 1 + 3 + 1
    pose = ps.search(model, None, box, config=ps.SearchConfig(refine=False, upright=True,
                                                                orientations=1))
    assert pose.model_calls <= 2
    # predict's switches: search=False is one pass; upright cannot be one pass.
    assert ps.resolve(False, None, False) is None
    assert ps.resolve(None, box, False) is None                 # a given box: one pass
    assert ps.resolve(None, None, False) == ps.DEFAULT_SEARCH   # no box: the search
    assert ps.resolve(None, box, True).upright
    with pytest.raises(ValueError, match="upright"):
        ps.resolve(False, box, True)
    with pytest.raises(ValueError):
        ps.SearchConfig(max_recrops=-1)


@pytest.mark.parametrize("lean", [75.0, 180.0, -110.0])
def test_upright_refinement_turns_a_leaning_person_upright(lean):
    """On a given box around a leaning / upside-down person the axis-aligned pass scores
    low; the upright search ends on a crop turned (nearly) upright: the coarse orientation
    nearest the torso's angle, or that angle itself (the fake scores a person 15 deg off
    upright in a tight crop about like an upright one in the looser crop that contains the
    whole given box)."""
    joints = _turned(_standing(cx=320, cy=240), lean, about=np.array([320.0, 240.0]))
    model = CropModel(joints)
    box = (*joints.min(0), *joints.max(0))
    pose = ps.search(model, None, box, config=ps.SearchConfig(refine=False, upright=True))
    want = ps.upright_rotation(joints[HIPS].mean(0), joints[SHOULDERS].mean(0))
    assert abs((pose.rotation - want + 180) % 360 - 180) <= 20.0
    assert _score(model, pose) > pose.scores[0] + 0.3
    # The torso's angle itself from the axis-aligned pass alone (orientations=1).
    model.calls.clear()
    pose = ps.search(model, None, box, config=ps.SearchConfig(refine=False, upright=True,
                                                                orientations=1))
    assert model.calls[-1][1] == pytest.approx(want)
    # The whole-frame search with upright finds and turns it too. (This fake gives every
    # joint of a person it cannot read the same confidence, so the refined crop boxes
    # arbitrary joints and cuts the person; scored by confidence alone, the whole frame
    # stays the crop that the orientations turn.)
    pose = ps.search(model, None, config=ps.SearchConfig(upright=True, undersize_weight=0.0))
    assert abs((pose.rotation - want + 180) % 360 - 180) < 1.0


def test_search_works_for_mpii_and_needs_a_torso_only_to_turn_upright():
    lsp = _standing(cx=300.0, cy=200.0)
    mp = np.stack([lsp[LSP14.index(n)] if n in LSP14.joints else lsp[HIPS].mean(0)
                   for n in MPII16.joints])
    pose = ps.search(CropModel(mp, skeleton=MPII16), None)
    assert pose.keypoints.shape == (16, 2) and pose.model_calls >= 2
    # A joint set without hips and shoulders (an animal, an object; a COCO-format
    # dataset's own): searched by the box of its confident joints, without the torso
    # floor; only the upright stage needs a torso, and says so before any model call.
    no_torso = SimpleNamespace(skeleton=SimpleNamespace(name="x", joints=("a", "b")),
                               metadata={}, predict=None)
    with pytest.raises(ValueError, match="hips/shoulders"):
        ps.search(no_torso, None, config=ps.SearchConfig(upright=True))
    found = ps.search(CropModel(lsp, upright_only=False, skeleton=SimpleNamespace(
        name="x", joints=tuple(f"point{i}" for i in range(14)))), None)
    assert found.model_calls >= 2 and found.scores[-1] >= found.scores[0]


# ----------------------------------------------------------------------------- real model
@pytest.fixture(scope="module")
def shipped():
    return PoseEstimator(SHIPPED_TFLITE)


@pytest.fixture(scope="module")
def photos():
    from mssh_keras.data.lspet import read_lspet

    records = read_lspet(LSPET, "val")[:8]
    return [(cv2.cvtColor(cv2.imread(str(r["path"])), cv2.COLOR_BGR2RGB), r) for r in records]


def test_runtime_rotation_round_trip_on_a_turned_photo(shipped, photos):
    """The shipped model through PoseEstimator.predict: a photo turned by 90 deg (exactly,
    np.rot90) and cropped with the compensating rotation is the same crop, so the
    keypoints come back as the original's, turned the same way."""
    image, record = photos[1]
    w = image.shape[1]
    x0, y0 = record["joints"][record["flags"] > 0].min(0)
    x1, y1 = record["joints"][record["flags"] > 0].max(0)
    half = max(x1 - x0, y1 - y0) / 2
    c = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    box = (c[0] - half, c[1] - half, c[0] + half, c[1] + half)
    ref = shipped.predict(image, box, search=False)

    turned = np.ascontiguousarray(np.rot90(image))            # (x, y) -> (y, w-1-x)

    def to_turned(p):
        p = np.asarray(p, np.float64)
        return np.stack([p[..., 1], w - 1 - p[..., 0]], axis=-1)

    tc = to_turned(c)
    tbox = (tc[0] - half, tc[1] - half, tc[0] + half, tc[1] + half)
    got = shipped.predict(turned, tbox, rotation=-90.0, search=False)
    assert got.rotation == -90.0 and got.model_calls == 1
    crop_ref, _ = shipped.crop(image, box)
    crop_got, _ = shipped.crop(turned, tbox, rotation=-90.0)
    assert np.abs(crop_ref.astype(int) - crop_got.astype(int)).max() <= 1
    np.testing.assert_allclose(got.confidence, ref.confidence, atol=0.02)
    same = np.linalg.norm(got.keypoints - to_turned(ref.keypoints), axis=1) < 1.0
    assert same.mean() >= 0.85, same


def test_real_search_never_scores_below_its_first_pass(shipped, photos):
    for image, record in photos:
        for kwargs in ({}, {"upright": True}):
            pose = shipped.predict(image, **kwargs)
            assert pose.model_calls == len(pose.scores) >= 1
            got = _score(shipped, pose)
            assert got >= pose.scores[0]
            # The best pass, except that a turned crop must win by upright_gain.
            slack = ps.DEFAULT_SEARCH.upright_gain if kwargs else 0.0
            assert got == pytest.approx(max(pose.scores), abs=slack + 1e-7)
            assert got in pose.scores
        box = (*record["joints"][record["flags"] > 0].min(0),
               *record["joints"][record["flags"] > 0].max(0))
        pose = shipped.predict(image, box, upright=True)
        assert _score(shipped, pose) >= pose.scores[0]
        one = shipped.predict(image, search=False)              # the search's first pass
        assert one.model_calls == 1 and one.box is None
        assert shipped.predict(image).scores[0] == pytest.approx(_score(shipped, one))


# ----------------------------------------------------------------------------- evaluation
def test_evaluation_protocols_one_command_each(tmp_path):
    import evaluate

    reports = {}
    for protocol in ("gt-box", "gt-box-upright", "whole-image"):
        out = tmp_path / protocol
        rc = evaluate.main(["--model", str(SHIPPED_TFLITE), "--dataset", "synthetic",
                            "--limit", "4", "--protocol", protocol, "--output-dir", str(out)])
        assert rc == 0
        reports[protocol] = json.loads((out / "report.json").read_text())
    calls = {p: r["inference"]["mean_model_calls"] for p, r in reports.items()}
    assert calls["gt-box"] == 1.0 and calls["gt-box-upright"] > 1.0
    assert calls["whole-image"] >= 1.0
    for p, r in reports.items():
        assert r["inference"]["protocol"] == p and r["num_examples"] == 4
        assert len(r["per_example"]["lean_deg"]) == 4
    with pytest.raises(SystemExit):
        evaluate.main(["--model", str(SHIPPED_TFLITE), "--protocol", "nope"])


# ----------------------------------------------------------------------------- training
def _zoom_example():
    joints = _standing(cx=200.0, cy=220.0, height=200.0).astype(np.float32)
    center, scale = geometry.center_scale_from_joints(joints, np.ones(14, bool))
    return {"image": np.full((400, 400, 3), 128, np.uint8), "joints": joints,
            "flags": np.full(14, 2, np.int32), "center": center.astype(np.float32),
            "scale": np.float32(scale)}


def test_zoom_out_augmentation_makes_whole_frame_like_views():
    """zoom_out: the person down to 1/zoom_out of a training crop and anywhere inside it;
    with zoom_out_prob 0 the random stream (and so every crop) is unchanged."""
    import tensorflow as tf

    from mssh_keras.data.pipeline import Augment, crop_example
    from mssh_keras.training import RunOptions, augmentation

    ex = {k: tf.constant(v) for k, v in _zoom_example().items()}
    aug = Augment(scale=(1.0, 1.0), rotation_prob=0.0, flip_prob=0.0, color=0.0,
                  zoom_out=4.0, zoom_out_prob=1.0)
    tf.random.set_seed(0)
    extents, centres = [], []
    for _ in range(40):
        _, joints, _, _ = crop_example(ex, 128, LSP14.flip_permutation, aug)
        j = joints.numpy()
        assert (j >= -0.5).all() and (j <= 127.5).all()       # still wholly in the crop
        extents.append(np.ptp(j, axis=0).max())
        centres.append((j.min(0) + j.max(0)) / 2)
    normal = 128 / 1.25                                         # a training crop's person
    assert min(extents) >= normal / 4 - 1 and max(extents) <= normal + 1
    assert min(extents) < normal / 2.5                          # some far smaller
    assert np.std(np.array(centres), axis=0).min() > 5          # and off centre
    # Off: the same crops as the default augmentation, draw for draw.
    outs = []
    for a in (Augment(), Augment(zoom_out=4.0, zoom_out_prob=0.0)):
        tf.random.set_seed(1)
        outs.append([crop_example(ex, 128, LSP14.flip_permutation, a)[1].numpy()
                     for _ in range(3)])
    np.testing.assert_array_equal(np.array(outs[0]), np.array(outs[1]))
    # The run options / train.py flags reach the augmentation.
    got = augmentation(RunOptions(zoom_out=3.0, zoom_out_prob=0.25))
    assert (got.zoom_out, got.zoom_out_prob) == (3.0, 0.25)
    assert augmentation(RunOptions()).zoom_out_prob == 0.0
    import train

    args = train.parse_args(["--zoom-out", "3", "--zoom-out-prob", "0.25"])
    assert (args.zoom_out, args.zoom_out_prob) == (3.0, 0.25)
    with pytest.raises(ValueError, match="zoom_out"):
        Augment(zoom_out=0.5)


def test_protocol_table_script_and_the_demo_scored_from_its_json(tmp_path):
    from mssh_keras.data.lspet import read_lspet
    from scripts import protocol_table

    out = tmp_path / "protocols.json"
    assert protocol_table.main(["--dataset", "synthetic", "--limit", "4", "--demo-photos",
                                "0", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc["reports"]) == ["gt-box", "gt-box-upright", "whole-image",
                                    "whole-image-upright"]
    assert len(doc["markdown"].strip().splitlines()) == 6      # header, rule, 4 rows
    # The demo's row: its JSON keypoints scored against the ground truth, per photo.
    records = read_lspet(LSPET, "val")
    people = [r["image_id"] for r in records[:3]]
    demo = protocol_table.demo_report(SHIPPED_TFLITE, records, people, threads=2)
    assert demo["num_examples"] == 3 and demo["per_example"]["image_id"] == people
    assert all(c >= 1 for c in demo["per_example"]["model_calls"])
    # The same photos through predict(image) directly score the same (same decoder).
    est = PoseEstimator(SHIPPED_TFLITE)
    from mssh_keras.metrics import lsp_report

    by_id = {r["image_id"]: r for r in records}
    pred = np.stack([est.predict(cv2.cvtColor(cv2.imread(str(by_id[i]["path"])),
                                              cv2.COLOR_BGR2RGB)).keypoints for i in people])
    want = lsp_report(pred, np.stack([by_id[i]["joints"] for i in people]),
                      np.stack([by_id[i]["flags"] for i in people]) > 0, LSP14)
    assert demo["tables"]["PCK@0.2"]["Total"] == pytest.approx(
        want["tables"]["PCK@0.2"]["Total"], abs=1e-6)
