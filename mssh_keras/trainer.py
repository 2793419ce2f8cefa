"""The training wrapper: a thin keras.Model around the functional network.

Only the functional ``network`` is ever saved or exported; this wrapper holds the
custom ``train_step``/``test_step`` (per-stack loss + adaptive weighting) for
``model.fit``. Under a ``tf.distribute`` strategy each replica divides its summed loss
by the *global* batch size (gradients are then summed across replicas), and computes
the adaptive weights from the examples it sees, like a BatchNorm's statistics.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from .losses import stack_losses


class PoseTrainer(keras.Model):
    def __init__(self, network: keras.Model, adaptive: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.adaptive = adaptive
        n_stacks = len(network.outputs)
        n_joints = network.outputs[0].shape[-1]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.final_tracker = keras.metrics.Mean(name="final_stack_loss")
        # Mean adaptive weight per (stack, joint) over the epoch, for TensorBoard.
        self.weight_sum = self.add_weight(shape=(n_stacks, n_joints), initializer="zeros",
                                          trainable=False, name="weight_sum")
        self.weight_count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                            name="weight_count")

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.final_tracker]

    def _stack_losses(self, x, y, training: bool):
        targets, mask = y
        preds = self(x, training=training)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = ops.cast(ops.shape(x)[0] * replicas, "float32")
        return stack_losses(preds, targets, mask, global_batch, self.adaptive)

    def _update_metrics(self, total, per_stack):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Trackers average over replicas, so undo the per-replica 1/replicas share.
        self.loss_tracker.update_state(total * replicas)
        self.final_tracker.update_state(per_stack[-1] * replicas)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            total, per_stack, _, weights = self._stack_losses(x, y, training=True)
        grads = tape.gradient(total, self.network.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.network.trainable_variables))
        self.weight_sum.assign_add(weights)
        self.weight_count.assign_add(1.0)
        return self._update_metrics(total, per_stack)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        total, per_stack, _, _ = self._stack_losses(x, y, training=False)
        return self._update_metrics(total, per_stack)

    def pop_mean_weights(self):
        """Mean (stack, joint) weights since the last call, then reset (numpy)."""
        count = max(float(self.weight_count.numpy()), 1.0)
        mean = self.weight_sum.numpy() / count
        self.weight_sum.assign(ops.zeros_like(self.weight_sum))
        self.weight_count.assign(0.0)
        return mean


def make_optimizer(learning_rate: float, lr_drops: tuple[int, ...], drop_factor: float,
                   steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """RMSprop (the paper's choice) with the rate divided at fixed epochs.

    The schedule is a function of ``optimizer.iterations``, so restoring the optimizer's
    variables on ``--resume`` restores the schedule's position exactly.
    """
    lr = learning_rate
    if lr_drops:
        boundaries = [int(e * steps_per_epoch) for e in lr_drops]
        values = [learning_rate * drop_factor ** k for k in range(len(lr_drops) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return keras.optimizers.RMSprop(learning_rate=lr)
