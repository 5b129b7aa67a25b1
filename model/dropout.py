"""Dropout whose masks XLA draws fast: the compiled training step's masks from ThreeFry, not Philox.

Keras's dropout draws its mask with TensorFlow's stateless Philox. Compiled by XLA on a CPU that draw costs
~9 ns an element: a [5632, 128] mask (a transformer's activations at batch 128, window 44) took 6.2 ms against
0.54 ms for XLA's ThreeFry, and the five masks of the default recipe's step were ~17% of its time (x1.21 the
windows/s drawn from ThreeFry: bench/RESULTS.md "The training step's dropout masks"). TensorFlow's own kernels have no ThreeFry, so only a
step traced inside `threefry_masks()` (model.loop.Trainer's XLA step) uses it; elsewhere the layer is Keras's.
The masks are as random either way (another counter-based generator, seeded by the same SeedGenerator, whose
state the checkpoint keeps: a resumed run draws the same masks), each element kept with probability 1 - rate.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

_threefry = False


@contextlib.contextmanager
def threefry_masks():
    """Layers traced inside draw their masks from ThreeFry: only for code XLA compiles."""
    global _threefry
    before, _threefry = _threefry, True
    try:
        yield
    finally:
        _threefry = before


@keras.saving.register_keras_serializable(package="nextword")
class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout, whose mask comes from ThreeFry when traced inside `threefry_masks()`."""

    def call(self, inputs, training=False):
        if not (_threefry and training and 0 < self.rate < 1 and self.noise_shape is None):
            return super().call(inputs, training=training)
        # the seed as Keras's own dropout casts it (stateless ops take int32 under XLA)
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        bits = tf.random.stateless_uniform(tf.shape(inputs), seed=seed, minval=None, maxval=None, dtype=tf.uint32,
                                           alg="threefry")
        # kept with probability 1 - rate (to 2^-32), compared as integers: ~x1.1 the step (noisy) against
        # tf.nn.experimental.stateless_dropout's floats from the same bits (bench/RESULTS.md)
        keep = bits >= tf.constant(min(round(self.rate * 2**32), 2**32 - 1), tf.uint32)
        return tf.where(keep, inputs * tf.cast(1 / (1 - self.rate), inputs.dtype), tf.zeros_like(inputs))
