"""Dropout whose masks XLA fuses into the step: a counter-based hash, not a random-number kernel.

Keras's dropout draws its mask with TensorFlow's stateless Philox. Compiled by XLA on a CPU that draw costs
~9 ns an element: a [5632, 128] mask (a transformer's activations at batch 128, window 44) took 6.2 ms, and
the five masks of the default recipe's step were ~17% of its time. XLA's ThreeFry (0.3's first fix) cut a mask
to ~1.2-2 ms, but they were still ~6% of the step. Both run as kernels of their own, whose bits are written
out, then read back.

Here each element's 32 bits are a hash of its index and the seed (`mask_bits`): a few integer multiplies and
shifts that XLA fuses into the op applying the mask, so nothing is drawn or stored. The compiled step then runs
within the noise of a step without dropout (x1.04-1.05 against ThreeFry's masks: bench/RESULTS.md "Dropout
masks from a hash"). The hash is a counter-based generator of the kind Philox and ThreeFry are (Salmon et al.
2011), with fewer rounds: two rounds of a 32-bit integer finaliser chosen for its avalanche ([16 21f0aaad 15
735a2d97 15], C. Wellons' hash-prospector), keyed by the layer's SeedGenerator (whose state the checkpoint
keeps: a resumed run draws the same masks). Dropout needs masks without visible structure, not a
cryptographic stream; tests/test_dropout.py checks each bit's balance and the correlation between
neighbouring elements, consecutive steps and layers.

TensorFlow's own kernels would run the hash as a dozen separate ops, slower than its Philox kernel, so only a
step traced inside `hashed_masks()` (model.loop.Trainer's XLA step) uses it; elsewhere the layer is Keras's.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

_hashed = False
GOLDEN = 0x9E3779B9  # 2^32 / the golden ratio: keys of consecutive seeds far apart before mixing


@contextlib.contextmanager
def hashed_masks():
    """Layers traced inside draw their masks from `mask_bits`: only for code XLA compiles."""
    global _hashed
    before, _hashed = _hashed, True
    try:
        yield
    finally:
        _hashed = before


def _mix(value):
    """A bijection of uint32 with full avalanche: each input bit flips each output bit with probability ~1/2."""
    value = tf.bitwise.bitwise_xor(value, tf.bitwise.right_shift(value, 16)) * tf.constant(0x21F0AAAD, tf.uint32)
    value = tf.bitwise.bitwise_xor(value, tf.bitwise.right_shift(value, 15)) * tf.constant(0x735A2D97, tf.uint32)
    return tf.bitwise.bitwise_xor(value, tf.bitwise.right_shift(value, 15))


def mask_bits(shape, seed) -> tf.Tensor:
    """uint32[shape]: 32 bits an element, a hash of its row-major index and seed int32[2].

    Two keys from the seed (both of its words mixed, so a step's and the next step's keys share nothing),
    then two rounds an element, the second keyed by the second key: elements of two seeds are not the same
    values reordered. For tensors of fewer than 2^31 elements (the index is counted in int32)."""
    words = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)
    first_key = _mix(tf.bitwise.bitwise_xor(words[0], _mix(words[1] + tf.constant(GOLDEN, tf.uint32))))
    second_key = _mix(first_key + tf.constant(GOLDEN, tf.uint32))
    index = tf.bitcast(tf.reshape(tf.range(tf.reduce_prod(shape), dtype=tf.int32), shape), tf.uint32)
    return _mix(_mix(tf.bitwise.bitwise_xor(index, first_key)) + second_key)


@keras.saving.register_keras_serializable(package="nextword")
class Dropout(keras.layers.Dropout):
    """keras.layers.Dropout, whose mask comes from `mask_bits` when traced inside `hashed_masks()`."""

    def call(self, inputs, training=False):
        if not (_hashed and training and 0 < self.rate < 1 and self.noise_shape is None):
            return super().call(inputs, training=training)
        # the seed as Keras's own dropout casts it (stateless ops take int32 under XLA)
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        # kept with probability 1 - rate (to 2^-32), compared as integers
        keep = mask_bits(tf.shape(inputs), seed) >= tf.constant(min(round(self.rate * 2**32), 2**32 - 1), tf.uint32)
        return tf.where(keep, inputs * tf.cast(1 / (1 - self.rate), inputs.dtype), tf.zeros_like(inputs))
