"""Our shipped pose models vs MediaPipe BlazePose-full's landmark model: same people, same
crops, same PCK@0.2 code.

What is measured: PCK@0.2 (torso = GT left shoulder - right hip; ``metrics.lsp_report``,
the code ``evaluate.py`` scores with) on the LSPET validation people (our fixed split:
image numbers divisible by 10, 700 people), overall and per joint group (Head = head top
and neck, then shoulders, elbows, wrists, hips, knees, ankles: evaluate.py's columns).
Every model sees the same crop of each person (same centre, side and rotation); only the
crop's pixel size differs (ours: the model's input, 128x128; BlazePose: 256x256).

Crops (ground-truth box; the people are found by the annotation, not by a detector):

- ``gt-box``: the dataset's square person box (its centre/scale: the annotated joints'
  box, longer side x 1.25), axis-aligned; the crop ``evaluate.py --protocol gt-box`` takes.
- ``gt-box-upright``: that box turned so the ground-truth torso (hips midpoint ->
  shoulders midpoint, ``person_search.upright_rotation``) points straight up, BlazePose's
  own ROI convention: the turned square that contains the whole body box
  (``upright_square``, up to 1.41x its side; padded like the runtime pads a box), as
  BlazePose's ROI holds the whole body. (Our runtime's upright crop, what ``evaluate.py
  --protocol gt-box-upright`` takes, keeps the box's side instead, as our training turns
  crops: ``person_search.rotated_box_roi``. Given that smaller crop, BlazePose-full scored
  54.1 % instead of 63.2 %.) People without an annotated hip or shoulder keep the axis-aligned
  crop (counted in the JSON as ``not_turned``).

BlazePose: ``pose_landmark_full.tflite`` from the mediapipe 0.10.14 wheel
(``latency.fetch_anchor``: ``pip download``, no install), run with LiteRT. Input 1x256x256x3
float RGB in [0, 1]; output ``Identity`` (1, 195) = 39 landmarks x (x, y, z, visibility,
presence) in input pixels (continuous, 0 = the crop's left edge, so minus 0.5 for our
pixel-centre convention), the first 33 the body. Mapped to LSP-14 (MediaPipe's left is the
person's left, like LSP's, so no swap): ankles 27/28, knees 25/26, hips 23/24, wrists
15/16, elbows 13/14, shoulders 11/12 (left/right). LSP's ``neck`` (upper neck) and
``head_top`` have no BlazePose landmark; with S = mid-shoulders (11, 12), E = mid-ears
(7, 8) and d = E - S:

    neck     = S + a * d
    head_top = E + b * d

a and b are fitted by least squares (each person weighted by 1 / torso^2, so the fit
minimises the torso-normalised error PCK thresholds; then refitted once on the people
whose error is within 0.5 torso, so a person BlazePose missed entirely does not drag the
rule) on LSPET **training** people (``--fit-people``, default 400; upright GT-box crops), never on
the scored validation people. The fitted values, the people used and the residuals are in
the JSON (``head_rule``); the fit runs again on every run (a few seconds).

Rows: each of our models x {gt-box, gt-box-upright}, then BlazePose-full x the same two.
Below the table: the default (first) model minus each BlazePose row, in PCK@0.2 points,
with a 95 % paired bootstrap interval over the people (``metrics.paired_bootstrap``).

    python benchmarks/accuracy.py                                   # every models/*/model.tflite
    python benchmarks/accuracy.py --models runs/x/best.keras=new models/hg-lite-lspet/model.tflite
    python benchmarks/accuracy.py --max-people 50 --out /tmp/acc.json   # quick look

Writes ``benchmarks/results/accuracy.json`` (``--out``) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402 - after the sys.path lines

from mssh_keras import SHIPPED_MODEL_DIR, geometry, person_search  # noqa: E402
from mssh_keras.metrics import is_outcome_key, lsp_report, paired_bootstrap  # noqa: E402
from mssh_keras.skeleton import LSP14  # noqa: E402

LSPET = ROOT.parent / "shared" / "data" / "real" / "lspet_axelcarlier"
PROTOCOLS = ("gt-box", "gt-box-upright")
METRIC = "PCK@0.2"
BLAZEPOSE_LABEL = "BlazePose-full"
BLAZEPOSE_SIZE = 256
BLAZEPOSE_MODEL = "pose_landmark_full.tflite (MediaPipe 0.10.14), 256x256"
# BlazePose-33 indices (MediaPipe's names; left/right = the person's own, as in LSP).
BP = {"nose": 0, "l_ear": 7, "r_ear": 8, "l_shoulder": 11, "r_shoulder": 12,
      "l_elbow": 13, "r_elbow": 14, "l_wrist": 15, "r_wrist": 16, "l_hip": 23, "r_hip": 24,
      "l_knee": 25, "r_knee": 26, "l_ankle": 27, "r_ankle": 28}
# LSP-14 joints with a BlazePose landmark of the same name; neck/head_top come from the rule.
DIRECT = tuple(j for j in LSP14.joints if j in BP)
HEAD_JOINTS = ("neck", "head_top")
INLIER_TORSO = 0.5  # refit on people whose error is within this many torso lengths


# ----------------------------------------------------------------------------- mapping
def head_axis(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mid-shoulders S, mid-ears E) of (..., 33+, 2) BlazePose landmarks: the axis the
    neck/head-top rule extends along (ears sit at head height whatever the face's turn)."""
    lm = np.asarray(landmarks, np.float64)
    s = (lm[..., BP["l_shoulder"], :] + lm[..., BP["r_shoulder"], :]) / 2.0
    e = (lm[..., BP["l_ear"], :] + lm[..., BP["r_ear"], :]) / 2.0
    return s, e


