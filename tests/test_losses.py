"""Tests for the per-stack loss and the adaptive keypoint weighting (mssh_keras/losses.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mssh_keras.losses import EPS, adaptive_weights, per_joint_errors, relative_error, stack_losses


def _weights(rel, present=None, adaptive=True) -> np.ndarray:
    rel = np.asarray(rel, np.float32)
    present = np.ones(rel.shape, bool) if present is None else np.asarray(present, bool)
    return np.asarray(adaptive_weights(rel, present, adaptive))


def _reference_weights(rel: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Algorithm 1 written out independently, in float64."""
    s, n = rel.shape
    w = np.full(n, 1.0 / n)
    rows = [w]
    for j in range(s - 1):
        err = np.clip(rel[j], EPS, 1 - EPS)
        p = present[j]
        big_l = (w * p * err).sum() / (w * p).sum() if p.any() else 0.5
        big_l = min(max(big_l, EPS), 1 - EPS)
        alpha = min(big_l / (1 - big_l), 1.0)
        err = np.where(p, err, big_l)
        w = w * alpha ** (1 - err)
        w = w / w.sum()
        rows.append(w)
    return np.stack(rows)


def test_rows_sum_to_one_and_the_first_row_is_uniform():
    rng = np.random.default_rng(0)
    for n in (1, 3, 14, 16):
        rel = rng.uniform(0, 1, (8, n))
        present = rng.uniform(size=(8, n)) > 0.2
        w = _weights(rel, present)
        assert w.shape == (8, n)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(w[0], 1.0 / n, rtol=1e-6)
        np.testing.assert_allclose(w, _reference_weights(rel, present), rtol=2e-4)


def test_a_joint_that_was_hard_gets_more_weight_at_the_next_stack():
    rel = np.array([[0.1, 0.4, 0.2], [0.3, 0.3, 0.3]])
    w = _weights(rel)
    assert w[1, 1] > w[1, 2] > w[1, 0]
    # The weight ratio grows with the error: w_{j+1,i}/w_{j,i} = alpha^(1-l_i)/Z.
    big_l = (rel[0] / 3).sum()
    alpha = big_l / (1 - big_l)
    np.testing.assert_allclose(w[1, 1] / w[1, 0], alpha ** (0.1 - 0.4), rtol=1e-5)


def test_hard_joint_rule_holds_for_random_inputs():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(2, 17))
        rel = rng.uniform(0.0, 0.45, (4, n))  # a stack better than chance: L_j < 0.5
        w = _weights(rel)
        for j in range(3):
            ratio = w[j + 1] / w[j]
            order = np.argsort(rel[j])
            assert np.all(np.diff(ratio[order]) >= -1e-6), (rel[j], ratio)
            hardest, easiest = np.argmax(rel[j]), np.argmin(rel[j])
            if rel[j, hardest] - rel[j, easiest] > 0.05:
                assert ratio[hardest] > ratio[easiest]


def test_uniform_weights_without_adaptation():
    rel = np.random.default_rng(2).uniform(0, 1, (5, 14))
    w = _weights(rel, adaptive=False)
    np.testing.assert_array_equal(w, np.full((5, 14), 1 / 14, np.float32))


def test_a_stack_no_better_than_chance_carries_the_weights_over():
    rel = np.array([[0.2, 0.4, 0.3], [0.9, 0.5, 0.7], [0.3, 0.6, 0.8], [0.1, 0.1, 0.1]])
    w = _weights(rel)
    # L_2 >= 0.5: alpha capped at 1, so stack 3 keeps stack 2's weights (AdaBoost stops).
    np.testing.assert_allclose(w[2], w[1], rtol=1e-6)
    assert not np.allclose(w[1], w[0])


@pytest.mark.parametrize("case", ["empty", "zero_loss", "all_absent", "one_joint_absent",
                                  "worst", "mixed_zero"])
def test_weights_stay_finite(case):
    n = 6
    rel = np.full((4, n), 0.3)
    present = np.ones((4, n), bool)
    if case == "empty":
        present[:] = False
    elif case == "zero_loss":
        rel[:] = 0.0
    elif case == "all_absent":
        present[:, 2] = False
    elif case == "one_joint_absent":
        present[1, 4] = False
        rel[1] = np.linspace(0.05, 0.45, n)
    elif case == "worst":
        rel[:] = 1.0
    elif case == "mixed_zero":
        rel[:, ::2] = 0.0
    w = _weights(rel, present)
    assert np.isfinite(w).all() and (w > 0).all()
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    if case in ("empty", "zero_loss", "worst", "all_absent"):
        np.testing.assert_allclose(w, 1.0 / n, rtol=1e-4)  # nothing to tell joints apart
    if case == "one_joint_absent":
        # An absent joint takes l = L_j: its weight moves to the middle of the present ones.
        ratio = w[2] / w[1]
        present_ratios = np.delete(ratio, 4)
        assert present_ratios.min() < ratio[4] < present_ratios.max()


