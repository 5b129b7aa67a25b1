"""The decoder-only Transformer's layers (Keras 3, TensorFlow backend).

Pre-layer-norm blocks: x + Attention(LayerNorm(x)), then x + FeedForward(LayerNorm(x)).
Padding (ModelConfig.ignore_padding, on for new models): pad keys are masked out of attention
and positions count from the window's first word, so a prediction depends on the words before
it and on nothing else. Why: a short document's training window (objective "all") is the whole
document right-aligned, so word j of an n-word document is predicted at window position
C - n + j, while eval and generation predict every word at position C - 1 behind C - j pads.
With window positions and visible pads the two disagree (measured on the King James Bible:
final-word perplexity 60 on the train split's own windows, training loss 26); with
document-relative positions and masked pads they are one computation. Models of 0.2
(ignore_padding False) keep window positions with pads as ordinary inputs.

The same layers serve training (a whole window at once) and the export's cached generation
(`DecoderBlock.forward` with a key/value cache, `TokenAndPositionEmbedding.call(ids, start)`):
one set of equations, the trained layers' own weights.

Mixed precision: projections run in the compute dtype; attention scores and their softmax in
float32 (float16 would overflow on large dot products), then cast back.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from nextword.ingest.text import PAD_ID

# A masked score: far below any real one, still finite in float32 (softmax of -inf rows is NaN).
MASKED_SCORE = -1e9


def word_positions(ids, first=0):
    """int32[batch, time]: each id's position counted from the first non-pad id (pads: 0, or the
    position they would shift onto). `first` int32[batch] offsets rows already holding words."""
    real = tf.cast(tf.not_equal(ids, PAD_ID), tf.int32)
    return tf.maximum(tf.reshape(first, [-1, 1]) + tf.cumsum(real, axis=1) - 1, 0)


def small_softmax(scores):
    """Softmax over the last axis in plain ops: on a CPU, TensorFlow's oneDNN softmax kernel takes
    ~60 us at float32[1, 4, 44] (a cached decoder's scores), these four ops ~6 us."""
    exponentials = tf.exp(scores - tf.reduce_max(scores, axis=-1, keepdims=True))
    return exponentials / tf.reduce_sum(exponentials, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="nextword")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """ids int32[batch, time] -> float[batch, time, width]: token + learned position embedding.

    Positions: counted from the window's first word (`word_positions`) when ignore_padding, else
    window positions offset by `start`; a cached decoder passes the positions of its new words."""

    def __init__(self, vocab_size: int, context_length: int, width: int, ignore_padding: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.context_length, self.width = vocab_size, context_length, width
        self.ignore_padding = ignore_padding
        self.tokens = keras.layers.Embedding(vocab_size, width, name="tokens")
        self.positions = keras.layers.Embedding(context_length, width, name="positions")

    def build(self, input_shape):
        self.tokens.build(input_shape)
        self.positions.build((input_shape[-1],))
        self.built = True

    def call(self, ids, start=0, positions=None):
        """positions int32[batch, time] (see `word_positions`) or None: window positions start + i."""
        if positions is None:
            positions = word_positions(ids) if self.ignore_padding else start + tf.range(tf.shape(ids)[-1])
        return self.tokens(ids) + self.positions(positions)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.width)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "context_length": self.context_length,
                "width": self.width, "ignore_padding": self.ignore_padding}


