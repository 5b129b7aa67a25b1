"""The custom distributed training step (not `model.fit`: Keras 3 fit fails under
MultiWorkerMirroredStrategy, keras issue 20585).

`strategy.run` + `tf.GradientTape` + the Keras 3 model and optimizer. The loss of a replica
is sum(cross-entropy * weight) / (weight summed over the GLOBAL batch, all-reduced), so the
gradients the optimizer sums over replicas equal one replica's gradient on the whole global
batch. Several steps run inside one `tf.function` call (a `tf.range` loop over the
distributed iterator) to cut Python overhead per step.

Gradient clipping is by the norm of the GLOBAL batch's gradient: the step all-reduces the
gradients itself, clips them, and the optimizer then skips its own all-reduce. (Keras'
`global_clipnorm` clips each replica's local gradient before summing, so 2 replicas would clip
differently from 1, and a multi-worker run differently from a single machine.)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from nextword.model.builder import build_model, final_word_logits_fn
from nextword.model.config import PRECISIONS, ModelConfig
from nextword.model.dropout import hashed_masks
from nextword.model.metrics import weighted_token_loss
from nextword.model.schedule import DECAY_SHARE, Schedule


class ScheduledRate(keras.optimizers.schedules.LearningRateSchedule):
    """model.schedule.Schedule.rate in the graph: called by the optimizer with its iteration count.

    `time_fraction` (float32 variable) is train_seconds / time_budget, and `decay_end` (wsd) where the rate
    reaches 0 (Schedule.decay_end), both set by the loop between calls."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.time_fraction = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="time_fraction")
        self.decay_end = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="decay_end")

    def set_seconds(self, train_seconds: float, decay_from: float = -1.0) -> None:
        if self.schedule.time_budget:
            self.time_fraction.assign(min(1.0, train_seconds / self.schedule.time_budget))
        self.decay_end.assign(Schedule.decay_end(decay_from))

    def __call__(self, step):
        schedule = self.schedule
        step = tf.cast(step, tf.float32)
        warm = tf.minimum(1.0, (step + 1.0) / schedule.warmup_steps) if schedule.warmup_steps else tf.constant(1.0)
        if schedule.kind == "constant":
            return schedule.peak * warm
        progress = tf.minimum(1.0, tf.maximum(step / schedule.planned_steps, self.time_fraction))
        if schedule.kind == "wsd":
            return schedule.peak * warm * tf.clip_by_value((self.decay_end - progress) / DECAY_SHARE, 0.0, 1.0)
        final = schedule.final_fraction
        return schedule.peak * warm * (final + (1.0 - final) * 0.5 * (1.0 + tf.cos(math.pi * progress)))

    def get_config(self):
        return self.schedule.to_dict()


def _gradients_already_summed(optimizer_class):
    """The optimizer class without its cross-replica sum: Trainer.replica_step sums (and clips)."""

    class Summed(optimizer_class):
        def _all_reduce_sum_gradients(self, grads_and_vars):
            return list(grads_and_vars)

    Summed.__name__ = optimizer_class.__name__
    return Summed


def not_decayed(model: keras.Model) -> list:
    """Variables weight decay skips: the embeddings (tokens, positions) and every vector (biases,
    layer-norm scales and offsets), as in GPT-2 / nanoGPT."""
    embeddings = model.get_layer("embedding").trainable_weights
    return embeddings + [v for v in model.trainable_variables if len(v.shape) < 2 and not any(v is e for e in embeddings)]


