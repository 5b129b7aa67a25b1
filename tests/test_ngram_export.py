"""The export's n-gram mixture: the graph's Kneser-Ney lookup and context cache against model/ngram.py's
and model/context_cache.py's, the mixing weights' fit, the export's signatures against the mixture
recomputed in numpy, and the settings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from nextword.errors import SettingsError
from nextword.model import context_cache, ngram
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
    mixture = NgramMixture(counted, 0.5)
    assert mixture.tuple_keys  # every context found by one search
    got = mixture.distributions(tf.constant(contexts, tf.int32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert_static_shapes_compile_to_the_same(mixture, contexts, got)
    # unseen contexts (39 never occurs) back off to lower orders: not every row the unigram
    assert not np.allclose(got[0], got[-1])


@pytest.mark.parametrize("vocab_size, order, one_search", [(600, 8, False), (60_000, 5, False), (55_000, 5, True)])
def test_contexts_near_and_past_the_int64_keys_limit_are_found(vocab_size, order, one_search):
    # one search needs every context's ids as one int64 (about V^(order-1) < 2^63): past that, one search a depth
    documents = [list(document) for document in random_documents(120, 40, seed=9)]
    documents[0][:3] = [vocab_size - 2, vocab_size - 3, 7]  # ids near V: the largest keys
    counted = ngram.count_events(*events(documents, order), vocab_size, order)
    mixture = NgramMixture(counted, 0.5)
    assert mixture.tuple_keys == one_search
    contexts = np.concatenate([events(documents[:10], order)[0], np.random.default_rng(2).integers(0, 40, (30, order - 1))])
    got = mixture.distributions(tf.constant(contexts, tf.int32)).numpy()
    np.testing.assert_allclose(got, ngram.predictive_distributions(counted, contexts), rtol=2e-5, atol=1e-7)
    assert_static_shapes_compile_to_the_same(mixture, contexts, got)


def assert_static_shapes_compile_to_the_same(mixture: NgramMixture, contexts: np.ndarray, expected: np.ndarray):
    """The lookup traced in static shapes (NgramMixture.static_shapes): the same distributions, and XLA compiles it."""
    with mixture.static_shapes():
        plain = tf.function(mixture.distributions)
        compiled = tf.function(mixture.distributions, jit_compile=True)
        contexts = tf.constant(contexts, tf.int32)
        operations = {operation.type for operation in plain.get_concrete_function(contexts).graph.get_operations()}
        assert "LowerBound" not in operations and "RaggedRange" not in operations
        np.testing.assert_allclose(plain(contexts).numpy(), expected, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(compiled(contexts).numpy(), expected, rtol=1e-6, atol=1e-9)
        assert "scatter" in compiled.experimental_get_compiler_ir(contexts)(stage="hlo")
    assert not mixture._static_shapes  # only within the block


def test_the_static_lookup_finds_every_context_and_no_other(counted):
    # every context training had (each found at its own place), and ids it never had (never found)
    mixture = NgramMixture(counted, 0.5)
    seen, _ = events(random_documents(200, 40, seed=5), 5)
    rng = np.random.default_rng(3)
    contexts = np.concatenate([seen[:500], rng.integers(0, 40, (200, 4)), np.full((3, 4), 39)])
    expected = mixture.context_nodes(tf.constant(contexts, tf.int32)).numpy()
    assert (expected == mixture.unseen).any() and (expected != mixture.unseen).any()
    with mixture.static_shapes():
        got = tf.function(mixture.context_nodes, jit_compile=True)(tf.constant(contexts, tf.int32)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert mixture.index.cap < 16  # a bucket's candidates stay few


def test_the_lookup_reads_its_tables_whole_never_gathering_from_the_variables(counted):
    # a gather from a variable (ResourceGather) switches it to copy-on-read: every later read of it then
    # copies it whole, inside the generation loop (590K keys: +140 us a word on the KJV's 5-gram)
    mixture = NgramMixture(counted, 0.3, 0.2, cache=True)
    graph = tf.function(mixture.mixed_log_probabilities).get_concrete_function(
        tf.TensorSpec([None, 40], tf.float32), tf.TensorSpec([None, 9], tf.int32)).graph
    operations = {operation.type for operation in graph.get_operations()}
    assert "ReadVariableOp" in operations and "LowerBound" in operations
    assert "ResourceGather" not in operations
    with mixture.static_shapes():  # the compilable lookup's tables too (BucketIndex)
        graph = tf.function(mixture.mixed_log_probabilities).get_concrete_function(
            tf.TensorSpec([None, 40], tf.float32), tf.TensorSpec([None, 9], tf.int32)).graph
    operations = {operation.type for operation in graph.get_operations()}
    assert "ReadVariableOp" in operations and "ResourceGather" not in operations


def test_the_mixture_is_the_log_of_the_weighted_sum(counted):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 40)).astype(np.float32) * 3
    windows = rng.integers(0, 40, (5, 9)).astype(np.int32)
    mixed = NgramMixture(counted, 0.3).mixed_log_probabilities(tf.constant(logits), tf.constant(windows)).numpy()
    network = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = 0.3 * network + 0.7 * ngram.predictive_distributions(counted, windows[:, -4:])
    np.testing.assert_allclose(np.exp(mixed), expected, rtol=1e-5)


def test_the_mixture_with_the_context_cache_adds_the_windows_own_words(counted):
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 40)).astype(np.float32) * 3
    windows = rng.integers(0, 40, (6, 9)).astype(np.int32)
    windows[1, :6] = 0  # a document start: pads are no words
    windows[2, :] = 0  # an empty prompt: no cache, the n-gram stands in for it
    windows[3, :] = [0, 0, 0, 7, 7, 7, 3, 1, 7]  # 7 is 4 of the 6 words, <unk> (1) one
    mixture = NgramMixture(counted, 0.3, 0.2, cache=True)
    assert mixture.ids_read(9) == 9 and NgramMixture(counted, 0.3).ids_read(9) == 4
    ngram_part = ngram.predictive_distributions(counted, windows[:, -4:])
    cache = context_cache.cache_distributions(windows, 40, ngram_part)
    got = mixture.cache_distributions(tf.constant(windows), tf.constant(ngram_part, tf.float32)).numpy()
    np.testing.assert_allclose(got, cache, rtol=1e-6)
    assert cache[3, 7] == pytest.approx(4 / 6) and cache[3, 1] == pytest.approx(1 / 6) and cache[3, 0] == 0
    np.testing.assert_allclose(cache[2], ngram_part[2])
    np.testing.assert_allclose(cache.sum(axis=1), 1.0)
    # generating: the last 2 positions hold samples, each counted as the n-gram's distribution, not as its word
    generated = np.arange(9) >= 7
    while_generating = context_cache.cache_distributions(windows, 40, ngram_part, samples=2)
    got = mixture.cache_distributions(tf.constant(windows), tf.constant(ngram_part, tf.float32), tf.constant(generated))
    np.testing.assert_allclose(got.numpy(), while_generating, rtol=1e-5, atol=1e-7)
    assert while_generating[3, 7] == pytest.approx((3 + 2 * ngram_part[3, 7]) / 6)  # [.., 7, 7, 7, 3 | 1, 7]
    np.testing.assert_allclose(while_generating.sum(axis=1), 1.0)
    network = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = 0.3 * network + 0.5 * ngram_part + 0.2 * cache
    mixed = mixture.mixed_log_probabilities(tf.constant(logits), tf.constant(windows)).numpy()
    np.testing.assert_allclose(np.exp(mixed), expected, rtol=1e-5)
    # the per-target figure the weights are fitted on is the same distribution's entry
    targets = np.array([windows[0, -1], 5, 9, 7, 39, 0])
    log_p = context_cache.cache_log_probabilities(windows, targets, np.log(ngram_part[np.arange(6), targets]))
    np.testing.assert_allclose(np.exp(log_p), cache[np.arange(6), targets], rtol=1e-12)


def test_three_weights_maximise_the_held_out_likelihood():
    rng = np.random.default_rng(5)
    parts = [np.log(rng.uniform(1e-4, 1, 400)) for _ in range(3)]
    parts[2][:150] = -np.inf  # a cache that does not hold the target
    weights = ngram.fit_weights(parts)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()

    def loss(w):
        with np.errstate(divide="ignore"):
            return -np.logaddexp.reduce([np.log(wk) + part for wk, part in zip(w, parts)], axis=0).mean()

    grid = [(a, b, 1 - a - b) for a in np.linspace(0.01, 0.98, 60) for b in np.linspace(0.01, 0.98, 60) if a + b < 0.99]
    assert loss(weights) <= min(map(loss, grid)) + 1e-9
    # a part that never gives the target anything gets no weight
    useless = ngram.fit_weights([parts[0], parts[1], np.full(400, -np.inf)])
    assert useless[2] < 1e-3 and useless[:2].sum() == pytest.approx(1.0)
    assert ngram.fit_weights([np.zeros(0)] * 3).tolist() == pytest.approx([1 / 3] * 3)


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


def _mixture_after(model, counts, weights: tuple, windows: np.ndarray, samples: int = 0) -> np.ndarray:
    """float64[b, V]: the mixture after each window, recomputed in numpy; weights (network, ngram,
    cache); the windows' last `samples` ids are the model's own, which the cache counts as the n-gram's distribution."""
    logits = final_word_logits_fn(model)(windows).numpy().astype(np.float64)
    network = np.exp(logits - logits.max(axis=1, keepdims=True))
    network /= network.sum(axis=1, keepdims=True)
    five_gram = ngram.predictive_distributions(counts, windows[:, -4:])
    cache = context_cache.cache_distributions(windows, five_gram.shape[1], five_gram, samples)
    return weights[0] * network + weights[1] * five_gram + weights[2] * cache