def blazepose_to_lsp14(landmarks: np.ndarray, a: float, b: float) -> np.ndarray:
    """(..., 33+, 2) BlazePose landmarks -> (..., 14, 2) LSP-14 joints (LSP14.joints order).

    Limbs, hips and shoulders by name (both person-centric); neck = S + a (E - S),
    head_top = E + b (E - S) (see ``head_axis``). Affine-equivariant, so it can be applied
    in crop or image pixels alike."""
    lm = np.asarray(landmarks, np.float64)
    s, e = head_axis(lm)
    d = e - s
    derived = {"neck": s + a * d, "head_top": e + b * d}
    return np.stack([lm[..., BP[j], :] if j in BP else derived[j] for j in LSP14.joints],
                    axis=-2)


def _weighted_slope(base: np.ndarray, d: np.ndarray, target: np.ndarray,
                    w: np.ndarray) -> float:
    """argmin_t sum w ||base + t d - target||^2 (closed form of a 1-D least squares)."""
    num = float((w[:, None] * d * (target - base)).sum())
    den = float((w[:, None] * d * d).sum())
    if not den > 0:
        raise ValueError("no usable person to fit the head rule on")
    return num / den


def fit_head_rule(landmarks: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                  inlier_torso: float = INLIER_TORSO) -> dict:
    """Fit a (neck) and b (head top) of ``blazepose_to_lsp14`` by least squares.

    ``landmarks`` (N, 33+, 2) and ``gt`` (N, 14, 2) in the same (image) pixels, ``valid``
    (N, 14) annotated joints. Each person weighs 1 / torso^2 (GT l_shoulder - r_hip), so
    the fit minimises the error PCK measures; a second fit keeps the people whose error
    under the first is within ``inlier_torso`` torso lengths. Returns a, b and how."""
    from mssh_keras.metrics import torso_lengths

    lm, g = np.asarray(landmarks, np.float64), np.asarray(gt, np.float64)
    v = np.asarray(valid, bool)
    torso = torso_lengths(g, LSP14, v)
    s, e = head_axis(lm)
    d = e - s
    usable = np.isfinite(torso) & (torso > 0) & np.isfinite(d).all(-1)
    out: dict = {}
    for name, base in (("a", s), ("b", e)):
        joint = "neck" if name == "a" else "head_top"
        target = g[:, LSP14.index(joint)]
        m = usable & v[:, LSP14.index(joint)]
        w = 1.0 / torso[m] ** 2
        t0 = _weighted_slope(base[m], d[m], target[m], w)
        err = np.linalg.norm(base[m] + t0 * d[m] - target[m], axis=-1) / torso[m]
        keep = err <= inlier_torso
        t = _weighted_slope(base[m][keep], d[m][keep], target[m][keep], w[keep])
        err = np.linalg.norm(base[m] + t * d[m] - target[m], axis=-1) / torso[m]
        out[name] = t
        out[joint] = {"people": int(m.sum()), "inliers": int(keep.sum()),
                      "first_fit": round(t0, 4),
                      "median_error_torso": round(float(np.median(err)), 4),
                      "within_0.2_torso": round(float(np.mean(err <= 0.2)), 4)}
    return out