def test_weights_carry_no_gradient():
    rel = tf.Variable(np.random.default_rng(3).uniform(0, 0.4, (3, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        w = adaptive_weights(rel, tf.ones((3, 5), bool))
        out = tf.reduce_sum(w * tf.range(5, dtype=tf.float32))
    assert tape.gradient(out, rel) is None


def _example(seed=0, b=3, r=4, n=3):
    rng = np.random.default_rng(seed)
    targets = [rng.uniform(0, 1, (b, r, r, n)).astype(np.float32) for _ in range(2)]
    preds = [t + rng.normal(0, 0.3, t.shape).astype(np.float32) for t in targets]
    mask = np.ones((b, n), np.float32)
    mask[1, 2] = 0.0
    return preds, targets, mask


def test_stack_losses_match_a_hand_computation():
    preds, targets, mask = _example()
    total, per_stack, joint_losses, weights = (np.asarray(v) for v in stack_losses(
        preds, targets, mask, global_batch_size=3.0))
    sse = [((p - t) ** 2).sum(axis=(1, 2)) * mask for p, t in zip(preds, targets)]   # (B, N)
    energy = [(t ** 2).sum(axis=(1, 2)) * mask for t in targets]
    rel = np.stack([s.sum(0) / (s.sum(0) + e.sum(0)) for s, e in zip(sse, energy)])
    w = _reference_weights(rel, np.ones_like(rel, bool))
    jl = np.stack([s.sum(0) / 3.0 for s in sse])
    np.testing.assert_allclose(joint_losses, jl, rtol=1e-5)
    np.testing.assert_allclose(weights, w, rtol=1e-5)
    np.testing.assert_allclose(per_stack, (w * jl).sum(1), rtol=1e-5)
    assert float(total) == pytest.approx(float((w * jl).sum()), rel=1e-5)
    # The masked example adds nothing to joint 2.
    preds[0][1, ..., 2] += 100.0
    assert np.asarray(stack_losses(preds, targets, mask, 3.0)[2])[0, 2] == pytest.approx(
        jl[0, 2], rel=1e-5)


def test_relative_error_is_zero_when_perfect_and_half_for_an_empty_prediction():
    _, targets, mask = _example()
    t = targets[0]
    rel, present = relative_error(*per_joint_errors(t, t, mask))
    np.testing.assert_allclose(np.asarray(rel), 0.0, atol=1e-7)
    rel, present = relative_error(*per_joint_errors(np.zeros_like(t), t, mask))
    np.testing.assert_allclose(np.asarray(rel), 0.5, rtol=1e-6)
    assert np.asarray(present).all()
    rel, present = relative_error(*per_joint_errors(t, t, np.zeros_like(mask)))
    assert not np.asarray(present).any() and np.isfinite(np.asarray(rel)).all()


def test_gradient_treats_the_weights_as_constants():
    preds, targets, mask = _example(seed=4)
    p = [tf.Variable(x) for x in preds]
    with tf.GradientTape() as tape:
        total, _, _, weights = stack_losses(p, targets, mask, 3.0)
    grads = tape.gradient(total, p)
    w = np.asarray(weights)
    for j, (g, x, t) in enumerate(zip(grads, preds, targets)):
        expected = 2.0 * (x - t) * mask[:, None, None, :] * w[j] / 3.0
        np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-4, atol=1e-7)


def test_loss_is_divided_by_the_global_batch():
    preds, targets, mask = _example(seed=5, b=4)
    one = np.asarray(stack_losses(preds, targets, mask, 4.0, adaptive=False)[0])
    two = np.asarray(stack_losses(preds, targets, mask, 8.0, adaptive=False)[0])
    assert float(two) == pytest.approx(float(one) / 2, rel=1e-6)
    # Two replicas with half the batch each, both dividing by the global batch of 4,
    # sum to the single-device loss (gradients are summed across replicas).
    halves = sum(float(np.asarray(stack_losses([p[i:i + 2] for p in preds],
                                               [t[i:i + 2] for t in targets],
                                               mask[i:i + 2], 4.0, adaptive=False)[0]))
                 for i in (0, 2))
    assert halves == pytest.approx(float(one), rel=1e-5)


def test_non_finite_free_with_nothing_annotated():
    preds, targets, mask = _example(seed=6)
    out = stack_losses(preds, targets, np.zeros_like(mask), 3.0)
    for v in out:
        assert np.isfinite(np.asarray(v)).all()
    assert float(np.asarray(out[0])) == 0.0