def _greedy_follows_the_mixture(generate, tokenize, model, counts, weights, prompts, context: int, words: int) -> np.ndarray:
    """Greedy ids of `generate` (word exports: a token a word), each checked to be the numpy mixture's most
    likely id after the window so far (<pad>/<unk> masked), the cache counting samples as the n-gram; returns them."""
    history = tokenize(prompts=tf.constant(prompts))["window"].numpy()
    generated = call_generate(SimpleNamespace(signatures={"generate": generate}), prompts, greedy=True, num_words=words)["ids"]
    for step in range(words):
        mixture = _mixture_after(model, counts, weights, history[:, -context:], samples=step)
        mixture[:, :2] = 0
        assert generated[:, step].tolist() == mixture.argmax(axis=1).tolist(), step
        history = np.concatenate([history, generated[:, step:step + 1]], axis=1)
    return generated


def test_score_ids_and_greedy_generation_follow_the_mixture(mixed_export, tiny_dataset):
    card = mixed_export.card["ngram"]
    assert card["order"] == 5 and card["counted"] == "every train window" and card["context_cache"]
    weights = (card["network_weight"], card["ngram_weight"], card["cache_weight"])
    assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0)
    assert card["sample_perplexity"]["mixture"] <= card["sample_perplexity"]["network_and_ngram"] + 1e-3
    counts = ngram.count_events(*ngram.events_from_dataset(tiny_dataset, "train", 5), mixed_export.config.vocab_size, 5)
    windows = np.random.default_rng(3).integers(0, mixed_export.config.vocab_size, (6, mixed_export.config.context_length))
    windows[0, :5] = 0  # a document start
    scored = mixed_export.loaded.signatures["score_ids"](context=tf.constant(windows, tf.int32))["logits"].numpy()
    np.testing.assert_allclose(np.exp(scored), _mixture_after(mixed_export.model, counts, weights, windows), rtol=1e-4, atol=1e-8)
    # greedy: the first word is the mixture's most likely after the prompt. Later words: the next test, where the
    # cache outweighs the network (here the empty prompt's third word missed by a 1.6% margin between two ids, a
    # difference in the network's part: the decoder's state after its own words against the window recomputed)
    signatures = mixed_export.loaded.signatures
    _greedy_follows_the_mixture(signatures["generate"], signatures["tokenize"], mixed_export.model, counts, weights,
                                ["the cat", ""], mixed_export.config.context_length, 1)