# ----------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class Roi:
    """One person's crop in image pixels: square ``side`` around ``center``, turned by
    ``rotation`` degrees (``geometry.crop_matrix``'s convention)."""
    center: tuple[float, float]
    side: float
    rotation: float = 0.0


def gt_rotation(record: dict) -> float | None:
    """Crop rotation that puts the annotated torso upright; None without hips/shoulders."""
    hips, shoulders = person_search.torso(record["joints"], np.asarray(record["flags"]) > 0,
                                          LSP14)
    return person_search.upright_rotation(hips, shoulders)


def upright_square(box, rotation: float) -> tuple[np.ndarray, float]:
    """Centre and side of the square, turned by ``rotation``, that contains ``box``: BlazePose's
    ROI holds the whole body, whatever its angle."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = abs(x1 - x0), abs(y1 - y0)
    c, s = abs(np.cos(np.deg2rad(rotation))), abs(np.sin(np.deg2rad(rotation)))
    side = max(w * c + h * s, w * s + h * c, 1.0)
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0]), float(side)


def person_rois(record: dict, padding: float = geometry.JOINT_BOX_PADDING) -> dict:
    """{protocol: Roi} for one person (``record``: a reader record with the dataset's
    ``center``/``scale``). gt-box is the dataset's crop; gt-box-upright turns the same box
    by the GT torso angle (BlazePose's convention: the turned square that holds the body
    box, then padded), or keeps it when the torso is not annotated (rotation None)."""
    center = tuple(float(v) for v in record["center"])
    scale = float(record["scale"])
    rois = {"gt-box": Roi(center, scale)}
    rot = gt_rotation(record)
    if rot is None:
        rois["gt-box-upright"] = Roi(center, scale)
        return rois
    body = person_search.square_box(center, scale / padding)   # the unpadded body box
    c, side = upright_square(body, rot)
    c2, side2 = geometry.box_to_center_scale(person_search.square_box(c, side), padding)
    rois["gt-box-upright"] = Roi(tuple(float(v) for v in c2), float(side2), rot)
    return rois


def crop(image: np.ndarray, roi: Roi, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``roi`` of ``image`` (RGB uint8) as a ``size`` x ``size`` uint8 crop, and its
    image->crop matrix: PoseEstimator.crop's warp (bilinear, black outside), any size."""
    import cv2

    m = geometry.crop_matrix(roi.center, roi.side, size, rotation=roi.rotation)
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out, m


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB uint8 (OpenCV reads BGR)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- models
# A model here: crop (S, S, 3) uint8 + its image->crop matrix -> LSP-14 (14, 2) in image
# pixels. ``input_size`` says S. Both kinds are scored by the same loop.
@dataclass
class Predictor:
    label: str
    input_size: int
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray]
    file: str | None = None


