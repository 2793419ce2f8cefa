"""COCO-format datasets with any joint set: the reader on real files (mmpose's COCO,
CrowdPose, OCHuman, LV-MHP and AI Challenger samples), the naming rule behind flip pairs,
clear errors, the LSPET -> COCO round trip, box PCK and pycocotools' AP, and the
torso-by-name lookups of the person search and the demo. No training here (see
test_custom_keypoints.py)."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from conftest import REAL_DATA
from mssh_keras import joint_names
from mssh_keras.data import coco
from mssh_keras.data.records import MISSING, OCCLUDED, VISIBLE, DatasetFilesError
from mssh_keras.skeleton import LSP14, MPII16, Skeleton

MMPOSE = REAL_DATA / "mmpose_testdata" / "tests" / "data"
COCO_JSON = MMPOSE / "coco" / "test_coco.json"
COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
          "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")


def _raw(path):
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, side, canon", [
    ("l_hip", "L", "l_hip"), ("left_hip", "L", "l_hip"), ("Left Hip", "L", "l_hip"),
    ("Right-ankle", "R", "r_ankle"), ("LHip", "L", "l_hip"), ("RShoulder", "R", "r_shoulder"),
    ("hip_left", "L", "l_hip"), ("knee_R", "R", "r_knee"), ("leftHip", "L", "l_hip"),
    ("LeftUpperArm", "L", "l_upper_arm"), ("Head top", "C", "head_top"),
    ("head_top", "C", "head_top"), ("LED", "C", "led"), ("Lip", "C", "lip"),
    ("left", "C", "left"), ("nose", "C", "nose")])
def test_naming_rule(name, side, canon):
    assert joint_names.split_name(name)[0] == side
    assert joint_names.canonical(name) == canon


def test_flip_pairs_from_names_match_the_built_in_sets():
    for sk in (LSP14, MPII16):
        pairs, unpaired = joint_names.flip_pairs_from_names(sk.joints)
        built = Skeleton("x", sk.joints, pairs, ())
        assert built.flip_permutation == sk.flip_permutation and not unpaired
    pairs, unpaired = joint_names.flip_pairs_from_names(COCO17)
    assert pairs == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    assert joint_names.flip_pairs_from_names(["left_paw", "tail", "right_ear"])[1] == \
        ["left_paw", "right_ear"]
    # Colours follow the same rule (COCO's "left_eye" is drawn as a left joint).
    assert Skeleton("c", COCO17, pairs, ()).sides[:3] == ("C", "L", "R")
    assert LSP14.sides == tuple("R" * 3 + "L" * 3 + "R" * 3 + "L" * 3 + "CC")


def test_flip_pair_override():
    names = list(COCO17)
    assert coco.parse_flip_pairs("left_eye:right_eye, 4:5", names) == ((1, 2), (3, 4))
    assert coco.parse_flip_pairs("none", names) == ()
    for bad, match in (("left_eye-right_eye", "not a pair"), ("left_eye:left_eye", "repeats"),
                       ("left_eye:right_eye,left_eye:nose", "repeats"),
                       ("tail:nose", "neither a joint name"), ("18:1", "neither")):
        with pytest.raises(ValueError, match=match):
            coco.parse_flip_pairs(bad, names)
    c = coco.read_coco(COCO_JSON, flip_pairs="none")
    assert c.skeleton.flip_permutation == list(range(17))


# ----------------------------------------------------------------------------- reading
def test_reads_the_real_coco_sample():
    c = coco.read_coco(COCO_JSON)
    raw = _raw(COCO_JSON)
    assert c.skeleton.joints == COCO17 and c.skeleton.name == "person17"
    assert c.skeleton.limbs[0] == (15, 13)  # [16, 14] in the file: 1-based
    assert c.skeleton.torso_pair == (5, 12)  # left shoulder - right hip
    assert len(c.records) == 7 and c.skipped["without labelled keypoints"] == 2
    assert c.images_dir == COCO_JSON.parent.resolve()
    by_id = {a["id"]: a for a in raw["annotations"]}
    for r in c.records:
        ann = by_id[r["ann_id"]]
        kp = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
        expected = np.select([kp[:, 2] == 2, kp[:, 2] == 1], [VISIBLE, OCCLUDED], MISSING)
        np.testing.assert_array_equal(r["flags"], expected)
        on = kp[:, 2] > 0
        np.testing.assert_array_equal(r["joints"][on], kp[on, :2].astype(np.float32))
        assert (r["joints"][~on] == 0).all()
        x, y, w, h = ann["bbox"]
        np.testing.assert_allclose(r["center"], [x + w / 2, y + h / 2], rtol=1e-6)
        assert r["scale"] == pytest.approx(max(w, h) * 1.25, rel=1e-6)
        assert r["image_id"] == next(im["file_name"] for im in raw["images"]
                                     if im["id"] == ann["image_id"])
    assert {int(f) for r in c.records for f in r["flags"]} == {0, 1, 2}


@pytest.mark.parametrize("folder, people, joints, pairs", [
    ("crowdpose", 4, 14, ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))),
    ("ochuman", 5, 17, ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))),
    ("mhp", 4, 16, ((3, 2), (4, 1), (5, 0), (13, 12), (14, 11), (15, 10))),
    ("aic", 9, 14, ((3, 0), (4, 1), (5, 2), (9, 6), (10, 7), (11, 8))),
])
def test_reads_other_real_coco_style_sets(folder, people, joints, pairs, caplog):
    path = next((MMPOSE / folder).glob("*.json"))
    with caplog.at_level(logging.WARNING):
        c = coco.read_coco(path)
    assert len(c.records) == people and c.skeleton.num_joints == joints
    assert c.skeleton.flip_pairs == pairs
    good, problems = coco.usable_records(c.records)
    assert len(good) == people and not problems
    if folder == "crowdpose":  # its file carries COCO's 17-joint skeleton for 14 joints
        assert c.skeleton.limbs == ()
        assert "outside 1..14" in caplog.text and "test_crowdpose.json" in caplog.text
    else:
        assert c.skeleton.limbs
    # LV-MHP is MPII's order with other spellings: the same permutation.
    if folder == "mhp":
        assert c.skeleton.flip_permutation == MPII16.flip_permutation


def test_zero_based_skeleton_is_recognised(tmp_path, caplog):
    raw = _raw(COCO_JSON)
    raw["categories"][0]["skeleton"] = [[0, 1], [1, 2]]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(raw))
    with caplog.at_level(logging.WARNING):
        assert coco.read_coco(path, COCO_JSON.parent).skeleton.limbs == ((0, 1), (1, 2))
    assert "0-based" in caplog.text


def test_hold_out_split_is_deterministic_and_disjoint():
    c = coco.read_coco(COCO_JSON)
    train, val = coco.split_records(c, "train"), coco.split_records(c, "val")
    assert val and train and len(train) + len(val) == len(c.records)
    assert not {r["image_id"] for r in train} & {r["image_id"] for r in val}
    assert [r["ann_id"] for r in val] == [r["ann_id"] for r in coco.split_records(c, "val")]
    # The rule: CRC-32 of the file name divisible by 10 (tiny sets: the smallest CRC-32).
    names = [f"img_{i:04d}.jpg" for i in range(1000)]
    share = np.mean([coco.held_out(n) for n in names])
    assert 0.07 < share < 0.13


def _write(tmp_path, raw, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda r: r["annotations"][1].pop("bbox"), r"annotations\[1\] \(id 2\).*lacks 'bbox'"),
    (lambda r: r["annotations"][1]["keypoints"].pop(), r"annotations\[1\] \(id 2\).*'keypoints' "
                                                       r"has 50 numbers.*17 keypoints.*51"),
    (lambda r: r["annotations"][1].update(image_id=999), r"image_id 999 is not in 'images'"),
    (lambda r: r["annotations"][1]["keypoints"].__setitem__(2, 3), r"visibility values"),
    (lambda r: r["images"][0].pop("file_name"), r"images\[0\] \(id 785\).*lacks 'file_name'"),
    (lambda r: r.pop("categories"), r"lacks 'categories'"),
    (lambda r: r["categories"][0].pop("keypoints"), r"no category has 'keypoints'"),
    (lambda r: r["categories"].append({**r["categories"][0], "id": 2, "name": "robot"}),
     r"2 categories have keypoints.*--category"),
])
def test_errors_name_the_file_and_the_entry(tmp_path, edit, match):
    raw = _raw(COCO_JSON)
    for i, a in enumerate(raw["annotations"], start=1):
        a["id"] = i
    edit(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(coco.CocoFormatError, match=match) as info:
        coco.read_coco(path, COCO_JSON.parent)
    assert str(path) in str(info.value)


def test_not_json_and_missing_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(coco.CocoFormatError, match="x.json is not valid JSON"):
        coco.read_coco(bad)
    with pytest.raises(DatasetFilesError, match="does not exist"):
        coco.read_coco(tmp_path / "missing.json")
    bad.write_text(json.dumps([{"joints": []}]))
    with pytest.raises(coco.CocoFormatError, match="MPII/HRNet list"):
        coco.read_coco(bad)


def test_category_choice(tmp_path):
    raw = _raw(COCO_JSON)
    raw["categories"].append({**raw["categories"][0], "id": 2, "name": "robot"})
    path = _write(tmp_path, raw)
    assert len(coco.read_coco(path, COCO_JSON.parent, category="person").records) == 7
    assert coco.read_coco(path, COCO_JSON.parent, category=2).records == []


def test_absent_and_corrupt_images_are_counted_named_and_skipped(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(COCO_JSON.parent / "000000000785.jpg", images)
    (images / "000000040083.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg\xff\xd9")
    source = coco.CocoSource(str(COCO_JSON), str(images))
    with caplog.at_level(logging.WARNING):
        c, good = source.records("all")
    assert {r["image_id"] for r in good} == {"000000000785.jpg"}
    text = caplog.text
    assert "6 of 7 people are left out" in text
    assert "missing image file: 4 (000000196141.jpg (annotation " in text
    assert "unreadable image: corrupt JPEG header: 2 (000000040083.jpg (annotation" in text
    # A folder prefix in file_name ("images/x.jpg", Label Studio) falls back to the name.
    raw = _raw(COCO_JSON)
    for im in raw["images"]:
        im["file_name"] = "images/" + im["file_name"]
    path = _write(tmp_path, raw, "prefixed.json")
    assert all(r["path"].endswith(r["image_id"].split("/")[-1])
               for r in coco.read_coco(path, COCO_JSON.parent).records)
    with pytest.raises(DatasetFilesError, match="no usable person"):
        coco.CocoSource(str(COCO_JSON), str(tmp_path / "nowhere")).records("all")


def test_skeleton_definition_round_trip():
    sk = coco.read_coco(COCO_JSON).skeleton
    back = coco.skeleton_from_dict(json.loads(json.dumps(coco.skeleton_definition(sk))))
    assert back == sk
    assert coco.skeleton_from_dict(coco.skeleton_definition(LSP14)) is LSP14


# ----------------------------------------------------------------------------- round trip
def test_lspet_to_coco_round_trip_gives_the_lspet_examples(tmp_path):
    """50 real LSPET images: the COCO file written by scripts/lsp_to_coco.py, read by the
    COCO reader, gives the LSPET reader's examples (joints, flags, centre, scale)."""
    from mssh_keras.data.lspet import read_lspet
    from scripts.lsp_to_coco import main

    root = REAL_DATA / "lspet_axelcarlier"
    out = tmp_path / "lspet50.json"
    assert main([str(root), "--limit", "50", "--output", str(out)]) == 0
    c = coco.read_coco(out, root / "images")
    ref = [r for r in read_lspet(root) if (r["flags"] > 0).any()][:50]
    assert len(c.records) == len(ref) == 50
    for a, b in zip(c.records, ref):
        assert a["image_id"] == b["image_id"]
        assert a["path"].endswith(b["path"].split("/")[-1])
        np.testing.assert_array_equal(a["joints"], b["joints"])
        np.testing.assert_array_equal(a["flags"], b["flags"])
        np.testing.assert_allclose(a["center"], b["center"], atol=1e-4)
        assert a["scale"] == pytest.approx(b["scale"], abs=1e-4)
    assert (np.concatenate([r["flags"] for r in c.records]) == MISSING).any()
    sk = c.skeleton
    assert sk.joints == LSP14.joints and sk.limbs == LSP14.limbs
    assert sk.flip_permutation == LSP14.flip_permutation and sk.torso_pair == LSP14.torso_pair