def test_generation_hands_the_cache_the_given_window_not_the_ngrams_ids_nor_its_own_words(tiny_dataset):
    """With the cache's weight high, the first greedy word is the prompt's most repeated word, which only a
    cache reading more than the n-gram's last 4 ids sees; the next ones follow the mixture whose cache counts
    each sample as the n-gram's distribution (counting its words, the cache would feed on them: a word
    sampled once would grow likelier each time)."""
    from nextword.model.export_graph import ExportModule
    from nextword.tfrecords.manifest import load_manifest, load_vocabulary
    from test_export_fixtures import model_config_for, random_model

    manifest = load_manifest(tiny_dataset)
    vocabulary = load_vocabulary(tiny_dataset, manifest)
    config = model_config_for(tiny_dataset, arch="lstm")
    counts = ngram.count_events(*ngram.events_from_dataset(tiny_dataset, "train", 5), config.vocab_size, 5)
    model = random_model(config)
    module = ExportModule(model, config, vocabulary, "word", NgramMixture(counts, 0.05, 0.9, cache=True))
    repeated, *others = vocabulary[10:15]
    prompt = " ".join([repeated] * 3 + others)  # 3 x one word, then 4 others: the last 4 ids hold no repeat
    generated = _greedy_follows_the_mixture(module.generate, module.tokenize, model, counts, (0.05, 0.05, 0.9),
                                            [prompt], config.context_length, 6)
    assert vocabulary[generated[0, 0]] == repeated


def test_without_the_context_cache_the_mixture_is_the_network_and_the_ngram(tiny_dataset, tmp_path):
    from nextword.model.export import export_model
    from test_export_fixtures import model_config_for, random_model

    config = model_config_for(tiny_dataset, arch="lstm")
    model = random_model(config)
    card = export_model(model, config, tiny_dataset, str(tmp_path / "export"), {}, context_cache=False)
    assert card["ngram"]["context_cache"] is None and card["ngram"]["cache_weight"] == 0
    assert card["ngram"]["network_weight"] + card["ngram"]["ngram_weight"] == pytest.approx(1.0)
    assert card["ngram"]["sample_perplexity"]["mixture"] == pytest.approx(card["ngram"]["sample_perplexity"]["network_and_ngram"], rel=1e-6)
    assert "context cache" not in card["generation"]


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
    assert TrainSettings(data_dir="d", out="o").context_cache  # the cache rides on the n-gram, on by default
    assert TrainSettings(data_dir="d", out="o", preset="notebook").export_ngram_order() == 0  # the notebook had none
    assert TrainSettings(data_dir="d", out="o", preset="notebook", ngram_order=3).export_ngram_order() == 3
    for bad in (1, -1, 9):
        with pytest.raises(SettingsError, match="--ngram-order"):
            TrainSettings(data_dir="d", out="o", ngram_order=bad)
