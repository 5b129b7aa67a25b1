"""ALiBi positions (ModelConfig.positions "alibi"): training layers, config, and the export's sliding cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from nextword.errors import SettingsError
from nextword.model.builder import build_model
from nextword.model.config import ModelConfig
from nextword.model.export_graph import ExportModule, SlidingDecoder
from nextword.model.transformer import alibi_slopes
from test_export import assert_cache_steps_equal_the_whole_window, call_generate, make_export, masked_argmax
from test_export_fixtures import tiny_data_dir  # noqa: F401


def alibi_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**dict(vocab_size=30, context_length=8, arch="transformer", layers=2, units=16, heads=2,
                                 ff_dim=24, dropout=0.0, positions="alibi"), **overrides})


@pytest.fixture(scope="module")
def alibi_export(tiny_data_dir, tmp_path_factory):  # noqa: F811
    return make_export(tiny_data_dir, tmp_path_factory.mktemp("alibi") / "export", arch="transformer", units=16,
                       heads=2, ff_dim=24, objective="all", positions="alibi")


def test_slopes_are_the_paper_s():
    assert alibi_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625]
    assert alibi_slopes(8)[0] == 0.5 and alibi_slopes(8)[-1] == 2.0 ** -8
    # not a power of two: the 4-head slopes, then every other one of the 8-head slopes
    assert alibi_slopes(6) == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]


def test_an_alibi_model_has_no_position_embedding_and_counts_words_not_slots():
    model = build_model(alibi_config())
    assert not [weight for weight in model.weights if "position" in weight.path]
    # the same document behind 3 pads or behind 2: the same outputs at its words
    behind_three = np.array([[0, 0, 0, 5, 6, 7, 8, 9]], np.int32)
    behind_two = np.array([[0, 0, 5, 6, 7, 8, 9, 10]], np.int32)
    np.testing.assert_allclose(model(behind_three)[0, 3:], model(behind_two)[0, 2:-1], atol=1e-5)


def test_an_alibi_model_is_causal_and_its_scores_fall_with_distance():
    model = build_model(alibi_config(layers=1))
    ids = np.array([[3, 4, 5, 6, 7, 8, 9, 10]], np.int32)
    changed = ids.copy()
    changed[0, -1] = 11
    np.testing.assert_allclose(model(ids)[0, :-1], model(changed)[0, :-1], atol=1e-6)
    bias = model.get_layer("block_0")._distance_bias(tf.ones([1, 3], tf.bool), 3, last_only=False).numpy()
    # head 0 (slope 2^-4 for 2 heads): query 2 sees key 0 two words back
    assert bias.shape == (1, 2, 3, 3) and math.isclose(bias[0, 0, 2, 0], -2 * alibi_slopes(2)[0])


def test_alibi_needs_a_padding_aware_transformer():
    with pytest.raises(SettingsError, match="--positions alibi is for --arch transformer"):
        ModelConfig(vocab_size=30, context_length=8, arch="lstm", positions="alibi")
    with pytest.raises(SettingsError, match="--no-ignore-padding"):
        alibi_config(ignore_padding=False)
    with pytest.raises(SettingsError, match="--positions must be one of"):
        alibi_config(positions="rotary")
    old = alibi_config().to_dict()
    del old["positions"]  # a config written before the field: learned positions, as it was trained
    assert ModelConfig.from_dict(old).positions == "learned"
    assert "ALiBi" in alibi_config().describe()


@pytest.mark.parametrize("matmul_rows", [20, 1])
def test_sliding_cache_steps_equal_the_whole_window(monkeypatch, matmul_rows):
    """Up to a full window nothing has left the ring: each step's logits are the model's on the window
    (random ids with pads among them), by products and sums and by BatchMatMul."""
    from nextword.model import export_graph

    monkeypatch.setattr(export_graph, "MATMUL_ROWS", matmul_rows)
    config = alibi_config()
    assert_cache_steps_equal_the_whole_window(build_model(config), config)


def sliding_window_reference(model, config: ModelConfig, ids: np.ndarray) -> np.ndarray:
    """Logits float[batch, time, vocab] of the model's blocks over a sequence longer than its window, each
    query attending to itself and the context - 1 words before it (band attention, no pads): what a ring
    of `context` slots computes, written out from the layers' weights."""
    time = ids.shape[1]
    query, key = np.arange(time)[:, None], np.arange(time)[None, :]
    allowed = (key <= query) & (key > query - config.context_length)
    hidden = model.get_layer("embedding").tokens(ids)
    for index in range(config.layers):
        block = model.get_layer(f"block_{index}")
        projected = block.query_key_value(block.attention_norm(hidden))
        split = tf.reshape(projected, [ids.shape[0], time, 3, block.heads, block.head_dim])
        q, k, v = split[:, :, 0], split[:, :, 1], split[:, :, 2]
        scores = tf.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(block.head_dim)
        slopes = np.array(alibi_slopes(block.heads), np.float32)[:, None, None]
        scores = scores - slopes * (query - key).astype(np.float32)
        weights = tf.nn.softmax(tf.where(allowed, scores, -1e9), axis=-1)
        attended = tf.reshape(tf.einsum("bhqk,bkhd->bqhd", weights, v), [ids.shape[0], time, block.width])
        hidden = hidden + block.attention_output(attended)
        hidden = hidden + block.feed_forward_out(block.feed_forward_in(block.feed_forward_norm(hidden)))
    return model.get_layer("logits")(model.get_layer("final_norm")(hidden)).numpy()


def test_past_the_window_the_ring_is_band_attention_over_the_whole_sequence():
    """Past `context` words the newest word overwrites the oldest, nothing is re-read: the logits are
    sliding-window attention over everything so far (2.5 windows of words, many slot wrap-arounds)."""
    config = alibi_config()
    model = build_model(config)
    vocabulary = ["<pad>", "<unk>"] + [f"w{i}" for i in range(config.vocab_size - 2)]
    decoder = ExportModule(model, config, vocabulary).decoder
    assert isinstance(decoder, SlidingDecoder)
    ids = np.random.default_rng(5).integers(2, config.vocab_size, size=[3, 20]).astype("int32")
    expected = sliding_window_reference(model, config, ids)
    logits, state = decoder.start(tf.constant(ids[:, :3]))
    np.testing.assert_allclose(logits.numpy(), expected[:, 2], atol=1e-4)
    for position in range(3, ids.shape[1]):
        logits, state = decoder.advance(state, tf.constant(ids[:, position]), tf.constant(ids), position)
        np.testing.assert_allclose(logits.numpy(), expected[:, position], atol=1e-4, err_msg=str(position))


def test_an_alibi_export_generates_past_its_window_without_re_reading(alibi_export):
    """The signatures' greedy words equal the ring's reference on the growing sequence, and the card says
    how the export generates."""
    model, config, loaded = alibi_export.model, alibi_export.config, alibi_export.loaded
    assert "ring" in alibi_export.card["generation"]
    prompts = ["the cat sat on the mat and the dog ran", "a b c the cat sat on mat dog ran"]
    num_words = 2 * config.context_length
    outputs = call_generate(loaded, prompts, num_words=num_words, greedy=True)
    window = loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
    assert (window != 0).all()  # both prompts fill the window: no pads in the reference
    sequence = np.concatenate([window, outputs["ids"]], axis=1)
    logits = sliding_window_reference(model, config, sequence)
    predicted = masked_argmax(logits[:, config.context_length - 1 : -1])
    assert (predicted == outputs["ids"]).all()