# ----------------------------------------------------------------------------- metrics
def _mmpose_pck(pred, gt, mask, thr, box):
    """mmpose's keypoint_pck_accuracy with norm_factor = [box, box] (PCKAccuracy, bbox)."""
    norm = np.tile(box[:, None], (1, 2))
    dist = np.full(mask.shape, -1.0)
    dist[mask] = np.linalg.norm(((pred - gt) / norm[:, None, :])[mask], axis=-1)
    acc = []
    for d in dist.T:
        valid = d != -1
        acc.append((d[valid] < thr).mean() if valid.any() else -1)
    acc = np.array(acc)
    return acc, acc[acc >= 0].mean()


def test_box_pck_follows_mmpose():
    from mssh_keras.metrics import box_sizes, keypoint_report

    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (40, 17, 2))
    pred = gt + rng.normal(0, 15, gt.shape)
    mask = rng.uniform(size=(40, 17)) > 0.2
    boxes = np.c_[rng.uniform(0, 50, (40, 2)), rng.uniform(50, 250, (40, 2))]
    sk = coco.read_coco(COCO_JSON).skeleton
    report = keypoint_report(pred, gt, mask, box_sizes(boxes), sk)
    for t in (0.05, 0.1, 0.2):
        per_joint, mean = _mmpose_pck(pred, gt, mask, t, box_sizes(boxes))
        assert report["tables"]["PCK (box)"][f"@{t:g}"] == pytest.approx(100 * mean)
        got = list(report["per_joint"][f"PCK@{t:g} (box)"].values())
        np.testing.assert_allclose(got, 100 * per_joint)
    assert "PCK@0.2 (torso)" in report["tables"]
    # Strictly below the threshold: an error of exactly 0.2 x box is a miss.
    one = keypoint_report(np.array([[[20.0, 0.0]]]), np.zeros((1, 1, 2)), [[True]], [100.0],
                          Skeleton("one", ("tip",), (), ()))
    assert one["tables"]["PCK (box)"]["@0.2"] == 0.0
    assert "PCK@0.2 (torso)" not in one["tables"]


