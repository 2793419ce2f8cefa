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

from .config import TrainConfig
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
        # Mean adaptive weight per (stack, joint) over the epoch, for TensorBoard. Under a
        # strategy each replica adds its own weights; "mean" all-reduces them, so the log
        # is the average over replicas (the default "none" would keep replica 0's only).
        self.weight_sum = self.add_weight(shape=(n_stacks, n_joints), initializer="zeros",
                                          trainable=False, name="weight_sum",
                                          aggregation="mean")
        self.weight_count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                            name="weight_count",
                                            aggregation="only_first_replica")
        self.built = True  # all state exists now: the network is built, weights above

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3 hook that builds model state from a sample batch before ``fit``.

        Under a strategy Keras first pulls a batch and ``strategy.reduce``s it, which
        MultiWorkerMirroredStrategy cannot do for our nested (image, (heatmaps, mask))
        batches: "Attempt to convert a value (PerReplica...)" (keras-team/keras#20329).
        Nothing here needs a sample batch (see ``built`` above); only the optimizer may
        still need its variables, created in the strategy's scope. Building them here,
        before the first traced step, also matters without a strategy: variables created
        inside the trace make tf.function trace the whole train step a second time.
        """
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return [self.loss_tracker, self.final_tracker]

    def _stack_losses(self, x, y, training: bool):
        targets, mask = y
        preds = self(x, training=training)
        if not isinstance(preds, (list, tuple)):  # a one-stack network returns one tensor
            preds = [preds]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch = ops.cast(ops.shape(x)[0] * replicas, "float32")
        return stack_losses(preds, targets, mask, global_batch, self.adaptive)

    def _update_metrics(self, total, per_stack):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Trackers average over replicas, so undo the per-replica 1/replicas share.
        self.loss_tracker.update_state(total * replicas)
        self.final_tracker.update_state(per_stack[-1] * replicas)
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras reduces the step's logs across workers with reduce(MEAN, axis=0),
            # which rejects scalars (Keras 3.15); _unwrap_logs makes them scalars again
            # (a single-worker run skips that reduction and keeps the (1,) shape).
            return {m.name: ops.reshape(m.result(), (1,)) for m in self.metrics}
        return {m.name: m.result() for m in self.metrics}

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            super().make_train_function(force)
            self.train_function = self._unwrap_logs(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        if self.test_function is None or force:
            super().make_test_function(force)
            self.test_function = self._unwrap_logs(self.test_function)
        return self.test_function

    def _unwrap_logs(self, function):
        """Scalar logs again after a multi-worker step (see ``_update_metrics``)."""
        if not isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return function

        def unwrapped(iterator):
            return {k: ops.reshape(v, ()) for k, v in function(iterator).items()}
        return unwrapped

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


def learning_rate_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """The rate as a function of ``optimizer.iterations`` (a float when it is constant).

    Restoring the optimizer's variables on ``--resume`` restores the schedule's position
    exactly. ``step``: the paper's divisions at fixed epochs. ``cosine``: linear warm-up
    from 0 over ``warmup_steps``, then a half cosine to 0 at the run's last step, the
    usual choice for a fixed, short budget.
    """
    if cfg.lr_schedule == "cosine":
        total = cfg.epochs * steps_per_epoch
        warmup = min(cfg.warmup_steps, total - 1)
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate, decay_steps=max(total - warmup, 1),
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
    if cfg.lr_drops:
        boundaries = [int(e * steps_per_epoch) for e in cfg.lr_drops]
        values = [cfg.learning_rate * cfg.lr_drop_factor ** k
                  for k in range(len(cfg.lr_drops) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return cfg.learning_rate


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The run's optimizer: RMSprop (the paper's), Adam or AdamW, on its rate schedule."""
    lr = learning_rate_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=cfg.weight_decay)
    return keras.optimizers.RMSprop(learning_rate=lr)
