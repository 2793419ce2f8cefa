"""PCK, strict PCP and PCKh in the standard evaluation protocols (pure numpy, no TensorFlow).

Inputs everywhere: ``pred`` and ``gt`` (N, K, 2) as (x, y) image pixels (any consistent
origin: only differences matter), a boolean (N, K) mask of joints that count, and a
skeleton from skeleton.py. A single example (K, 2) is accepted too.

Protocols followed (comparisons are ``<=``, as in all of them):
- PCK@0.2 (LSP): correct if ||pred - gt|| <= 0.2 x torso, torso = ||l_shoulder - r_hip|| of
  the GT (bearpaw/eval_pose ``eval_pck.m``, Sapp & Taskar). Table columns average the
  per-joint values of left and right (Head = head top and neck); Total pools every counted
  joint, exactly like that code.
- strict PCP@0.5: a limb is correct if *both* predicted endpoints are within 0.5 x the GT
  limb length of their GT endpoints (``eval_pcp.m``). Columns average the limbs of a type
  (skeleton.pcp_limbs); Total pools every counted limb.
- PCKh@0.5 (MPII): official ``evaluatePCKh`` / bearpaw ``eval_PCKh.py`` / HRNet: head size =
  0.6 x the head-box diagonal, only annotated joints count, Head = head top, the paired
  columns average left and right, Mean is weighted by joint counts and leaves out
  skeleton.pckh_excluded (pelvis, thorax).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from .skeleton import MPII16, Skeleton, skeleton_for_joints

SC_BIAS = 0.6  # MPII head size = SC_BIAS x head-box diagonal (official evaluation)

# Paper columns -> joint names (whichever exist in the skeleton).
_PCK_COLUMNS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "neck", "upper_neck"),
    "Sho.": ("r_shoulder", "l_shoulder"),
    "Elb.": ("r_elbow", "l_elbow"),
    "Wri.": ("r_wrist", "l_wrist"),
    "Hip": ("r_hip", "l_hip"),
    "Knee": ("r_knee", "l_knee"),
    "Ank.": ("r_ankle", "l_ankle"),
}
# MPII's standard table: Head is the head top alone.
_PCKH_COLUMNS = {**_PCK_COLUMNS, "Head": ("head_top",)}
PCP_COLUMNS = ("Torso", "U.Leg", "L.Leg", "U.Arm", "Forearm", "Head")


# ----------------------------------------------------------------------------- inputs
def _as_batch(pred, gt, mask, what: str = "valid") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    m = np.asarray(mask)
    if p.ndim == 2:  # a single example
        p = p[None]
        g = g[None] if g.ndim == 2 else g
        m = m[None] if m.ndim == 1 else m
    if p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"pred must be (N, K, 2) or (K, 2), got shape {np.shape(pred)}")
    if g.shape != p.shape:
        raise ValueError(f"gt shape {np.shape(gt)} does not match pred shape {np.shape(pred)}")
    if m.shape != p.shape[:2]:
        raise ValueError(f"{what} must be (N, K) = {p.shape[:2]}, got shape {np.shape(mask)}")
    m = m.astype(bool)
    if not np.isfinite(g[m]).all():
        raise ValueError(f"gt has non-finite coordinates at joints marked {what}")
    return p, g, m


def _per_example(values, n: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"{what} must have one value per example ({n}), got shape "
                         f"{np.shape(values)}")
    return v


def _percent(hits: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Column-wise 100 * hits / counted, NaN where nothing counted."""
    n = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, 100.0 * (hits & counted).sum(axis=0) / np.maximum(n, 1), np.nan)


def _nanmean(values: Sequence[float]) -> float:
    vals = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else math.nan


def _pooled(hits: np.ndarray, counted: np.ndarray) -> float:
    n = int(counted.sum())
    return 100.0 * int((hits & counted).sum()) / n if n else math.nan


