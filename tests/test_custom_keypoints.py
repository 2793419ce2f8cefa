"""The whole path for a COCO-format dataset with its own joint set, on real files:
train (mmpose's COCO sample), evaluate (box PCK, torso PCK, pycocotools AP), export to the
three formats with verification, run PoseEstimator and the demo on the result, and
fine-tune onto another joint set (CrowdPose's 14) with the trunk frozen for an epoch.

Networks are tiny (conftest.TINY) and trained for 2 steps: the numbers are smoke figures,
the tests check the plumbing. The two trainings are shared through module fixtures.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REAL_DATA, TINY

MMPOSE = REAL_DATA / "mmpose_testdata" / "tests" / "data"
COCO_JSON = MMPOSE / "coco" / "test_coco.json"
CROWD_JSON = MMPOSE / "crowdpose" / "test_crowdpose.json"
OCHUMAN_JSON = MMPOSE / "ochuman" / "test_ochuman.json"
TIMES: dict[str, float] = {}


def _joints(path: Path) -> list[str]:
    return json.loads(path.read_text())["categories"][0]["keypoints"]


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    from mssh_keras.training import RunOptions, train

    out = tmp_path_factory.mktemp("coco") / "run"
    t0 = time.time()
    result = train(RunOptions(preset="hg-lite", dataset="coco", annotations=str(COCO_JSON),
                              output_dir=str(out), epochs=1, steps_per_epoch=2, batch_size=4,
                              model_overrides=TINY, verbose=0, val_examples=16))
    TIMES["train coco"] = time.time() - t0
    return {"dir": out, "result": result, "model": out / "final.keras"}


def test_command_line_options_reach_the_run():
    import train as train_cli
    from mssh_keras.training import RunOptions

    args = train_cli.parse_args(["--dataset", "coco", "--annotations", "a.json", "--images",
                                 "img", "--val-annotations", "v.json", "--flip-pairs", "none",
                                 "--init", "m.keras", "--freeze-trunk-epochs", "2"])
    opts = RunOptions(**vars(args))
    assert (opts.annotations, opts.images, opts.val_annotations, opts.flip_pairs, opts.init,
            opts.freeze_trunk_epochs) == ("a.json", "img", "v.json", "none", "m.keras", 2)


def test_training_records_the_skeleton(coco_run):
    config = json.loads((coco_run["dir"] / "run_config.json").read_text())
    assert config["skeleton"] == "person17"
    sk = config["skeleton_definition"]
    assert sk["joints"] == _joints(COCO_JSON) and sk["torso_pair"] == [5, 12]
    assert sk["flip_pairs"][0] == [1, 2] and sk["limbs"][0] == [15, 13]
    assert config["options"]["annotations"] and config["options"]["dataset"] == "coco"
    tables = coco_run["result"]["report"]["tables"]
    assert set(tables) == {"PCK (box)", "PCK@0.2 (torso)"}
    rows = list(csv.DictReader(open(coco_run["dir"] / "history.csv")))
    assert len(rows) == 1 and "val_pck" in rows[0]
    assert coco_run["model"].is_file()


def test_evaluate_scores_pck_and_coco_ap(coco_run, tmp_path, capsys):
    import evaluate

    out = tmp_path / "eval"
    t0 = time.time()
    rc = evaluate.main(["--model", str(coco_run["model"]), "--annotations", str(COCO_JSON),
                        "--split", "all", "--output-dir", str(out)])
    TIMES["evaluate coco"] = time.time() - t0
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "OKS (GT boxes)" in printed.out and "PCK (box)" in printed.out
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "coco" and report["num_examples"] == 7
    ap = report["tables"]["OKS (GT boxes)"]["AP"]
    assert ap is not None and 0.0 <= ap <= 100.0
    assert report["coco"]["sigmas_from"] == "COCO's"
    for value in report["tables"]["PCK (box)"].values():
        assert 0.0 <= value <= 100.0
    # The COCO results file is what pycocotools reads, with the file's own ids.
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(COCO_JSON))
        dt = gt.loadRes(str(out / "predictions_coco.json"))
    assert len(dt.getAnnIds()) == 7 and set(dt.getImgIds()) == {785, 40083, 196141}
    preds = json.loads((out / "predictions.json").read_text())
    assert preds["joint_names"] == _joints(COCO_JSON) and not (out / "predictions.mat").exists()
    # Another real file with the same 17 joints (OCHuman) scores too; another joint set is
    # refused with both lists of joints.
    rc = evaluate.main(["--model", str(coco_run["model"]), "--annotations", str(OCHUMAN_JSON),
                        "--split", "all", "--output-dir", str(tmp_path / "och"),
                        "--oks-sigmas", "0.08"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "och" / "report.json").read_text())
    assert rep["num_examples"] == 5 and rep["coco"]["sigmas_from"] == "given (--oks-sigmas)"
    rc = evaluate.main(["--model", str(coco_run["model"]), "--annotations", str(CROWD_JSON),
                        "--output-dir", str(tmp_path / "x")])
    assert rc == 2 and "predicts the joints" in capsys.readouterr().err


@pytest.fixture(scope="module")
def exported(coco_run, tmp_path_factory):
    import export as export_cli

    out = tmp_path_factory.mktemp("coco_export")
    t0 = time.time()
    rc = export_cli.main(["--model", str(coco_run["model"]), "--format", "all",
                          "--output-dir", str(out), "--name", "person", "--verify-samples",
                          "8"])
    TIMES["export all formats"] = time.time() - t0
    assert rc == 0
    return {"dir": out, "tflite": out / "person.tflite", "onnx": out / "person.onnx",
            "savedmodel": out / "person_saved_model"}


def test_export_verifies_every_format_and_carries_the_skeleton(exported):
    joints = _joints(COCO_JSON)
    for fmt in ("tflite", "onnx", "savedmodel"):
        path = exported[fmt]
        verify = json.loads(path.with_name(path.name + ".verify.json").read_text())
        assert verify["passed"], verify
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        sk = meta["skeleton"]
        assert sk["name"] == "person17" and sk["joints"] == joints
        assert sk["limbs"][0] == [15, 13] and sk["flip_permutation"][1:3] == [2, 1]


def test_pose_estimator_runs_every_exported_format(exported):
    from mssh_keras.runtime import PoseEstimator

    image = cv2.cvtColor(cv2.imread(str(COCO_JSON.parent / "000000000785.jpg")),
                         cv2.COLOR_BGR2RGB)
    box = (280.79, 44.73, 280.79 + 218.7, 44.73 + 346.68)
    poses = {}
    for fmt in ("tflite", "onnx", "savedmodel"):
        est = PoseEstimator(exported[fmt])
        assert est.skeleton.joints == tuple(_joints(COCO_JSON))
        assert est.skeleton.flip_permutation[5:7] == [6, 5]
        poses[fmt] = est.predict(image, box)
        assert poses[fmt].keypoints.shape == (17, 2)
        assert np.isfinite(poses[fmt].keypoints).all()
        # Without a box: the person search, which finds hips and shoulders by COCO's names.
        found = est.predict(image, flip_test=True)
        assert found.keypoints.shape == (17, 2) and found.model_calls >= 1
        upright = est.predict(image, box, upright=True)
        assert upright.model_calls >= 1
    np.testing.assert_allclose(poses["onnx"].keypoints, poses["tflite"].keypoints, atol=0.5)


def test_demo_draws_the_custom_skeleton(exported, tmp_path, capsys):
    from demo import app

    folder = tmp_path / "photos"
    folder.mkdir()
    photos = sorted(COCO_JSON.parent.glob("*.jpg"))
    for p in photos:
        (folder / p.name).symlink_to(p)
    out = tmp_path / "run.mp4"
    rc = app.main(["--headless", "--source", str(folder), "--model", str(exported["tflite"]),
                   "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["skeleton"]["joints"] == _joints(COCO_JSON)
    assert doc["skeleton"]["limbs"][0] == [15, 13]
    assert len(doc["frames"]) == len(photos)
    assert all(len(f["keypoints"]) == 17 for f in doc["frames"])


# ----------------------------------------------------------------------------- fine-tuning
def _trunk(network) -> dict:
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in network.layers if layer.name.startswith("pre_") and layer.weights}


def test_transfer_copies_joints_by_name_and_rebuilds_heads():
    from mssh_keras.config import ModelConfig
    from mssh_keras.finetune import InitError, InitModel, transfer_weights
    from mssh_keras.model import build_network

    coco17, crowd14 = _joints(COCO_JSON), _joints(CROWD_JSON)
    cfg = ModelConfig(**{**TINY, "schedule": (8, 8)})
    src = build_network(cfg.replace(num_joints=17), name="hg_lite")
    rng = np.random.default_rng(0)
    src.set_weights([rng.normal(size=w.shape).astype("float32") for w in src.get_weights()])
    dst = build_network(cfg.replace(num_joints=14), name="hg_lite")
    done = transfer_weights(dst, InitModel(Path("x.keras"), src, None, tuple(coco17), None),
                            tuple(crowd14))
    assert done["heads"] == "rebuilt" and len(done["joints_copied"]) == 12  # not head, neck
    k_src, b_src = src.get_layer("stack1").get_weights()
    k_dst, b_dst = dst.get_layer("stack1").get_weights()
    for i, name in enumerate(crowd14[:12]):
        j = coco17.index(name)
        np.testing.assert_array_equal(k_dst[..., i], k_src[..., j])
        assert b_dst[i] == b_src[j]
    remap_src = src.get_layer("s1_remap_heatmaps").get_weights()[0]
    remap = dst.get_layer("s1_remap_heatmaps").get_weights()[0]
    assert (remap[:, :, 12:] == 0).all()  # head, neck: new joints start silent
    np.testing.assert_array_equal(remap[:, :, 0], remap_src[:, :, coco17.index("left_shoulder")])
    for name, weights in _trunk(src).items():
        for a, b in zip(weights, dst.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    # Same joints: everything loads; another architecture: refused, naming the file.
    same = build_network(cfg.replace(num_joints=17), name="hg_lite")
    assert transfer_weights(same, InitModel(Path("x.keras"), src, None, tuple(coco17), None),
                            tuple(coco17))["heads"] == "loaded"
    other = build_network(cfg.replace(num_joints=17, filters=32), name="hg_lite")
    with pytest.raises(InitError, match=r"--init x.keras .*another architecture"):
        transfer_weights(other, InitModel(Path("x.keras"), src, None, None, None),
                         tuple(coco17))


def test_the_shipped_model_initialises_a_coco_network():
    """--init models/hg-lite-lspet/model.keras for COCO's 17 joints: its metadata gives the
    architecture and the preset, its 14 LSP joints give 12 COCO joints by name."""
    from mssh_keras import SHIPPED_MODEL_DIR
    from mssh_keras.config import ModelConfig
    from mssh_keras.finetune import read_init, transfer_weights
    from mssh_keras.model import build_network
    from mssh_keras.skeleton import LSP14

    init = read_init(SHIPPED_MODEL_DIR / "model.keras")
    assert init.preset == "hg-lite" and init.joints == LSP14.joints and init.config
    coco17 = tuple(_joints(COCO_JSON))
    net = build_network(ModelConfig(**{**init.config, "num_joints": 17}), name="hg_lite")
    done = transfer_weights(net, init, coco17)
    assert done["heads"] == "rebuilt" and len(done["joints_copied"]) == 12
    assert "nose" not in done["joints_copied"] and "left_knee" in done["joints_copied"]
    last = f"stack{len(init.network.outputs)}"
    old_k = init.network.get_layer(last).get_weights()[0]
    new_k = net.get_layer(last).get_weights()[0]
    np.testing.assert_array_equal(new_k[..., coco17.index("left_knee")],
                                  old_k[..., LSP14.index("l_knee")])


@pytest.fixture(scope="module")
def finetuned(coco_run, tmp_path_factory):
    """CrowdPose's 14 joints from the COCO-17 run, trunk frozen for the first of 2 epochs;
    the trunk's weights are recorded at the end of each epoch."""
    import keras

    from mssh_keras import training
    from mssh_keras.callbacks import Checkpointer

    snapshots = []

    class Recording(Checkpointer):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(_trunk(self.network))
            super().on_epoch_end(epoch, logs)

    out = tmp_path_factory.mktemp("finetune") / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(training, "Checkpointer", Recording)
    t0 = time.time()
    try:
        result = training.train(training.RunOptions(
            preset="hg-lite", dataset="coco", annotations=str(CROWD_JSON), output_dir=str(out),
            epochs=2, steps_per_epoch=2, batch_size=4, verbose=0, val_examples=16,
            init=str(coco_run["model"]), freeze_trunk_epochs=1))
    finally:
        mp.undo()
    TIMES["fine-tune crowdpose (2 epochs)"] = time.time() - t0
    init = _trunk(keras.saving.load_model(str(coco_run["model"]), compile=False))
    return {"dir": out, "result": result, "snapshots": snapshots, "init": init}