def ours(path: str | os.PathLike, label: str | None = None, threads: int = 2) -> Predictor:
    """One of our models through PoseEstimator (any backend): heatmaps, then the codec's
    decoding back through the crop matrix, exactly as ``predict`` does."""
    from mssh_keras.paths import portable_path
    from mssh_keras.runtime import PoseEstimator

    est = PoseEstimator(path, num_threads=threads)
    if est.skeleton.joints != LSP14.joints:
        raise ValueError(f"{path} predicts {est.skeleton.name}, not LSP-14")

    def predict(crop_rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        hm = est.heatmaps(crop_rgb[None].astype(np.float32))[0]
        return np.asarray(est.codec.decode(hm, m)[0], np.float64)

    return Predictor(label or default_label(path), est.input_size, predict,
                     portable_path(path))


def blazepose_runner(path: Path, threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """LiteRT BlazePose landmark model: (256, 256, 3) float RGB in [0, 1] -> raw (195,).
    The landmark output is found by its shape, not its position in the output list."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    if tuple(inp["shape"]) != (1, BLAZEPOSE_SIZE, BLAZEPOSE_SIZE, 3):
        raise ValueError(f"{path}: input {tuple(inp['shape'])}, expected 1x256x256x3")
    out = [o for o in it.get_output_details() if tuple(o["shape"]) == (1, 195)]
    if len(out) != 1:
        raise ValueError(f"{path}: no single (1, 195) landmark output")

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(inp["index"], np.ascontiguousarray(x[None], np.float32))
        it.invoke()
        return it.get_tensor(out[0]["index"])[0]

    return run


def blazepose_landmarks(raw: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Raw (195,) output of a crop -> the 33 body landmarks (x, y) in image pixels.
    MediaPipe's coordinates are continuous (0 = the crop's edge): -0.5 gives pixel centres."""
    lm = np.asarray(raw, np.float64).reshape(39, 5)[:33, :2] - 0.5
    return geometry.transform_points(lm, geometry.invert_affine(m))


def blazepose(runner: Callable[[np.ndarray], np.ndarray], a: float, b: float,
              label: str = BLAZEPOSE_LABEL, file: str | None = None) -> Predictor:
    """BlazePose as a Predictor: its landmarks mapped to LSP-14 with the fitted rule."""
    def predict(crop_rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        raw = runner(crop_rgb.astype(np.float32) / 255.0)
        return blazepose_to_lsp14(blazepose_landmarks(raw, m), a, b)

    return Predictor(label, BLAZEPOSE_SIZE, predict, file)


def default_label(path: str | os.PathLike) -> str:
    """models/<name>/model.tflite -> <name>; other files -> their file name."""
    p = Path(path)
    return p.parent.name if p.stem == "model" else p.name


def default_models() -> list[Path]:
    """Every shipped models/*/model.tflite, the default shipped model first."""
    found = sorted((ROOT / "models").glob("*/model.tflite"))
    first = [p for p in found if p.parent.name == SHIPPED_MODEL_DIR.name]
    return first + [p for p in found if p not in first]


# ----------------------------------------------------------------------------- scoring
def predict_people(records: Sequence[dict], predictors: Sequence[Predictor],
                   protocols: Iterable[str] = PROTOCOLS, echo=None) -> dict:
    """{(label, protocol): (N, 14, 2) predictions in image pixels} for every person. Each
    image is read once and every model gets the same Roi of it (its own pixel size)."""
    protocols = tuple(protocols)
    preds = {(p.label, pr): [] for p in predictors for pr in protocols}
    t0 = time.time()
    for i, rec in enumerate(records):
        image = read_rgb(rec["path"])
        rois = person_rois(rec)
        for pr in protocols:
            for p in predictors:
                preds[(p.label, pr)].append(p.predict(*crop(image, rois[pr], p.input_size)))
        if echo and (i + 1) % 100 == 0:
            echo(f"  {i + 1}/{len(records)} people, {time.time() - t0:.0f} s")
    return {k: np.stack(v) for k, v in preds.items()}


def score(records: Sequence[dict], preds: np.ndarray) -> dict:
    """The LSP report (``metrics.lsp_report``, evaluate.py's code) of (N, 14, 2)
    predictions against the records' annotated joints."""
    gt = np.stack([r["joints"] for r in records])
    valid = np.stack([r["flags"] for r in records]) > 0
    report = lsp_report(preds, gt, valid, LSP14)
    report["per_example"]["image_id"] = [r["image_id"] for r in records]
    return report


def score_people(records: Sequence[dict], predictors: Sequence[Predictor],
                 protocols: Iterable[str] = PROTOCOLS, echo=None) -> list[dict]:
    """One row per model x protocol (model order, then protocol): label, protocol, PCK
    table, per joint, people, per-person hits/counted (for the paired bootstrap)."""
    protocols = tuple(protocols)
    preds = predict_people(records, predictors, protocols, echo)
    not_turned = sum(gt_rotation(r) is None for r in records)
    rows = []
    for p in predictors:
        for pr in protocols:
            rep = score(records, preds[(p.label, pr)])
            rows.append({"label": p.label, "protocol": pr, "file": p.file,
                         "input_size": p.input_size, "people": rep["num_examples"],
                         "tables": {METRIC: rep["tables"][METRIC]},
                         "per_joint": rep["per_joint"][METRIC],
                         "joint_counts": rep["joint_counts"],
                         "not_turned": not_turned if pr == "gt-box-upright" else None,
                         # per-person totals (the paired bootstrap needs no more)
                         "per_example": {k: v for k, v in rep["per_example"].items()
                                         if not is_outcome_key(k)}})
    return rows


def compare(rows: Sequence[dict], label: str, others: str, samples: int = 2000) -> list[dict]:
    """``label``'s rows minus each row of ``others`` (PCK@0.2 Total, points) with a 95 %
    paired bootstrap interval over the people (the same people in the same order)."""
    out = []
    mine = [r for r in rows if r["label"] == label]
    theirs = [r for r in rows if r["label"] == others]
    for a in mine:
        for b in theirs:
            ea, eb = a["per_example"], b["per_example"]
            if ea["image_id"] != eb["image_id"]:
                raise ValueError(f"{a['label']} and {b['label']} scored different people")
            d, lo, hi = paired_bootstrap(ea[f"{METRIC} hits"], ea[f"{METRIC} counted"],
                                         eb[f"{METRIC} hits"], eb[f"{METRIC} counted"],
                                         samples)
            out.append({"a": f"{a['label']} {a['protocol']}",
                        "b": f"{b['label']} {b['protocol']}",
                        "difference": round(d, 2), "ci95": [round(lo, 2), round(hi, 2)]})
    return out


def markdown(rows: Sequence[dict], comparisons: Sequence[dict]) -> str:
    """The rows as a Markdown table, then the differences."""
    cols = list(rows[0]["tables"][METRIC])
    cols = ["Total"] + [c for c in cols if c != "Total"]
    out = [f"| model | crop | input | {METRIC} | " + " | ".join(cols[1:]) + " | people |",
           "|---" * (len(cols) + 4) + "|"]
    for r in rows:
        t = r["tables"][METRIC]
        out.append(f"| {r['label']} | {r['protocol']} | {r['input_size']} | "
                   + " | ".join(f"{t[c]:.1f}" for c in cols) + f" | {r['people']} |")
    if comparisons:
        out += ["", f"| difference ({METRIC} points) | vs | 95 % interval |", "|---|---|---|"]
        out += [f"| {c['a']} | {c['b']} | {c['difference']:+.1f} "
                f"[{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}] |" for c in comparisons]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- run
def fit_on_training_people(records: Sequence[dict],
                           runner: Callable[[np.ndarray], np.ndarray]) -> dict:
    """BlazePose on the upright GT-box crops of ``records`` (training people: its own
    ROI convention, where its landmarks are right most often), then ``fit_head_rule``
    against their annotations."""
    lms = []
    for rec in records:
        c, m = crop(read_rgb(rec["path"]), person_rois(rec)["gt-box-upright"], BLAZEPOSE_SIZE)
        lms.append(blazepose_landmarks(runner(c.astype(np.float32) / 255.0), m))
    return fit_head_rule(np.stack(lms), np.stack([r["joints"] for r in records]),
                         np.stack([r["flags"] for r in records]) > 0)


def spread(records: list[dict], n: int | None) -> list[dict]:
    """``n`` records evenly spread over the list (all when n is None or larger)."""
    if n is None or n >= len(records):
        return list(records)
    return [records[i] for i in np.linspace(0, len(records) - 1, n).round().astype(int)]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", metavar="PATH[=LABEL]",
                    help="our models (.tflite, .keras, any PoseEstimator file); the first "
                         "is the default the differences are for (default: every "
                         "models/*/model.tflite, the shipped one first)")
    ap.add_argument("--data-dir", type=Path, default=LSPET,
                    help="LSPET's official files: joints.mat and images/ (default: %(default)s)")
    ap.add_argument("--max-people", type=int, help="only N validation people (evenly spread)")
    ap.add_argument("--fit-people", type=int, default=400,
                    help="LSPET training people the head rule is fitted on (evenly spread)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="where latency.py's fetch_anchor keeps BlazePose")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # latency.py, next to this file
    from latency import DEFAULT_CACHE, fetch_anchor
    from mssh_keras.data.lspet import read_lspet
    from mssh_keras.paths import portable_path, write_json_atomic
    from mssh_keras.result_files import jsonable

    specs = [m.split("=", 1) if "=" in m else (m, None) for m in (args.models or [])] \
        or [(str(p), None) for p in default_models()]
    if not specs:
        print("error: no model: models/*/model.tflite is empty; pass --models",
              file=sys.stderr)
        return 2
    anchor, status = fetch_anchor(args.cache_dir or DEFAULT_CACHE)
    if anchor is None:
        print(f"error: BlazePose is not available: {status}", file=sys.stderr)
        return 2
    runner = blazepose_runner(anchor, args.threads)
    train = spread(read_lspet(args.data_dir, "train"), args.fit_people)
    print(f"fitting the neck/head-top rule on {len(train)} LSPET training people...",
          flush=True)
    rule = fit_on_training_people(train, runner)
    print(f"  neck = S + {rule['a']:.3f} (E - S), head_top = E + {rule['b']:.3f} (E - S)")
    val = spread(read_lspet(args.data_dir, "val"), args.max_people)
    predictors = [ours(path, label, args.threads) for path, label in specs]
    predictors.append(blazepose(runner, rule["a"], rule["b"], file=portable_path(anchor)))
    print(f"scoring {len(predictors)} models x {len(PROTOCOLS)} crops on {len(val)} LSPET "
          f"validation people...", flush=True)
    load_start = os.getloadavg()
    rows = score_people(val, predictors, PROTOCOLS, echo=lambda s: print(s, flush=True))
    comparisons = compare(rows, predictors[0].label, BLAZEPOSE_LABEL, args.bootstrap)
    table = markdown(rows, comparisons)
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": {"dataset": "lspet", "split": "val", "folder": portable_path(args.data_dir),
                 "people": len(val), "image_ids": [r["image_id"] for r in val]},
        "metric": f"{METRIC} (torso = GT l_shoulder - r_hip), metrics.lsp_report",
        "crops": {"gt-box": "the dataset's square person box (centre/scale), axis-aligned",
                  "gt-box-upright": "that box turned so the GT hips->shoulders point up "
                                    "(person_search.upright_rotation; upright_square: the turned "
                                    "square holding the whole box, "
                                    "padded 1.25); not turned without a GT torso"},
        "blazepose": {"model": BLAZEPOSE_MODEL, "file": portable_path(anchor),
                      "fetched": status, "input": "1x256x256x3 float RGB in [0, 1]",
                      "mapping": {j: f"BlazePose {BP[j]}" for j in DIRECT}},
        "head_rule": {"neck": "S + a (E - S)", "head_top": "E + b (E - S)",
                      "S": "mid-shoulders (11, 12)", "E": "mid-ears (7, 8)",
                      "fitted_on": f"{len(train)} LSPET train people (evenly spread), "
                                   f"upright GT-box crops",
                      "method": "least squares weighted by 1/torso^2, refit on people "
                                f"within {INLIER_TORSO} torso", **rule},
        "settings": {"threads": args.threads, "bootstrap": args.bootstrap,
                     "loadavg_start": [round(v, 2) for v in load_start],
                     "platform": platform.platform()},
        "rows": rows, "differences": comparisons, "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, jsonable(report), indent=1)
    print()
    print(table)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