def _skeleton_for(k: int, skeleton: Skeleton | None) -> Skeleton:
    if skeleton is None:
        try:
            return skeleton_for_joints(k)
        except ValueError as e:
            raise ValueError(f"{e}; pass skeleton= explicitly") from None
    if skeleton.num_joints != k:
        raise ValueError(f"skeleton {skeleton.name} has {skeleton.num_joints} joints, "
                         f"the arrays have {k}")
    return skeleton


def _columns(per_joint: np.ndarray, skeleton: Skeleton,
             columns: Mapping[str, tuple[str, ...]]) -> dict[str, float]:
    out = {}
    for col, names in columns.items():
        idx = [skeleton.index(nm) for nm in names if nm in skeleton.joints]
        out[col] = _nanmean(per_joint[idx]) if idx else math.nan
    return out


# ----------------------------------------------------------------------------- PCK
def torso_lengths(gt: np.ndarray, skeleton: Skeleton, valid: np.ndarray | None = None
                  ) -> np.ndarray:
    """(N,) GT distance between skeleton.torso_pair (left shoulder - right hip).

    NaN where either joint is not ``valid`` (such examples then count for nothing in pck).
    """
    if skeleton.torso_pair is None:
        raise ValueError(f"skeleton {skeleton.name} defines no torso_pair for PCK")
    g = np.asarray(gt, dtype=np.float64)
    if g.ndim == 2:
        g = g[None]
    if g.ndim != 3 or g.shape[1:] != (skeleton.num_joints, 2):
        raise ValueError(f"gt must be (N, {skeleton.num_joints}, 2) for {skeleton.name}, "
                         f"got shape {np.shape(gt)}")
    a, b = skeleton.torso_pair
    length = np.linalg.norm(g[:, a] - g[:, b], axis=-1)
    if valid is not None:
        v = np.asarray(valid, bool).reshape(g.shape[:2])
        length = np.where(v[:, a] & v[:, b], length, np.nan)
    return length