def test_fine_tuning_keeps_the_trunk_frozen_then_trains_it(finetuned):
    init, (after1, after2) = finetuned["init"], finetuned["snapshots"]
    assert set(init) == set(after1)
    for name, weights in init.items():  # weights and BatchNorm statistics untouched
        for a, b in zip(weights, after1[name]):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for name in init
               for a, b in zip(after1[name], after2[name]))
    rows = list(csv.DictReader(open(finetuned["dir"] / "history.csv")))
    assert [float(r["trunk_frozen"]) for r in rows] == [1.0, 0.0]
    config = json.loads((finetuned["dir"] / "run_config.json").read_text())
    assert config["skeleton_definition"]["joints"] == _joints(CROWD_JSON)
    assert config["model"]["num_joints"] == 14 and config["model"]["filters"] == TINY["filters"]
    final = finetuned["dir"] / "final.keras"
    import keras
    net = keras.saving.load_model(str(final), compile=False)
    assert net.outputs[0].shape[-1] == 14 and all(layer.trainable for layer in net.layers)


def test_fine_tuned_model_evaluates_with_its_own_skeleton(finetuned):
    from mssh_keras.data.coco import CocoSource
    from mssh_keras.evaluator import evaluate_model

    report, preds = evaluate_model(finetuned["dir"] / "final.keras", "coco", "all",
                                   coco=CocoSource(str(CROWD_JSON)))
    assert report["num_examples"] == 4 and preds["pred"].shape == (4, 14, 2)
    assert "12 of 14" in report["coco"]["sigmas_from"]
    assert "OKS (GT boxes)" in report["tables"] and "PCK@0.2 (torso)" in report["tables"]
    # The per-image protocols (PoseEstimator.predict) work on the COCO file's people too.
    upright, preds = evaluate_model(finetuned["dir"] / "final.keras", "coco", "all",
                                    coco=CocoSource(str(CROWD_JSON)), limit=2,
                                    protocol="gt-box-upright")
    assert upright["num_examples"] == 2 and upright["inference"]["mean_model_calls"] >= 1
    assert len(upright["per_example"]["lean_deg"]) == 2


def test_report_times():
    """Not a check: prints how long the shared steps took (pytest -s shows it)."""
    for what, seconds in TIMES.items():
        print(f"{what}: {seconds:.0f} s")
