"""Validation and eval compute only what the metric needs: the final word's logits, in batches
whose logits stay within a fixed budget whatever the vocabulary. (Spread over replicas and
workers: tests/test_elastic_resume.py and tests/test_multiworker.py compare with one device.)"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nextword.model.builder import build_model, final_word_logits_fn
from nextword.model.config import ModelConfig
from nextword.model.metrics import EVAL_LOGITS_PER_REPLICA, eval_batch_per_replica, final_word_sums

CONTEXT, VOCAB = 6, 97


def _config(objective: str) -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, context_length=CONTEXT, arch="lstm", layers=2, units=8,
                       embedding_dim=4, dropout=0.1, bidirectional=False, objective=objective)


def test_an_all_model_projects_only_the_last_position_onto_the_vocabulary():
    model = build_model(_config("all"))
    final = final_word_logits_fn(model)
    context = tf.constant(np.random.default_rng(0).integers(0, VOCAB, (5, CONTEXT)), tf.int32)
    np.testing.assert_allclose(final(context).numpy(), model(context, training=False).numpy()[:, -1, :], atol=1e-6)

    graph = tf.function(final).get_concrete_function(tf.TensorSpec([5, CONTEXT], tf.int32)).graph
    shapes = [output.shape.as_list() for op in graph.get_operations() for output in op.outputs]
    assert [5, VOCAB] in shapes
    assert not [shape for shape in shapes if shape[-1:] == [VOCAB] and len(shape) == 3]  # no [batch, C, vocab]


def test_a_last_model_is_scored_as_it_predicts():
    model = build_model(_config("last"))
    context = tf.zeros([3, CONTEXT], tf.int32)
    np.testing.assert_allclose(final_word_logits_fn(model)(context).numpy(), model(context).numpy(), atol=1e-6)


def test_the_eval_batch_keeps_logits_per_replica_within_the_budget():
    assert eval_batch_per_replica(500) == 1024  # small vocabularies: the batch is capped
    for vocab in (20_000, 50_000, 250_000):
        assert eval_batch_per_replica(vocab) * vocab <= EVAL_LOGITS_PER_REPLICA
    assert eval_batch_per_replica(10_000_000) == 16  # and never below a useful batch


def test_padding_rows_are_read_by_no_metric():
    logits = tf.math.log(tf.constant([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]]))
    sums = final_word_sums(logits, tf.constant([1, 0, -1]))  # a real row, a pad target, a padding row
    assert float(sums["rows"]) == 2 and float(sums["windows"]) == 1
    assert float(sums["loss"]) == pytest.approx(-np.log(0.7), rel=1e-6)