def pck_hits(pred, gt, valid, ref_lengths, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(hits, counted), both (N, K) bool: counted = valid joint of an example whose reference
    length is finite and > 0; hit = error <= threshold x reference length."""
    p, g, v = _as_batch(pred, gt, valid)
    ref = _per_example(ref_lengths, p.shape[0], "ref_lengths")
    ok = np.isfinite(ref) & (ref > 0)
    counted = v & ok[:, None]
    err = np.linalg.norm(p - g, axis=-1)
    with np.errstate(invalid="ignore"):
        hits = counted & (err <= threshold * np.where(ok, ref, 0.0)[:, None])
    return hits, counted


def pck(pred, gt, valid, ref_lengths, threshold: float) -> np.ndarray:
    """Per-joint PCK in % (K,), NaN for a joint that is never counted (see pck_hits)."""
    hits, counted = pck_hits(pred, gt, valid, ref_lengths, threshold)
    return _percent(hits, counted)


# ----------------------------------------------------------------------------- PCP
def pcp_hits(pred, gt, valid, skeleton: Skeleton, threshold: float = 0.5
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Strict PCP per limb type: {type: (hits, counted)}, each (N, L_type) bool.

    A limb counts when both GT endpoints are valid; it is a hit when both predicted
    endpoints lie within threshold x GT limb length of their GT endpoints.
    """
    p, g, v = _as_batch(pred, gt, valid)
    _skeleton_for(p.shape[1], skeleton)
    if not skeleton.pcp_limbs:
        raise ValueError(f"skeleton {skeleton.name} defines no pcp_limbs")
    err = np.linalg.norm(p - g, axis=-1)
    out = {}
    for name, limbs in skeleton.pcp_limbs.items():
        a = np.array([l[0] for l in limbs])
        b = np.array([l[1] for l in limbs])
        length = np.linalg.norm(g[:, a] - g[:, b], axis=-1)
        counted = v[:, a] & v[:, b]
        with np.errstate(invalid="ignore"):
            tol = threshold * np.where(counted, length, 0.0)
            hits = counted & (err[:, a] <= tol) & (err[:, b] <= tol)
        out[name] = (hits, counted)
    return out


def pcp(pred, gt, valid, skeleton: Skeleton, threshold: float = 0.5) -> dict[str, float]:
    """Strict PCP in %: {Torso, U.Leg, L.Leg, U.Arm, Forearm, Head, Total}.

    A type's value is the mean of its limbs' percentages (left/right averaged, as
    eval_pcp.m); Total pools all counted limbs. NaN where nothing was counted.
    """
    per_type = pcp_hits(pred, gt, valid, skeleton, threshold)
    out = {}
    for name in PCP_COLUMNS:
        if name in per_type:
            out[name] = _nanmean(_percent(*per_type[name]))
        else:
            out[name] = math.nan
    hits = np.concatenate([h for h, _ in per_type.values()], axis=1)
    counted = np.concatenate([c for _, c in per_type.values()], axis=1)
    out["Total"] = _pooled(hits, counted)
    return out


# ----------------------------------------------------------------------------- PCKh
def head_sizes_from_boxes(headboxes) -> np.ndarray:
    """(N, 2, 2) head boxes ((x1, y1), (x2, y2)) -> (N,) head sizes = 0.6 x diagonal.

    The MPII evaluation file stores them as ``headboxes_src`` (2, 2, N): pass
    ``headboxes_src.transpose(2, 0, 1)``.
    """
    hb = np.asarray(headboxes, dtype=np.float64)
    if hb.ndim == 2:
        hb = hb[None]
    if hb.ndim != 3 or hb.shape[1:] != (2, 2):
        raise ValueError(f"headboxes must be (N, 2, 2) as ((x1, y1), (x2, y2)), got shape "
                         f"{np.shape(headboxes)} (MATLAB's headboxes_src needs "
                         f".transpose(2, 0, 1))")
    return SC_BIAS * np.linalg.norm(hb[:, 1] - hb[:, 0], axis=-1)


def pckh_hits(pred, gt, visible, head_sizes, threshold: float = 0.5
              ) -> tuple[np.ndarray, np.ndarray]:
    """(hits, counted) (N, K) bool; hit = ||pred - gt|| / head_size <= threshold."""
    p, g, v = _as_batch(pred, gt, visible, what="visible")
    hs = _per_example(head_sizes, p.shape[0], "head_sizes")
    bad = v.any(axis=1) & ~(np.isfinite(hs) & (hs > 0))
    if bad.any():
        raise ValueError(f"head_sizes must be finite and > 0 for examples with counted joints; "
                         f"bad at indices {np.flatnonzero(bad)[:10].tolist()}")
    err = np.linalg.norm(p - g, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = err / np.where(hs > 0, hs, 1.0)[:, None]
    return v & (scaled <= threshold), v


def pckh(pred, gt, visible, head_sizes, threshold: float = 0.5) -> np.ndarray:
    """Per-joint PCKh in % (K,), NaN for a joint never counted.

    ``visible`` follows the official code's ``jnt_visible = 1 - jnt_missing``: every
    *annotated* joint counts, occluded ones included (contract flags > 0). Do not pass the
    stacked-hourglass valid.h5 ``visible`` field, which also zeroes occluded joints.
    """
    return _percent(*pckh_hits(pred, gt, visible, head_sizes, threshold))


def pckh_mean(pred, gt, visible, head_sizes, skeleton: Skeleton = MPII16,
              threshold: float = 0.5) -> float:
    """Standard MPII mean: pooled over joints outside skeleton.pckh_excluded (this equals
    the official sum of per-joint PCKh weighted by joint counts)."""
    hits, counted = pckh_hits(pred, gt, visible, head_sizes, threshold)
    keep = [j for j in range(hits.shape[1]) if j not in skeleton.pckh_excluded]
    return _pooled(hits[:, keep], counted[:, keep])


def heatmap_pck(pred_hm, gt_hm, valid, heatmap_size: int, threshold: float = 0.5) -> float:
    """Training-progress accuracy in *heatmap* space (pytorch-pose's ``accuracy``): % of
    valid joints within threshold x heatmap_size / 10 heatmap pixels. NOT PCKh/PCK: it
    ignores person size, so never report it as a benchmark number."""
    p, g, v = _as_batch(pred_hm, gt_hm, valid)
    err = np.linalg.norm(p - g, axis=-1)
    return _pooled(v & (err <= threshold * heatmap_size / 10.0), v)


# ----------------------------------------------------------------------------- reports
def _joint_dict(values: np.ndarray, skeleton: Skeleton) -> dict[str, float]:
    return {n: float(v) for n, v in zip(skeleton.joints, values)}


def lsp_report(pred, gt, valid, skeleton: Skeleton | None = None,
               pck_threshold: float = 0.2, pcp_threshold: float = 0.5) -> dict:
    """PCK@0.2 (torso) and strict PCP@0.5 tables with the paper's columns, per joint/limb too.

    ``valid``: annotated joints (contract flags > 0; LSP's occluded joints count, as in the
    standard code). PCK columns: Head = mean of head top and neck (upper neck on MPII16),
    the others mean of left and right; Total = all counted joints of the skeleton pooled
    (MPII16's pelvis/thorax included). Works for LSP14 and MPII16 (skeleton inferred from K).
    """
    p, g, v = _as_batch(pred, gt, valid)
    sk = _skeleton_for(p.shape[1], skeleton)
    ref = torso_lengths(g, sk, v)
    hits, counted = pck_hits(p, g, v, ref, pck_threshold)
    per_joint = _percent(hits, counted)
    pck_table = {**_columns(per_joint, sk, _PCK_COLUMNS), "Total": _pooled(hits, counted)}
    pcp_table = pcp(p, g, v, sk, pcp_threshold)
    per_limb = {}
    limb_hits = pcp_hits(p, g, v, sk, pcp_threshold)
    for name, (h, c) in limb_hits.items():
        for (a, b), val in zip(sk.pcp_limbs[name], _percent(h, c)):
            per_limb[f"{sk.joints[a]}-{sk.joints[b]}"] = float(val)
    pck_name, pcp_name = f"PCK@{pck_threshold:g}", f"strict PCP@{pcp_threshold:g}"
    return {
        "protocol": "lsp",
        "skeleton": sk.name,
        "num_examples": int(p.shape[0]),
        "examples_without_torso": int((~np.isfinite(ref)).sum()),
        "tables": {pck_name: pck_table, pcp_name: pcp_table},
        "per_joint": {pck_name: _joint_dict(per_joint, sk)},
        "per_limb": {pcp_name: per_limb},
        "joint_counts": {n: int(c) for n, c in zip(sk.joints, counted.sum(0))},
        # Per person (input order): joints within PCK and joints counted, so two models
        # scored on the same people can be compared with a paired bootstrap.
        "per_example": {f"{pck_name} hits": hits.sum(1).tolist(),
                        f"{pck_name} counted": counted.sum(1).tolist(),
                        # ... and per joint / per limb (limbs in pcp_hits' order), for
                        # column-wise intervals (paired_columns).
                        outcome_key(pck_name, "joint"): outcome_strings(hits, counted),
                        outcome_key(pcp_name, "limb"): outcome_strings(
                            np.concatenate([h for h, _ in limb_hits.values()], 1),
                            np.concatenate([c for _, c in limb_hits.values()], 1))},
    }


def outcome_key(metric: str, unit: str) -> str:
    """The ``per_example`` key of a metric's per-person outcome strings, unit "joint" or
    "limb" (e.g. "PCK@0.2 by joint"): the one place that names them."""
    return f"{metric} by {unit}"


def is_outcome_key(key: str) -> bool:
    """Whether a ``per_example`` key holds outcome strings (not per-person totals)."""
    return key.endswith(tuple(outcome_key("", unit) for unit in ("joint", "limb")))


def outcome_strings(hits: np.ndarray, counted: np.ndarray) -> list[str]:
    """One string per person, one character per joint or limb: "1" hit, "0" miss, "-" not
    counted (a JSON line per person; ``parse_outcomes`` reads it back)."""
    table = np.where(counted, np.where(hits, "1", "0"), "-")
    return ["".join(row) for row in table]


def parse_outcomes(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hits, counted), (N, K) bool, from ``outcome_strings``."""
    chars = np.array([list(s) for s in strings]).reshape(len(strings), -1)
    return chars == "1", chars != "-"


def paired_bootstrap(hits_a, counted_a, hits_b, counted_b, samples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Pooled-PCK difference A - B in points, with a 95 % interval from resampling the
    people (the same draw for both models: the comparison is paired). Per-person hit and
    counted-joint totals in, as ``lsp_report``'s ``per_example`` holds them."""
    ha, ca, hb, cb = (np.asarray(v, np.float64) for v in (hits_a, counted_a, hits_b, counted_b))
    if not ha.shape == ca.shape == hb.shape == cb.shape or ha.ndim != 1:
        raise ValueError("paired_bootstrap needs per-person totals of the same people")
    point = 100.0 * (ha.sum() / ca.sum() - hb.sum() / cb.sum())
    idx = np.random.default_rng(seed).integers(0, len(ha), (samples, len(ha)))
    diffs = 100.0 * (ha[idx].sum(1) / ca[idx].sum(1) - hb[idx].sum(1) / cb[idx].sum(1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def lsp_columns(skeleton: Skeleton) -> dict[str, dict[str, tuple[list[int], bool]]]:
    """The paper's columns as (entries, pooled) over ``lsp_report``'s per-person matrices:
    PCK columns average the percentages of their joints, PCP types those of their limbs
    (in pcp_hits' order), and each Total pools every entry."""
    pck_cols = {col: ([skeleton.index(n) for n in names if n in skeleton.joints], False)
                for col, names in _PCK_COLUMNS.items()}
    pck_cols["Total"] = (list(range(skeleton.num_joints)), True)
    pcp_cols, start = {}, 0
    for name, limbs in skeleton.pcp_limbs.items():
        pcp_cols[name] = (list(range(start, start + len(limbs))), False)
        start += len(limbs)
    pcp_cols = {c: pcp_cols[c] for c in PCP_COLUMNS if c in pcp_cols}
    pcp_cols["Total"] = (list(range(start)), True)
    return {"pck": pck_cols, "pcp": pcp_cols}


def paired_columns(example_a: Mapping, example_b: Mapping, skeleton: Skeleton,
                   pck_name: str = "PCK@0.2", pcp_name: str = "strict PCP@0.5",
                   samples: int = 2000, seed: int = 0
                   ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Every column of the paper's two tables, A - B in points with a 95 % paired
    bootstrap interval: {table: {column: (difference, low, high)}}. Inputs are two
    ``lsp_report`` ``per_example`` dicts of the same people in the same order; each draw
    resamples the people once for both models and recomputes the columns as the tables
    define them."""
    keys = (outcome_key(pck_name, "joint"), outcome_key(pcp_name, "limb"))
    missing = sorted({k for ex in (example_a, example_b) for k in keys if k not in ex})
    if missing:
        raise ValueError(f"no per-joint results {missing} (a report written by an older "
                         f"evaluate.py): score the model again")
    n = len(example_a[keys[0]])
    if len(example_b[keys[0]]) != n:
        raise ValueError("paired_columns needs the per-person results of the same people")
    weights = np.vstack([np.ones(n), np.random.default_rng(seed).multinomial(
        n, np.full(n, 1.0 / n), size=samples)])          # row 0: the point estimate

    def columns(ex, name, unit, cols):
        hits, counted = parse_outcomes(ex[outcome_key(name, unit)])
        h, c = weights @ hits, weights @ counted
        with np.errstate(invalid="ignore", divide="ignore"):
            pct = 100.0 * h / c
            return {col: (100.0 * h[:, idx].sum(1) / c[:, idx].sum(1) if pooled
                          else np.nanmean(pct[:, idx], axis=1))
                    for col, (idx, pooled) in cols.items()}

    out, tables = {}, lsp_columns(skeleton)
    for table, name, unit in (("pck", pck_name, "joint"), ("pcp", pcp_name, "limb")):
        cols = tables[table]
        a, b = columns(example_a, name, unit, cols), columns(example_b, name, unit, cols)
        out[name] = {}
        for col in cols:
            d = a[col] - b[col]
            lo, hi = np.nanpercentile(d[1:], [2.5, 97.5])
            out[name][col] = (float(d[0]), float(lo), float(hi))
    return out


def mpii_report(pred, gt, visible, head_sizes, skeleton: Skeleton = MPII16,
                thresholds: Sequence[float] = (0.5, 0.1)) -> dict:
    """Standard MPII PCKh tables (Head, Sho., Elb., Wri., Hip, Knee, Ank., Mean), one per
    threshold (0.5 is the benchmark; 0.1 as HRNet also prints), plus per-joint values.

    ``visible``: annotated joints (1 - jnt_missing, contract flags > 0); see ``pckh``.
    """
    p, g, v = _as_batch(pred, gt, visible, what="visible")
    sk = _skeleton_for(p.shape[1], skeleton)
    tables, per_joint = {}, {}
    counted = v
    for t in thresholds:
        hits, counted = pckh_hits(p, g, v, head_sizes, t)
        pj = _percent(hits, counted)
        keep = [j for j in range(sk.num_joints) if j not in sk.pckh_excluded]
        name = f"PCKh@{t:g}"
        tables[name] = {**_columns(pj, sk, _PCKH_COLUMNS),
                        "Mean": _pooled(hits[:, keep], counted[:, keep])}
        per_joint[name] = _joint_dict(pj, sk)
    return {
        "protocol": "mpii",
        "skeleton": sk.name,
        "num_examples": int(p.shape[0]),
        "tables": tables,
        "per_joint": per_joint,
        "joint_counts": {n: int(c) for n, c in zip(sk.joints, counted.sum(0))},
    }


def _cell(value) -> str:
    v = float(value)
    return "n/a" if math.isnan(v) else f"{v:.1f}"


def format_table(report: Mapping) -> str:
    """Plain-text tables (one header + one row each) for a report or a single
    {column: value} table; NaN prints as n/a."""
    tables = report["tables"] if "tables" in report else {"": report}
    lines = []
    for title, table in tables.items():
        cols = list(table)
        width = max(7, *(len(c) + 1 for c in cols))
        label = max(len(title), 1)
        lines.append(" " * label + " " + "".join(f"{c:>{width}}" for c in cols))
        cells = [_cell(table[c]) for c in cols]
        lines.append(f"{title:<{label}} " + "".join(f"{x:>{width}}" for x in cells))
    return "\n".join(lines)


def markdown_tables(report: Mapping) -> str:
    """The report's tables as Markdown (one table per metric, the paper's columns), for
    model cards and README result tables."""
    lines = []
    for title, table in report["tables"].items():
        cols = list(table)
        lines += ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|",
                  f"| {title} | " + " | ".join(_cell(table[c]) for c in cols) + " |", ""]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- any skeleton
# PCK for any joint set, normalised by the person box (mmpose's PCKAccuracy with
# norm_item="bbox", the usual choice for custom keypoint sets): a joint is correct when
# ||pred - gt|| / max(box w, box h) < threshold (strictly, as mmpose's _distance_acc), over
# the annotated joints (flags > 0, occluded ones included); "Mean" averages the per-joint
# accuracies of the joints that count (mmpose's reported value), "Total" pools them.
BOX_PCK_THRESHOLDS = (0.05, 0.1, 0.2)


def box_sizes(boxes) -> np.ndarray:
    """(N, 4) boxes [x, y, w, h] (COCO's layout) -> (N,) max(w, h)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.maximum(b[:, 2], b[:, 3])


def box_pck_hits(pred, gt, valid, box_size, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(hits, counted) (N, K) bool: counted = valid joint of an example whose box size is
    finite and > 0; hit = error / box size < threshold."""
    p, g, v = _as_batch(pred, gt, valid)
    size = _per_example(box_size, p.shape[0], "box_size")
    ok = np.isfinite(size) & (size > 0)
    counted = v & ok[:, None]
    err = np.linalg.norm(p - g, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hits = counted & (err / np.where(ok, size, 1.0)[:, None] < threshold)
    return hits, counted


def keypoint_report(pred, gt, valid, box_size, skeleton: Skeleton,
                    thresholds: Sequence[float] = BOX_PCK_THRESHOLDS,
                    torso_threshold: float = 0.2) -> dict:
    """PCK tables for any joint set (COCO-format datasets): box-normalised PCK at each of
    ``thresholds`` (mean of the joints, as mmpose reports it), and, when the skeleton has a
    left shoulder and a right hip under any spelling (joint_names), LSP's torso PCK
    (<= threshold x ||l_shoulder - r_hip||, pooled Total as eval_pck.m, and the mean of
    the joints). ``box_size``: (N,) max(w, h) of each person's box (``box_sizes``)."""
    from .joint_names import torso_pair

    p, g, v = _as_batch(pred, gt, valid)
    sk = _skeleton_for(p.shape[1], skeleton)
    box_table, per_joint, per_example = {}, {}, {}
    for t in thresholds:
        hits, counted = box_pck_hits(p, g, v, box_size, t)
        pj = _percent(hits, counted)
        box_table[f"@{t:g}"] = _nanmean(pj)
        name = f"PCK@{t:g} (box)"
        per_joint[name] = _joint_dict(pj, sk)
        per_example[f"{name} hits"] = hits.sum(1).tolist()
        per_example[f"{name} counted"] = counted.sum(1).tolist()
    tables = {"PCK (box)": box_table}
    pair = sk.torso_pair or torso_pair(sk.joints)
    if pair is not None:
        torso_sk = Skeleton(sk.name, sk.joints, sk.flip_pairs, sk.limbs, torso_pair=pair)
        ref = torso_lengths(g, torso_sk, v)
        hits, counted = pck_hits(p, g, v, ref, torso_threshold)
        pj = _percent(hits, counted)
        name = f"PCK@{torso_threshold:g} (torso)"
        tables[name] = {"Mean": _nanmean(pj), "Total": _pooled(hits, counted)}
        per_joint[name] = _joint_dict(pj, sk)
        per_example[f"{name} hits"] = hits.sum(1).tolist()
        per_example[f"{name} counted"] = counted.sum(1).tolist()
    return {
        "protocol": "box",
        "skeleton": sk.name,
        "num_examples": int(p.shape[0]),
        "tables": tables,
        "per_joint": per_joint,
        "joint_counts": {n: int(c) for n, c in zip(sk.joints, v.sum(0))},
        "per_example": per_example,
        "definitions": {
            "PCK (box)": "||pred - gt|| / max(box w, h) < threshold, annotated joints; mean "
                         "of the per-joint accuracies (mmpose PCKAccuracy, norm_item=bbox)",
            **({f"PCK@{torso_threshold:g} (torso)":
                f"||pred - gt|| <= {torso_threshold:g} x ||{sk.joints[pair[0]]} - "
                f"{sk.joints[pair[1]]}|| (LSP); Total pools the joints, Mean averages them"}
               if pair is not None else {}),
        },
    }