def test_coco_ap_is_pycocotools_and_sigmas_follow_names():
    from mssh_keras.coco_eval import DEFAULT_SIGMA, keypoint_ap, oks_sigmas

    c = coco.read_coco(COCO_JSON)
    gt = np.stack([r["joints"] for r in c.records]).astype(np.float64)
    conf = np.ones(gt.shape[:2])
    sigmas, how = oks_sigmas(c.skeleton.joints)
    assert how == "COCO's" and sigmas[0] == 0.026 and sigmas[11] == 0.107
    perfect = keypoint_ap(c, c.records, gt, conf, sigmas)
    assert perfect["stats"]["AP"] == pytest.approx(100.0)
    assert "Average Precision" in perfect["summary"]
    noisy = gt + np.random.default_rng(0).normal(0, 10, gt.shape)
    worse = keypoint_ap(c, c.records, noisy, conf, sigmas)["stats"]["AP"]
    assert 0.0 < worse < 100.0
    # The same with pycocotools driven by hand from the file itself (areas from the file).
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    scores = np.linspace(0.9, 0.3, len(c.records))  # distinct: no ties to order
    worse = keypoint_ap(c, c.records, noisy, conf * scores[:, None], sigmas)["stats"]["AP"]
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = COCO(str(COCO_JSON))
        dets = [{"image_id": r["coco_image_id"], "category_id": 1, "score": float(s),
                 "keypoints": np.c_[p, np.ones(17)].reshape(-1).tolist()}
                for r, p, s in zip(c.records, noisy, scores)]
        ev = COCOeval(ref_gt, ref_gt.loadRes(dets), "keypoints")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert worse == pytest.approx(100 * ev.stats[0])
    crowd = coco.read_coco(MMPOSE / "crowdpose" / "test_crowdpose.json").skeleton.joints
    s, how = oks_sigmas(crowd)
    assert s[12] == DEFAULT_SIGMA and s[0] == 0.079 and "12 of 14" in how
    assert oks_sigmas(crowd, "0.05")[0].tolist() == [0.05] * 14
    with pytest.raises(ValueError, match="1 or 14 positive numbers"):
        oks_sigmas(crowd, "0.1,0.2")


