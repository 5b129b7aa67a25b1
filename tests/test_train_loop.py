"""The distributed step: 2 replicas at global batch B == 1 replica at B; mixed precision; cuDNN configs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from _train_data import write_data_dir
from nextword.model.builder import is_cudnn_eligible
from nextword.model.config import NOTEBOOK_PRESET, ModelConfig
from nextword.model.loop import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE_STEP = textwrap.dedent(
    """
    import sys, numpy as np
    from nextword.model.strategy import split_cpu, make_strategy
    devices, data_dir, objective, out, optimizer, arch = int(sys.argv[1]), *sys.argv[2:6], sys.argv[6]
    clip_norm, tie, jit_compile = float(sys.argv[7]), sys.argv[8] == "tie", sys.argv[9] == "jit"
    dropout = float(sys.argv[10])
    split_cpu(devices)
    import tensorflow as tf
    from nextword.model.config import ModelConfig
    from nextword.model.loop import Trainer
    from nextword.tfrecords.reader import ReaderConfig, make_dataset
    strategy = make_strategy("mirrored" if devices > 1 else "default", devices)
    assert strategy.num_replicas_in_sync == devices
    config = ModelConfig(vocab_size=22, context_length=6, arch=arch, layers=2, units=16, embedding_dim=8, heads=2,
                         dropout=dropout, objective=objective, tie_embeddings=tie)
    trainer = Trainer(strategy, config, optimizer, 0.5 if optimizer == "sgd" else 0.01, seed=7, clip_norm=clip_norm,
                      jit_compile=jit_compile)
    global_batch = 16
    def dataset_fn(ctx):
        return make_dataset(data_dir, "train", ReaderConfig(batch_size=ctx.get_per_replica_batch_size(global_batch), objective=objective, seed=1), input_context=ctx)
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    loss, weight = trainer.train_steps(iterator, 2)
    np.savez(out, loss=float(loss / weight), *[v.numpy() for v in trainer.model.trainable_variables])
    """
)


def run_one_step(devices: int, data_dir: str, objective: str, out: str, optimizer: str = "sgd", arch: str = "lstm",
                 clip_norm: float = 0.0, tie: bool = False, jit_compile: bool = False, dropout: float = 0.0) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(
        [sys.executable, "-c", ONE_STEP, str(devices), data_dir, objective, out, optimizer, arch, str(clip_norm),
         "tie" if tie else "untied", "jit" if jit_compile else "eager", str(dropout)],
        check=True, env=env, timeout=240, capture_output=True,
    )
    return dict(np.load(out))


@pytest.mark.slow
@pytest.mark.parametrize("objective,optimizer,arch", [("last", "sgd", "lstm"), ("all", "sgd", "lstm"), ("all", "sgd", "transformer")])
def test_two_replicas_equal_one_replica_at_the_same_global_batch(tmp_path, objective, optimizer, arch):
    # sgd: its step scales with the gradient, so a loss averaged per replica instead of over
    # the global batch would change the weights. (Adam's optimizer state under 2 replicas, over
    # many steps and an epoch boundary: tests/test_elastic_resume.py.)
    data_dir = write_data_dir(str(tmp_path / "data"))
    one = run_one_step(1, data_dir, objective, str(tmp_path / "one.npz"), optimizer, arch)
    two = run_one_step(2, data_dir, objective, str(tmp_path / "two.npz"), optimizer, arch)
    assert one.keys() == two.keys() and len(one) > 3
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # and the step did change the weights (a broken loop that never applies would pass above)
    fresh_config = ModelConfig(vocab_size=22, context_length=6, arch=arch, layers=2, units=16, embedding_dim=8, heads=2,
                               dropout=0.0, objective=objective)
    fresh = Trainer(tf.distribute.get_strategy(), fresh_config, "sgd", 0.5, seed=7)
    assert not np.allclose(fresh.model.trainable_variables[0].numpy(), one["arr_0"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_xla_compiled_step_on_two_replicas_equals_the_uncompiled_step_on_one(tmp_path, arch):
    """jit_compile under MirroredStrategy on 2 logical CPUs, with a global-norm clip and tied embeddings
    (the embedding matrix gets a sparse and a dense gradient). Sparse embedding gradients leaving the
    XLA cluster aborted the all-reduce ("Shape mismatch in the collective instance": each replica's
    IndexedSlices had its own row count); the compiled step returns them dense."""
    data_dir = write_data_dir(str(tmp_path / "data"))
    settings = dict(optimizer="sgd", arch=arch, clip_norm=0.5, tie=True)
    one = run_one_step(1, data_dir, "all", str(tmp_path / "one.npz"), **settings)
    two = run_one_step(2, data_dir, "all", str(tmp_path / "two.npz"), **settings, jit_compile=True)
    assert one.keys() == two.keys() and len(one) > 3
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.slow
def test_the_compiled_step_with_hashed_dropout_masks_runs_on_two_replicas_and_repeats_for_a_seed(tmp_path):
    """Dropout's masks from a hash (model/dropout.py) under MirroredStrategy on 2 logical CPUs: each
    replica draws from its layers' seed generators; the same seed gives the same weights, and the masks act."""
    data_dir = write_data_dir(str(tmp_path / "data"))
    settings = dict(optimizer="sgd", arch="transformer", jit_compile=True)
    first, again = (run_one_step(2, data_dir, "all", str(tmp_path / f"{name}.npz"), **settings, dropout=0.3)
                    for name in ("first", "again"))
    without = run_one_step(2, data_dir, "all", str(tmp_path / "without.npz"), **settings)
    assert np.isfinite(first["loss"]) and len(first) > 3
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    assert first["loss"] != without["loss"]


