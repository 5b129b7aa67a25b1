"""model/dropout.py: the compiled training step draws dropout's masks from ThreeFry (XLA's Philox, which
Keras's dropout uses, costs ~9 ns an element on a CPU); uncompiled, the layer is Keras's."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from nextword.model.config import ModelConfig
from nextword.model.dropout import Dropout, threefry_masks
from nextword.model.loop import Trainer

THREEFRY = 2  # tensorflow's RNG_ALG_THREEFRY


def compiled_masks(layer, inputs, calls: int) -> list[np.ndarray]:
    @tf.function(jit_compile=True)
    def step(x):
        with threefry_masks():
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
    with threefry_masks():
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


def test_the_compiled_training_step_draws_its_masks_from_threefry_and_the_uncompiled_one_does_not():
    config = ModelConfig(vocab_size=30, context_length=6, arch="transformer", layers=1, units=16, heads=2,
                         dropout=0.1, objective="all")
    batch = (tf.ones([4, 6], tf.int32) * 3, tf.ones([4, 6], tf.int32) * 4, tf.ones([4, 6]), tf.constant(24.0))
    algorithms = {}
    for compiled in (True, False):
        trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, jit_compile=compiled)
        gradients = trainer._gradients if compiled else tf.function(trainer.gradients)
        algorithms[compiled] = random_algorithms(gradients.get_concrete_function(*batch).graph)
    assert algorithms[True] == {THREEFRY}, algorithms
    assert algorithms[False] and THREEFRY not in algorithms[False], algorithms
