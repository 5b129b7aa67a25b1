"""The custom distributed training step (not `model.fit`: Keras 3 fit fails under
MultiWorkerMirroredStrategy, keras issue 20585).

`strategy.run` + `tf.GradientTape` + the Keras 3 model and optimizer. The loss of a replica
is sum(cross-entropy * weight) / (weight summed over the GLOBAL batch, all-reduced), so the
gradients the optimizer sums over replicas equal one replica's gradient on the whole global
batch. Several steps run inside one `tf.function` call (a `tf.range` loop over the
distributed iterator) to cut Python overhead per step.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from model.builder import build_model, final_word_logits_fn
from model.config import ModelConfig
from model.metrics import weighted_token_loss


def make_optimizer(name: str, learning_rate: float, mixed_precision: bool) -> keras.optimizers.Optimizer:
    # "sgd" is not offered on the CLI; tests use it because, unlike adam/rmsprop, its step
    # scales with the gradient, so a wrongly averaged loss shows up in the weights.
    classes = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD}
    optimizer = classes[name](learning_rate=learning_rate)
    # Loss scaling keeps float16 gradients from underflowing; apply() unscales and skips inf steps.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer


class Trainer:
    """Model + optimizer created inside `strategy.scope()`, and the compiled multi-step function.

    train_steps(iterator, steps int32 scalar) -> (loss sum float32, weight sum float32) over
    those steps, summed over all replicas (mean loss = loss sum / weight sum).
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        model_config: ModelConfig,
        optimizer_name: str,
        learning_rate: float,
        mixed_precision: bool = False,
        seed: int = 0,
    ):
        self.strategy = strategy
        self.model_config = model_config
        self.mixed_precision = mixed_precision
        keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
        # Seeds weight init and every dropout SeedGenerator (their states are model variables,
        # checkpointed, so a resumed run draws the same masks).
        keras.utils.set_random_seed(seed)
        with strategy.scope():
            self.model = build_model(model_config)
            self.optimizer = make_optimizer(optimizer_name, learning_rate, mixed_precision)
            self.optimizer.build(self.model.trainable_variables)
        keras.mixed_precision.set_dtype_policy("float32")
        self._train_steps = tf.function(self._train_steps_fn, reduce_retracing=True)
        # int32[batch, context] -> float32[batch, vocab]: the word after the window (validation)
        self.final_word_logits = final_word_logits_fn(self.model)

    def replica_step(self, context, targets, weights):
        """One step on one replica's share of the global batch; returns (loss sum, weight sum)."""
        local_weight = tf.reduce_sum(weights)
        global_weight = tf.distribute.get_replica_context().all_reduce("sum", local_weight)
        with tf.GradientTape() as tape:
            logits = self.model(context, training=True)
            loss_sum = weighted_token_loss(logits, targets, weights)
            loss = loss_sum / tf.maximum(global_weight, 1.0)
            scaled = self.optimizer.scale_loss(loss) if self.mixed_precision else loss
        variables = self.model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return loss_sum, local_weight

    def _train_steps_fn(self, iterator, steps):
        loss_total = tf.constant(0.0)
        weight_total = tf.constant(0.0)
        for _ in tf.range(steps):
            per_replica = self.strategy.run(self.replica_step, args=next(iterator))
            loss_sum, weight_sum = (self.strategy.reduce("sum", value, axis=None) for value in per_replica)
            loss_total += loss_sum
            weight_total += weight_sum
        return loss_total, weight_total

    def train_steps(self, iterator, steps: int):
        return self._train_steps(iterator, tf.constant(steps, tf.int32))
