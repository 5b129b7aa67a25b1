"""The export's n-gram mixture: the graph's Kneser-Ney lookup against model/ngram.py's, the mixing
weight's fit, the export's signatures against the mixture recomputed in numpy, and the settings."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nextword.errors import SettingsError
from nextword.model import ngram
from nextword.model.builder import final_word_logits_fn
from nextword.model.ngram_graph import NgramMixture
from nextword.model.settings import TrainSettings
from test_export import call_generate, make_export
from test_export_fixtures import tiny_data_dir  # noqa: F401
from test_ngram import events, random_documents


@pytest.fixture(scope="module")
def counted() -> ngram.KneserNey:
    return ngram.count_events(*events(random_documents(200, 40, seed=5), 5), 40, 5)


def test_the_graph_lookup_equals_the_numpy_distributions(counted):
    rng = np.random.default_rng(0)
    seen, _ = events(random_documents(20, 40, seed=5), 5)  # contexts training had, pads at document starts
    contexts = np.concatenate([seen, rng.integers(0, 40, (60, 4)), np.zeros((1, 4), np.int64), np.full((1, 4), 39)])
    expected = ngram.predictive_distributions(counted, contexts)
    got = NgramMixture(counted, 0.5).distributions(tf.constant(contexts, tf.int32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    # unseen contexts (39 never occurs) back off to lower orders: not every row the unigram
    assert not np.allclose(got[0], got[-1])


def test_the_mixture_is_the_log_of_the_weighted_sum(counted):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 40)).astype(np.float32) * 3
    windows = rng.integers(0, 40, (5, 9)).astype(np.int32)
    mixed = NgramMixture(counted, 0.3).mixed_log_probabilities(tf.constant(logits), tf.constant(windows)).numpy()
    network = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = 0.3 * network + 0.7 * ngram.predictive_distributions(counted, windows[:, -4:])
    np.testing.assert_allclose(np.exp(mixed), expected, rtol=1e-5)


def test_the_weight_maximises_the_held_out_likelihood():
    rng = np.random.default_rng(2)
    network, five_gram = np.log(rng.uniform(1e-4, 1, 500)), np.log(rng.uniform(1e-4, 1, 500))
    weight = ngram.fit_network_weight(network, five_gram)
    grid = np.linspace(0.001, 0.999, 999)
    losses = [-ngram.mixture_log_probabilities(network, five_gram, w).mean() for w in grid]
    assert weight == pytest.approx(grid[int(np.argmin(losses))], abs=2e-3)
    # one model always better: its weight goes to the end; logs far below exp's range do not give NaN
    assert ngram.fit_network_weight(np.full(50, -2000.0), np.full(50, -1.0)) < 1e-3
    assert ngram.fit_network_weight(np.full(50, -1.0), np.full(50, -2000.0)) > 1 - 1e-3
    assert ngram.fit_network_weight(np.zeros(0), np.zeros(0)) == 0.5
    assert np.isfinite(ngram.mixture_log_probabilities(np.array([-1.0]), np.array([-2.0]), 1.0)).all()


@pytest.fixture(scope="module")
def mixed_export(tiny_dataset, tmp_path_factory):
    return make_export(tiny_dataset, tmp_path_factory.mktemp("mixed") / "export", arch="lstm")


def test_score_ids_and_greedy_generation_follow_the_mixture(mixed_export, tiny_dataset):
    card = mixed_export.card["ngram"]
    assert card["order"] == 5 and 0 <= card["network_weight"] <= 1 and card["counted"] == "every train window"
    contexts, targets = ngram.events_from_dataset(tiny_dataset, "train", 5)
    counts = ngram.count_events(contexts, targets, mixed_export.config.vocab_size, 5)
    windows = np.random.default_rng(3).integers(0, mixed_export.config.vocab_size, (6, mixed_export.config.context_length))
    windows[0, :5] = 0  # a document start
    logits = final_word_logits_fn(mixed_export.model)(windows).numpy().astype(np.float64)
    network = np.exp(logits - logits.max(axis=1, keepdims=True))
    network /= network.sum(axis=1, keepdims=True)
    weight = card["network_weight"]
    expected = weight * network + (1 - weight) * ngram.predictive_distributions(counts, windows[:, -4:])
    scored = mixed_export.loaded.signatures["score_ids"](context=tf.constant(windows, tf.int32))["logits"].numpy()
    np.testing.assert_allclose(np.exp(scored), expected, rtol=1e-4, atol=1e-8)
    # greedy: the first generated word is the mixture's most likely word after the prompt (<pad>/<unk> masked)
    tokens = mixed_export.loaded.signatures["tokenize"](prompts=tf.constant(["the cat", ""]))
    window = tokens["window"].numpy()
    logits = final_word_logits_fn(mixed_export.model)(window).numpy().astype(np.float64)
    network = np.exp(logits - logits.max(axis=1, keepdims=True))
    mixture = weight * network / network.sum(axis=1, keepdims=True) + (1 - weight) * ngram.predictive_distributions(
        counts, window[:, -4:])
    mixture[:, :2] = 0
    generated = call_generate(mixed_export.loaded, ["the cat", ""], greedy=True, num_words=1)
    assert generated["ids"][:, 0].tolist() == mixture.argmax(axis=1).tolist()


def test_without_val_windows_the_export_says_why_it_holds_the_network_alone(tiny_data_dir):  # noqa: F811
    export = make_export(tiny_data_dir, tiny_data_dir + "-export", arch="lstm")  # the fixture has no val split
    assert export.card["ngram"] == {"order": 5, "skipped": "no val windows to choose its weight on"}
    assert "mixed" not in export.card["generation"]


def test_order_zero_exports_the_network_alone(tiny_data_dir, tmp_path):  # noqa: F811
    from nextword.model.export import export_model
    from test_export_fixtures import model_config_for, random_model

    config = model_config_for(tiny_data_dir, arch="lstm")
    model = random_model(config)
    card = export_model(model, config, tiny_data_dir, str(tmp_path / "export"), {}, ngram_order=0)
    assert card["ngram"] is None and "mixed" not in card["generation"]
    loaded = tf.saved_model.load(str(tmp_path / "export" / "saved_model"))
    windows = np.ones((2, config.context_length), np.int32)
    np.testing.assert_allclose(loaded.signatures["score_ids"](context=tf.constant(windows))["logits"].numpy(),
                               final_word_logits_fn(model)(windows).numpy(), rtol=1e-5, atol=1e-6)


def test_ngram_order_settings():
    assert TrainSettings(data_dir="d", out="o").export_ngram_order() == ngram.DEFAULT_ORDER == 5
    assert TrainSettings(data_dir="d", out="o", preset="notebook").export_ngram_order() == 0  # the notebook had none
    assert TrainSettings(data_dir="d", out="o", preset="notebook", ngram_order=3).export_ngram_order() == 3
    for bad in (1, -1, 9):
        with pytest.raises(SettingsError, match="--ngram-order"):
            TrainSettings(data_dir="d", out="o", ngram_order=bad)