def make_optimizer(name: str, learning_rate, loss_scaling: bool, weight_decay: float = 0.0,
                   model: keras.Model | None = None) -> keras.optimizers.Optimizer:
    """learning_rate: a float or a keras LearningRateSchedule (model.schedule.ScheduledRate).
    weight_decay (decoupled, "adamw" only) skips `not_decayed(model)`."""
    # "sgd" is not offered on the CLI; tests use it because, unlike adam/rmsprop, its step
    # scales with the gradient, so a wrongly averaged loss shows up in the weights.
    classes = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop,
               "sgd": keras.optimizers.SGD}
    options = {"weight_decay": weight_decay} if name == "adamw" else {}
    optimizer = _gradients_already_summed(classes[name])(learning_rate=learning_rate, **options)
    if name == "adamw" and model is not None:
        optimizer.exclude_from_weight_decay(var_list=not_decayed(model))
    # Loss scaling keeps float16 gradients from underflowing; apply() unscales and skips inf steps.
    # bfloat16 has float32's exponent range: it needs none.
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def combine_repeated_rows(gradient):
    """An embedding's gradient (IndexedSlices, a row per token occurrence) with the rows of a
    repeated id summed: the norm of its values is then the norm of the dense gradient, however
    the occurrences were split over replicas (tf.clip_by_global_norm reads the values)."""
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    ids, position = tf.unique(gradient.indices)
    rows = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(ids)[0])
    return tf.IndexedSlices(rows, ids, gradient.dense_shape)


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
        learning_rate,
        precision: str = "float32",
        seed: int = 0,
        weight_decay: float = 0.0,
        clip_norm: float = 0.0,
        jit_compile: bool = False,
    ):
        """learning_rate: a float, or a callable building the schedule inside the strategy's
        scope (its variables must be created there): () -> keras LearningRateSchedule.
        precision: a PRECISIONS policy (variables stay float32 under both mixed ones; only
        mixed_float16 scales the loss).
        clip_norm: clip the global batch's gradient to this norm (0: off).
        jit_compile: compile each replica's forward and backward pass with XLA (see `gradients`)."""
        self.strategy = strategy
        self.model_config = model_config
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.loss_scaling = precision == "mixed_float16"
        self.clip_norm = clip_norm
        keras.mixed_precision.set_dtype_policy(precision)
        # Seeds weight init and every dropout SeedGenerator (their states are model variables,
        # checkpointed, so a resumed run draws the same masks).
        keras.utils.set_random_seed(seed)
        with strategy.scope():
            self.model = build_model(model_config)
            self.learning_rate = learning_rate() if callable(learning_rate) else learning_rate
            self.optimizer = make_optimizer(optimizer_name, self.learning_rate, self.loss_scaling, weight_decay, self.model)
            self.optimizer.build(self.model.trainable_variables)
        keras.mixed_precision.set_dtype_policy("float32")
        self.jit_compile = jit_compile
        # XLA compiles the replica's forward + backward only (the cross-replica sums, the clip and the
        # optimizer stay outside), and returns dense embedding gradients: sparse ones out of an XLA
        # cluster reach the all-reduce with a different row count per replica and abort it under
        # MirroredStrategy (seen here; keras issue 18145, keras-hub issue 949).
        self._gradients = tf.function(self._compiled_gradients, jit_compile=True) if jit_compile else self.gradients
        self._train_steps = tf.function(self._train_steps_fn, reduce_retracing=True)
        # int32[batch, context] -> float32[batch, vocab]: the word after the window (validation)
        self.final_word_logits = final_word_logits_fn(self.model)

    def replica_step(self, context, targets, weights):
        """One step on one replica's share of the global batch; returns (loss sum, weight sum)."""
        local_weight = tf.reduce_sum(weights)
        global_weight = tf.distribute.get_replica_context().all_reduce("sum", local_weight)
        loss_sum, gradients = self._gradients(context, targets, weights, global_weight)
        variables = self.model.trainable_variables
        # The global batch's gradient on every replica (the optimizer's own sum is switched off).
        gradients = tf.distribute.get_replica_context().all_reduce("sum", gradients)
        if self.clip_norm:
            # Under loss scaling the gradients are scaled: so is the threshold (same clip, unscaled).
            scale = self.optimizer.scale_loss(1.0) if self.loss_scaling else 1.0
            gradients, _ = tf.clip_by_global_norm([combine_repeated_rows(g) for g in gradients], self.clip_norm * scale)
        self.optimizer.apply(gradients, variables)
        return loss_sum, local_weight

    def gradients(self, context, targets, weights, global_weight, dense=False):
        """-> (loss sum, this replica's gradients of loss sum / global weight, loss-scaled under
        mixed_float16), one per trainable variable; dense: embeddings' as dense tensors too."""
        with tf.GradientTape() as tape:
            logits = self.model(context, training=True)
            loss_sum = weighted_token_loss(logits, targets, weights)
            loss = loss_sum / tf.maximum(global_weight, 1.0)
            scaled = self.optimizer.scale_loss(loss) if self.loss_scaling else loss
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        return loss_sum, [tf.convert_to_tensor(g) for g in gradients] if dense else gradients

    def _compiled_gradients(self, context, targets, weights, global_weight):
        """`gradients` as XLA compiles them: dense, and dropout's masks from a hash XLA fuses (model/dropout.py:
        XLA's Philox, Keras's, cost ~17% of the transformer's compiled step on a CPU, its ThreeFry ~6%)."""
        with hashed_masks():
            return self.gradients(context, targets, weights, global_weight, dense=True)

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