# ----------------------------------------------------------------------------- runtime
def test_person_search_and_tracker_find_the_torso_by_any_spelling():
    from demo.tracker import RoiTracker
    from mssh_keras import person_search as ps

    sk = coco.read_coco(COCO_JSON).skeleton
    assert ps.torso_joints(sk) == ((11, 12), (5, 6))
    kp = np.zeros((17, 2))
    kp[[11, 12]] = [[90, 200], [110, 200]]       # hips
    kp[[5, 6]] = [[90, 100], [110, 100]]         # shoulders
    assert ps.lean_angle(kp, np.ones(17, bool), sk) == pytest.approx(0.0)
    tracker = RoiTracker(sk)
    assert tracker.update(kp, np.ones(17), (640, 480)) and tracker.box is not None
    # A joint set without hips and shoulders (an animal, an object): tracked by the box of
    # its joints, no torso floor, no upright rotation; the search skips nothing else.
    tail = Skeleton("cat5", ("nose", "left_paw", "right_paw", "back", "tail"), ((1, 2),),
                    ((0, 3), (3, 4)))
    assert ps.torso_joints(tail) is None and ps.torso(np.zeros((5, 2)), np.ones(5, bool),
                                                      tail) == (None, None)
    t = RoiTracker(tail)
    pts = np.array([[10.0, 10.0], [30.0, 40.0], [40.0, 40.0], [35.0, 15.0], [60.0, 20.0]])
    assert t.update(pts, np.ones(5), (100, 100)) and t.rotation == 0.0
    x0, y0, x1, y1 = t.box
    assert x0 <= 10 and x1 >= 60 and y0 <= 10 and y1 >= 40
    with pytest.raises(ValueError, match="lacks hips/shoulders"):
        ps._torso_indices(tail)