def test_mixed_precision_builds_loss_scaling_and_float32_logits():
    config = ModelConfig(vocab_size=12, context_length=4, layers=1, units=8, embedding_dim=4)
    trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, precision="mixed_float16")
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert trainer.model.get_layer("rnn_0").compute_dtype == "float16"
    logits = trainer.model(tf.zeros([2, 4], tf.int32))
    assert logits.dtype == tf.float32
    dataset = tf.data.Dataset.from_tensors(
        (tf.ones([2, 4], tf.int32), tf.fill([2, 4], 3), tf.ones([2, 4], tf.float32))
    ).repeat(3)
    before = trainer.model.get_layer("logits").kernel.numpy().copy()
    loss, weight = trainer.train_steps(iter(dataset), 3)
    assert np.isfinite(float(loss)) and float(weight) == 24.0
    assert not np.allclose(before, trainer.model.get_layer("logits").kernel.numpy())
    # the global policy is restored, so later models are float32 again
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.parametrize(
    "overrides",
    [dict(arch="lstm"), dict(arch="gru"), NOTEBOOK_PRESET, dict(arch="gru", bidirectional=True, objective="last")],
)
def test_recurrent_layers_stay_cudnn_eligible(overrides):
    config = ModelConfig(vocab_size=12, context_length=4, **{"units": 8, "embedding_dim": 4, **overrides})
    trainer = Trainer(tf.distribute.get_strategy(), config, "rmsprop", 1e-3)
    recurrent = [layer for layer in trainer.model.layers if layer.name.startswith("rnn_")]
    assert len(recurrent) == config.layers
    assert all(is_cudnn_eligible(layer) for layer in recurrent)
    # no mask: pads are plain inputs (a pre-padded mask would force the slow kernel)
    assert trainer.model.get_layer("embedding").mask_zero is False


def test_pad_targets_weigh_nothing():
    """The step's loss is the cross-entropy of the weighted positions only: what the model says at a
    pad target (weight 0) moves neither the loss nor, whatever that target's id, the weights."""
    config = ModelConfig(vocab_size=12, context_length=4, layers=1, units=8, embedding_dim=4, dropout=0.0)
    context = tf.constant([[0, 0, 3, 4]], tf.int32)
    weights = tf.constant([[0.0, 1.0, 1.0, 1.0]])
    results = []
    for pad_target in (0, 7):  # the pad position's target: a pad, or any id at all
        tf.keras.utils.set_random_seed(3)
        trainer = Trainer(tf.distribute.get_strategy(), config, "sgd", 0.5)
        targets = tf.constant([[pad_target, 3, 4, 5]], tf.int32)
        logits = trainer.model(context, training=False)[0]  # before the step: what the step's loss sees
        expected = sum(float(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets[0, t], logits=logits[t]))
                       for t in (1, 2, 3))
        loss, weight = trainer.train_steps(iter(tf.data.Dataset.from_tensors((context, targets, weights))), 1)
        assert float(loss) == pytest.approx(expected, rel=1e-5) and float(weight) == 3.0
        results.append((float(loss), [variable.numpy() for variable in trainer.model.trainable_variables]))
    assert results[0][0] == results[1][0]
    for after_pad, after_seven in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(after_pad, after_seven)  # the same update: the pad target had no say


@pytest.mark.slow
def test_gradient_clipping_is_by_the_global_batch_norm_on_any_replica_count(tmp_path):
    """Clipped at a norm far below the gradient's, 2 replicas step exactly as 1 (Keras'
    global_clipnorm clips each replica's half-batch gradient before the sum, which would not);
    tied embeddings ride along (their matrix gets two gradients, dense and sparse)."""
    data_dir = write_data_dir(str(tmp_path / "data"))
    clipped = dict(optimizer="sgd", arch="transformer", clip_norm=0.05, tie=True)
    one = run_one_step(1, data_dir, "all", str(tmp_path / "one.npz"), **clipped)
    two = run_one_step(2, data_dir, "all", str(tmp_path / "two.npz"), **clipped)
    unclipped = run_one_step(1, data_dir, "all", str(tmp_path / "free.npz"), **{**clipped, "clip_norm": 0.0})
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=1e-4, atol=1e-6, err_msg=name)
    config = ModelConfig(vocab_size=22, context_length=6, arch="transformer", layers=2, units=16, embedding_dim=8,
                         heads=2, dropout=0.0, objective="all", tie_embeddings=True)
    start = [v.numpy() for v in Trainer(tf.distribute.get_strategy(), config, "sgd", 0.5, seed=7).model.trainable_variables]

    def moved(run):  # the norm of the two steps' update
        return float(np.sqrt(sum(np.sum((run[f"arr_{i}"] - initial) ** 2) for i, initial in enumerate(start))))

    # sgd at lr 0.5: each clipped step moves the weights by at most 0.5 x 0.05
    assert moved(one) <= 2 * 0.5 * 0.05 * (1 + 1e-4)
    assert moved(unclipped) > 4 * moved(one), "the clip did not act: the unclipped step moved as little"
