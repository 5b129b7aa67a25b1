"""Generation past the context: the measurement that chose carried state (bench/context_bench.py)
scores exactly what each way of generating would compute."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from nextword.model.builder import build_model
from nextword.model.config import ModelConfig
from nextword.model.export_graph import RecurrentDecoder
from nextword.model.synthetic import random_model

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules
from context_bench import binned, losses_by_distance, starts  # noqa: E402

CONTEXT, HORIZON, VOCAB = 5, 7, 30


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=-1, keepdims=True)
    return np.log(np.exp(logits).sum(axis=-1)) - np.take_along_axis(logits, targets[..., None], -1)[..., 0]


def test_carried_and_reread_losses_are_what_each_way_of_generating_computes():
    config = ModelConfig(vocab_size=VOCAB, context_length=CONTEXT, arch="gru", layers=2, units=8, embedding_dim=4,
                         dropout=0.0, bidirectional=False, objective="all")
    model = random_model(config, seed=4)
    rng = np.random.default_rng(1)
    documents = [rng.integers(2, VOCAB, size=length).astype(np.int32) for length in (30, 14)]
    points = starts(documents, CONTEXT, HORIZON, every=6)
    assert points == [(0, 0), (0, 6), (0, 12), (1, 0)]
    curves = losses_by_distance(RecurrentDecoder(model, config), documents, points, CONTEXT, HORIZON, batch=3)

    rows = np.stack([documents[i][s:s + CONTEXT + HORIZON + 1] for i, s in points])
    # carried: one network run over the whole row from a zero state (what gen's carried state equals)
    long = build_model(ModelConfig.from_dict({**config.to_dict(), "context_length": rows.shape[1]}))
    long.set_weights(model.get_weights())
    logits = long(tf.constant(rows), training=False).numpy()[:, CONTEXT - 1:-1]
    np.testing.assert_allclose(curves["carried"], nll(logits, rows[:, CONTEXT:]).mean(axis=0), rtol=1e-4)
    # re-read: the window of the last CONTEXT words, from a zero state, for every word
    reread = [nll(model(tf.constant(rows[:, k:k + CONTEXT]), training=False).numpy()[:, -1], rows[:, CONTEXT + k])
              for k in range(HORIZON + 1)]
    np.testing.assert_allclose(curves["reread"], np.mean(reread, axis=1), rtol=1e-4)
    assert curves["carried"][0] == pytest.approx(curves["reread"][0], rel=1e-6)  # the first word: the same window
    assert not np.allclose(curves["carried"][1:], curves["reread"][1:])  # and then they differ
    assert [row["from"] for row in binned(curves["carried"])] == [0, 1]