def test_draw_pose_colours_a_coco_skeleton_by_its_names():
    from demo.draw import SIDE_COLORS, draw_pose

    sk = coco.read_coco(COCO_JSON).skeleton
    kp = np.zeros((17, 2))
    kp[[15, 13]] = [[50, 150], [50, 100]]        # the left shin: limb (15, 13)
    kp[[16, 14]] = [[150, 150], [150, 100]]      # the right shin: limb (16, 14)
    conf = np.zeros(17)
    conf[13:] = 1.0                              # only the shins are drawn
    img = draw_pose(np.zeros((200, 200, 3), np.uint8), kp, conf, sk, 0.3).astype(int)

    def nearest_side(px):
        return min(SIDE_COLORS, key=lambda s: np.abs(np.subtract(SIDE_COLORS[s], px)).sum())

    assert nearest_side(img[125, 50]) == "L" and nearest_side(img[125, 150]) == "R"
    assert img[:, 60:140].max() == 0


def test_training_refuses_inconsistent_coco_options(tmp_path):
    from mssh_keras.training import RunOptions, TrainingError, train

    with pytest.raises(TrainingError, match="--dataset coco needs --annotations"):
        train(RunOptions(dataset="coco", output_dir=str(tmp_path / "a")))
    with pytest.raises(TrainingError, match="only for --dataset coco"):
        train(RunOptions(dataset="lspet", annotations=str(COCO_JSON),
                         output_dir=str(tmp_path / "b")))
    with pytest.raises(TrainingError, match="--freeze-trunk-epochs needs --init"):
        train(RunOptions(dataset="coco", annotations=str(COCO_JSON), freeze_trunk_epochs=1,
                         output_dir=str(tmp_path / "c")))
    with pytest.raises(TrainingError, match=r"--init .*nothing.keras does not exist"):
        train(RunOptions(dataset="coco", annotations=str(COCO_JSON),
                         init=str(tmp_path / "nothing.keras"), output_dir=str(tmp_path / "d")))
    (tmp_path / "cut.keras").write_bytes(b"PK\x03\x04 cut off")
    with pytest.raises(TrainingError, match="cut.keras is not a Keras model"):
        train(RunOptions(dataset="coco", annotations=str(COCO_JSON),
                         init=str(tmp_path / "cut.keras"), output_dir=str(tmp_path / "e")))


def test_check_command_describes_a_file(capsys):
    assert coco.main([str(MMPOSE / "aic" / "test_aic.json")]) == 0
    out = capsys.readouterr().out
    assert "9 people with keypoints in 3 images, 14 joints" in out
    assert "Left Shoulder<->Right Shoulder" in out and "PCK torso: Left Shoulder - Right Hip" in out
    assert "usable: 9 people (6 train, 3 in the hold-out validation split)" in out
    assert coco.main([str(MMPOSE / "mpii" / "test_mpii.json")]) == 2
    assert "MPII/HRNet list" in capsys.readouterr().err
