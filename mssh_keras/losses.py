"""Per-stack, per-joint heatmap loss and the adaptive keypoint weighting (Algorithm 1).

Loss_{j,i} is the squared error of joint i at stack j summed over heatmap pixels and
averaged over the *global* batch (Eq. 2); Loss_j = sum_i w_{j,i} Loss_{j,i}.

Algorithm 1 needs a loss in (0, 1). We use the *relative* error

    l_{j,i} = SSE_{j,i} / (SSE_{j,i} + ||G_{j,i}||^2)                        in [0, 1)

over the batch's annotated examples of joint i: 0 for a perfect heatmap, 0.5 for an
all-zero prediction (the "chance" of AdaBoost), towards 1 for worse. Then
    w_{1,i} = 1/N,  L_j = sum_i w_{j,i} l_{j,i},  alpha_j = L_j / (1 - L_j),
    w_{j+1,i} = w_{j,i} * alpha_j ** (1 - l_{j,i}) / Z_j.
With alpha_j < 1 a joint with a larger l_{j,i} keeps more weight: joints that were hard at
stack j weigh more at stack j+1. A stack no better than predicting nothing (L_j >= 0.5)
would invert the rule, so alpha_j is capped at 1 (weights carried over unchanged), as
AdaBoost stops on a learner worse than chance. l and L are clipped to [eps, 1 - eps].
Joints absent from the batch take l = L_j (a neutral update). Weights carry no gradient.
"""
from __future__ import annotations

import keras
from keras import ops

EPS = 1e-6


def per_joint_errors(pred, target, mask):
    """pred/target (B, R, R, N), mask (B, N) -> per-example SSE (B, N) and ||G||^2 (B, N)."""
    sse = ops.sum(ops.square(pred - target), axis=(1, 2)) * mask
    energy = ops.sum(ops.square(target), axis=(1, 2)) * mask
    return sse, energy


def relative_error(sse, energy):
    """Batch-level l_{j,i} in [0, 1) and whether joint i was annotated at all."""
    s, e = ops.sum(sse, axis=0), ops.sum(energy, axis=0)
    present = e > 0
    rel = ops.where(present, s / ops.maximum(s + e, EPS), 0.0)
    return rel, present


def adaptive_weights(rel_errors, present, adaptive: bool = True):
    """rel_errors (S, N), present (S, N) bool -> weights (S, N), each row summing to 1."""
    rel_errors = ops.stop_gradient(ops.convert_to_tensor(rel_errors, "float32"))
    num_stacks, n = rel_errors.shape
    w = ops.ones((n,), "float32") / n
    rows = [w]
    if not adaptive:
        return ops.stack(rows * num_stacks)
    for j in range(num_stacks - 1):
        p = ops.cast(present[j], "float32")
        err = ops.clip(rel_errors[j], EPS, 1.0 - EPS)
        wp = w * p
        total = ops.sum(wp)
        stack_loss = ops.where(total > 0, ops.sum(wp * err) / ops.maximum(total, EPS), 0.5)
        stack_loss = ops.clip(stack_loss, EPS, 1.0 - EPS)
        alpha = ops.minimum(stack_loss / (1.0 - stack_loss), 1.0)
        err = ops.where(p > 0, err, stack_loss)
        w = w * ops.power(alpha, 1.0 - err)
        w = w / ops.maximum(ops.sum(w), EPS)
        rows.append(w)
    return ops.stack(rows)


def stack_losses(preds, targets, mask, global_batch_size, adaptive: bool = True):
    """Total loss, per-stack Loss_j (S,), per-joint Loss_{j,i} (S, N) and weights (S, N)."""
    sses, rels, presents = [], [], []
    for pred, target in zip(preds, targets):
        sse, energy = per_joint_errors(ops.cast(pred, "float32"), target, mask)
        rel, present = relative_error(ops.stop_gradient(sse), energy)
        sses.append(ops.sum(sse, axis=0) / global_batch_size)
        rels.append(rel)
        presents.append(present)
    joint_losses = ops.stack(sses)                       # (S, N)
    weights = adaptive_weights(ops.stack(rels), ops.stack(presents), adaptive)
    per_stack = ops.sum(weights * joint_losses, axis=1)  # Loss_j
    return ops.sum(per_stack), per_stack, joint_losses, weights
