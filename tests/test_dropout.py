"""model/dropout.py: the compiled training step draws dropout's masks from a hash of each element's index and
the seed, which XLA fuses (its Philox, which Keras's dropout uses, costs ~9 ns an element on a CPU); uncompiled,
the layer is Keras's."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from nextword.model.config import ModelConfig
from nextword.model.dropout import Dropout, hashed_masks, mask_bits
from nextword.model.loop import Trainer


def compiled_masks(layer, inputs, calls: int) -> list[np.ndarray]:
    @tf.function(jit_compile=True)
    def step(x):
        with hashed_masks():
            return layer(x, training=True)

    return [step(inputs).numpy() for _ in range(calls)]


def test_compiled_masks_drop_the_rate_scale_the_rest_and_move_on():
    inputs = tf.ones([256, 128])
    first, second = compiled_masks(Dropout(0.25, seed=5), inputs, 2)
    for output in (first, second):
        assert abs((output == 0).mean() - 0.25) < 0.01
        np.testing.assert_allclose(output[output != 0], 1 / 0.75, rtol=1e-6)
    assert not np.array_equal(first, second)  # the seed generator moved on
    # the same seed state draws the same masks: a resumed run (the state is checkpointed) repeats them
    again = compiled_masks(Dropout(0.25, seed=5), inputs, 2)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.array_equal(compiled_masks(Dropout(0.25, seed=6), inputs, 1)[0], first)


def test_uncompiled_or_outside_the_context_it_is_kerass_dropout():
    inputs = tf.random.normal([64, 32])
    ours, keras_own = Dropout(0.3, seed=9), keras.layers.Dropout(0.3, seed=9)
    for _ in range(2):
        np.testing.assert_array_equal(ours(inputs, training=True).numpy(), keras_own(inputs, training=True).numpy())
    with hashed_masks():
        np.testing.assert_array_equal(ours(inputs, training=False).numpy(), inputs.numpy())
        np.testing.assert_array_equal(Dropout(0.0)(inputs, training=True).numpy(), inputs.numpy())


def random_algorithms(graph: tf.Graph) -> set[int]:
    """The `alg` of every stateless random draw in the graph and the functions it calls."""
    found = set()
    graphs = [graph] + [function.graph for function in getattr(graph, "_functions", {}).values()
                        if hasattr(function, "graph")]
    for each in graphs:
        for op in each.get_operations():
            if op.type.startswith("StatelessRandom") and op.type.endswith("V2"):
                producer = op.inputs[-1].op
                if producer.type == "Const":
                    found.add(int(tf.make_ndarray(producer.get_attr("value"))))
    return found


def test_the_compiled_training_step_runs_no_random_kernel_and_the_uncompiled_one_does():
    config = ModelConfig(vocab_size=30, context_length=6, arch="transformer", layers=1, units=16, heads=2,
                         dropout=0.1, objective="all")
    batch = (tf.ones([4, 6], tf.int32) * 3, tf.ones([4, 6], tf.int32) * 4, tf.ones([4, 6]), tf.constant(24.0))
    algorithms = {}
    for compiled in (True, False):
        trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, jit_compile=compiled)
        gradients = trainer._gradients if compiled else tf.function(trainer.gradients)
        algorithms[compiled] = random_algorithms(gradients.get_concrete_function(*batch).graph)
    assert algorithms[True] == set(), algorithms  # the masks are the hash's
    assert algorithms[False], algorithms  # Keras's stateless draws


def reference_bits(shape, seed) -> np.ndarray:
    """mask_bits in numpy, written out from its definition: the hash is part of what a seed means."""
    def mix(value):
        value = (value ^ (value >> np.uint32(16))) * np.uint32(0x21F0AAAD)
        value = (value ^ (value >> np.uint32(15))) * np.uint32(0x735A2D97)
        return value ^ (value >> np.uint32(15))

    golden = np.uint32(0x9E3779B9)
    words = np.array(seed, np.int32).view(np.uint32)
    with np.errstate(over="ignore"):
        first_key = mix(words[0] ^ mix(words[1] + golden))
        second_key = mix(first_key + golden)
        index = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape)
        return mix(mix(index ^ first_key) + second_key)


def test_mask_bits_are_the_same_hash_eager_compiled_and_written_out():
    shape, seed = (3, 50, 7), tf.constant([123456789, 41], tf.int32)
    eager = mask_bits(tf.constant(shape), seed).numpy()
    compiled = tf.function(lambda: mask_bits(tf.constant(shape), seed), jit_compile=True)().numpy()
    np.testing.assert_array_equal(eager, compiled)
    np.testing.assert_array_equal(eager, reference_bits(shape, [123456789, 41]))
    negative = mask_bits(tf.constant([4]), tf.constant([-5, 2**31 - 2])).numpy()  # int32 seeds of any sign
    np.testing.assert_array_equal(negative, reference_bits((4,), [-5, 2**31 - 2]))


def test_mask_bits_show_no_structure_within_a_mask_across_steps_or_across_layers():
    """What dropout needs from its masks: every bit balanced, and masks at rate 0.5 uncorrelated between
    neighbouring elements (along rows and columns), between a layer's consecutive steps (its seed generator
    moves the second word by one) and between two layers in the same step (their first words differ)."""
    shape = (512, 256)
    count = shape[0] * shape[1]
    bits = reference_bits(shape, [1000, 7])
    np.testing.assert_array_equal(bits, mask_bits(tf.constant(shape), tf.constant([1000, 7])).numpy())
    assert len(np.unique(bits)) == count  # one key: a bijection of the index
    tolerance = 5 * 0.5 / np.sqrt(count)  # five standard deviations of a fair bit's mean
    for bit in range(32):
        assert abs(((bits >> bit) & 1).mean() - 0.5) < tolerance, bit

    def kept(seed):
        return (reference_bits(shape, seed) >= 2**31).astype(np.float64)

    def correlation(first, second):
        return abs(np.corrcoef(first.ravel(), second.ravel())[0, 1])

    limit = 5 / np.sqrt(count)
    mask = kept([1000, 7])
    assert correlation(mask[:, :-1], mask[:, 1:]) < limit
    assert correlation(mask[:-1], mask[1:]) < limit
    for other in ([1000, 8], [1001, 7], [999, 8], [1000, 7 + 2**16]):
        assert correlation(mask, kept(other)) < limit, other
        # nor the same values one element along, either way
        assert correlation(mask[:, :-1], kept(other)[:, 1:]) < limit, other
        assert correlation(mask[:, 1:], kept(other)[:, :-1]) < limit, other