@keras.saving.register_keras_serializable(package="nextword")
class DecoderBlock(keras.layers.Layer):
    """One pre-LN block: causal multi-head self-attention, then a GELU feed-forward layer."""

    def __init__(self, width: int, heads: int, ff_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.width, self.heads, self.ff_dim, self.dropout_rate = width, heads, ff_dim, dropout
        self.head_dim = width // heads
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.query_key_value = keras.layers.Dense(3 * width, name="query_key_value")
        self.attention_output = keras.layers.Dense(width, name="attention_output")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="feed_forward_norm")
        self.feed_forward_in = keras.layers.Dense(ff_dim, activation="gelu", name="feed_forward_in")
        self.feed_forward_out = keras.layers.Dense(width, name="feed_forward_out")
        self.attention_dropout = keras.layers.Dropout(dropout, name="attention_dropout")
        self.feed_forward_dropout = keras.layers.Dropout(dropout, name="feed_forward_dropout")

    def build(self, input_shape):
        self.attention_norm.build(input_shape)
        self.query_key_value.build(input_shape)
        self.attention_output.build((*input_shape[:-1], self.width))
        self.feed_forward_norm.build(input_shape)
        self.feed_forward_in.build(input_shape)
        self.feed_forward_out.build((*input_shape[:-1], self.ff_dim))
        self.built = True

    def call(self, hidden, ids=None, training=False):
        """ids int32[batch, time]: the window's ids, whose pads are masked as keys; None: no mask."""
        key_is_word = None if ids is None else tf.not_equal(ids, PAD_ID)
        return self.forward(hidden, key_is_word=key_is_word, training=training)[0]

    def forward(self, hidden, start=0, cache=None, key_is_word=None, training=False):
        """hidden float[batch, time, width] at window slots start..start+time-1.

        cache: None (a whole window: keys and values of these slots only), or
        (keys, values), each float32[context, batch, heads, head_dim] (time-major, so one
        scatter writes the new slots), holding slots < start.
        key_is_word: None, or bool[batch, key slots] (all the cache's slots when cached): False
        keys (pads) are masked; a query always sees its own slot, so a pad's row stays finite.
        Returns (hidden out, (keys, values) including the new slots).
        """
        batch, time = tf.shape(hidden)[0], tf.shape(hidden)[1]
        projected = self.query_key_value(self.attention_norm(hidden))
        split = tf.reshape(projected, [batch, time, 3, self.heads, self.head_dim])
        query, key, value = split[:, :, 0], split[:, :, 1], split[:, :, 2]  # [batch, time, heads, head_dim]
        if cache is not None:  # the cache is time-major: one scatter writes the new positions
            rows = (start + tf.range(time))[:, tf.newaxis]
            key = tf.tensor_scatter_nd_update(cache[0], rows, tf.cast(tf.transpose(key, [1, 0, 2, 3]), cache[0].dtype))
            value = tf.tensor_scatter_nd_update(cache[1], rows, tf.cast(tf.transpose(value, [1, 0, 2, 3]), cache[1].dtype))
            pattern_scores, pattern_attend, key_time = "bqhd,kbhd->bhqk", "bhqk,kbhd->bqhd", tf.shape(key)[0]
        else:
            pattern_scores, pattern_attend, key_time = "bqhd,bkhd->bhqk", "bhqk,bkhd->bqhd", time
        scores = tf.einsum(pattern_scores, tf.cast(query, tf.float32), tf.cast(key, tf.float32))
        scores = scores / math.sqrt(self.head_dim)
        query_position = start + tf.range(time)
        key_position = tf.range(key_time) + (0 if cache is not None else start)
        allowed = key_position[tf.newaxis, :] <= query_position[:, tf.newaxis]  # causal: [query, key]
        if key_is_word is not None:
            itself = tf.equal(key_position[tf.newaxis, :], query_position[:, tf.newaxis])
            allowed = tf.logical_and(allowed[tf.newaxis], tf.logical_or(key_is_word[:, tf.newaxis, :], itself))
            allowed = allowed[:, tf.newaxis]  # [batch, 1 (heads), query, key]
        weights = tf.nn.softmax(tf.where(allowed, scores, MASKED_SCORE), axis=-1)
        attended = tf.einsum(pattern_attend, weights, tf.cast(value, tf.float32))
        attended = tf.cast(tf.reshape(attended, [batch, time, self.width]), hidden.dtype)
        hidden = hidden + self.attention_dropout(self.attention_output(attended), training=training)
        feed_forward = self.feed_forward_out(self.feed_forward_in(self.feed_forward_norm(hidden)))
        hidden = hidden + self.feed_forward_dropout(feed_forward, training=training)
        return hidden, (key, value)

    def step(self, hidden, cache, slot, key_bias):
        """One new word per row, for cached generation: `forward` at time 1, with fewer ops.

        hidden float[batch, width] (rank 2: Dense layers run a plain MatMul, no reshapes around it);
        cache (keys, values) as in `forward`; slot int32[1, 1]: the cache slot the new word fills;
        key_bias float32[batch, 1, context]: 0 where the word may attend (its own slot included),
        MASKED_SCORE elsewhere, computed once per word for every block. The new word's cost is then
        ~45 ops a block instead of ~150 (the per-word cost is op dispatch at this size: bench/RESULTS.md,
        "Transformer generation per word"). Adding MASKED_SCORE, not replacing by it, gives the same softmax.
        Returns (hidden out float[batch, width], (keys, values) with the slot written).
        """
        projected = self.query_key_value(self.attention_norm(hidden))
        query, key, value = tf.unstack(tf.reshape(projected, [-1, 3, self.heads, self.head_dim]), axis=1)
        keys = tf.tensor_scatter_nd_update(cache[0], slot, tf.cast(key, cache[0].dtype)[tf.newaxis])
        values = tf.tensor_scatter_nd_update(cache[1], slot, tf.cast(value, cache[1].dtype)[tf.newaxis])
        # One query a row: products and sums, not einsum/BatchMatMul (~70 us each at this size on a CPU,
        # against ~4 us for an elementwise op: bench/RESULTS.md, "Transformer generation per word").
        scores = tf.reduce_sum(tf.cast(query, tf.float32) * tf.cast(keys, tf.float32), axis=-1)  # [context, batch, heads]
        scores = tf.transpose(scores, [1, 2, 0]) / math.sqrt(self.head_dim)  # [batch, heads, context]
        weights = tf.transpose(small_softmax(scores + key_bias), [2, 0, 1])[..., tf.newaxis]
        attended = tf.reduce_sum(weights * tf.cast(values, tf.float32), axis=0)  # [batch, heads, head_dim]
        hidden = hidden + self.attention_output(tf.cast(tf.reshape(attended, [-1, self.width]), hidden.dtype))
        hidden = hidden + self.feed_forward_out(self.feed_forward_in(self.feed_forward_norm(hidden)))
        return hidden, (keys, values)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "ff_dim": self.ff_dim,
                "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="nextword")
class LastPosition(keras.layers.Layer):
    """float[batch, time, width] -> float[batch, width] (objective "last")."""

    def call(self, hidden):
        return hidden[:, -1, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
