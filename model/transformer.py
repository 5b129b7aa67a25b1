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

Positions (ModelConfig.positions): "alibi" (the recipe's default) has no position embedding; each
head's scores fall linearly with the distance in words (`alibi_slopes`), so a key holds no position
and the export's cache slides instead of re-reading the window. "learned": a position embedding.

The same layers serve training (a whole window at once) and the export's cached generation
(`DecoderBlock.forward` over a window, `DecoderBlock.step` for one word against a key/value cache,
`TokenAndPositionEmbedding.call(ids, positions=...)`):
one set of equations, the trained layers' own weights.

Mixed precision: projections run in the compute dtype; attention scores and their softmax in
float32 (float16 would overflow on large dot products), then cast back.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from nextword.ingest.text import PAD_ID
from nextword.model.dropout import Dropout

# A masked score: far below any real one, still finite in float32 (softmax of -inf rows is NaN).
MASKED_SCORE = -1e9


def word_positions(ids, first=0):
    """int32[batch, time]: each id's position counted from the first non-pad id (pads: 0, or the
    position they would shift onto). `first` int32[batch] offsets rows already holding words."""
    real = tf.cast(tf.not_equal(ids, PAD_ID), tf.int32)
    return tf.maximum(tf.reshape(first, [-1, 1]) + tf.cumsum(real, axis=1) - 1, 0)


def alibi_slopes(heads: int) -> list[float]:
    """ALiBi's per-head slopes (Press et al. 2022, "Train Short, Test Long"): a head's score for a key
    d words back falls by slope * d. Geometric from 2^(-8/heads); for a head count that is not a power
    of two, the paper's interleaving of the next power's slopes."""
    def geometric(count: int) -> list[float]:
        first = 2.0 ** (-8.0 / count)
        return [first ** (index + 1) for index in range(count)]

    closest = 2 ** int(math.floor(math.log2(heads)))
    if closest == heads:
        return geometric(heads)
    return geometric(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


def small_softmax(scores):
    """Softmax over the last axis in plain ops: on a CPU, TensorFlow's oneDNN softmax kernel takes
    ~60 us at float32[1, 4, 44] (a cached decoder's scores), these four ops ~6 us."""
    exponentials = tf.exp(scores - tf.reduce_max(scores, axis=-1, keepdims=True))
    return exponentials / tf.reduce_sum(exponentials, axis=-1, keepdims=True)


def layer_norm(layer: keras.layers.LayerNormalization, hidden):
    """`layer` (a LayerNormalization over the last axis, centred and scaled) applied in 6 ops and its 2 variable
    reads: Keras runs 11 ops and 2 reshapes, and a cached decoder's step, whose cost at one row is the ops it
    dispatches, runs 5 of them a word (bench/RESULTS.md, "Compiled generation with the n-gram")."""
    mean = tf.reduce_mean(hidden, axis=-1, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(hidden, mean), axis=-1, keepdims=True)
    gamma, beta = (tf.cast(weight, hidden.dtype) for weight in (layer.gamma, layer.beta))  # no op in float32
    return (hidden - mean) * (tf.math.rsqrt(variance + layer.epsilon) * gamma) + beta


def write_rows(cache, rows, new, in_place=True):
    """cache float32[batch, heads, context, head_dim] with new [batch, heads, head_dim] written into `rows`
    (int32[batch * heads]) of its [batch * heads * context, head_dim] view; returns the cache.

    in_place: the raw InplaceUpdate op, which writes into `cache`'s own buffer, so the caller must own it: no
    other op may read the tensor it passes in (`TransformerDecoder.writable` copies a loop's caches once, before
    it starts). Why: `tf.tensor_scatter_nd_update` copies the whole cache inside a `tf.while_loop` (its input is
    never forwarded there), 4 x 1.44 MB a word at 64 rows (bench/RESULTS.md, "A cache written in place").
    False: that scatter, for a trace XLA compiles (it has no InplaceUpdate kernel; its own scatter is in place)."""
    head_dim = cache.shape[-1]
    flat, new = tf.reshape(cache, [-1, head_dim]), tf.reshape(tf.cast(new, cache.dtype), [-1, head_dim])
    if in_place:
        flat = tf.raw_ops.InplaceUpdate(x=flat, i=rows, v=new)
    else:
        flat = tf.tensor_scatter_nd_update(flat, rows[:, tf.newaxis], new)
    return tf.reshape(flat, [-1, *cache.shape[1:]])


@keras.saving.register_keras_serializable(package="nextword")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """ids int32[batch, time] -> float[batch, time, width]: token embedding, plus a learned position embedding
    unless the model uses ALiBi.

    Positions: counted from the window's first word (`word_positions`) when ignore_padding, else
    window positions offset by `start`; a cached decoder passes the positions of its new words.
    learned_positions False (ALiBi, DecoderBlock's `alibi`): the token embedding alone."""

    def __init__(self, vocab_size: int, context_length: int, width: int, ignore_padding: bool = False,
                 learned_positions: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.context_length, self.width = vocab_size, context_length, width
        self.ignore_padding, self.learned_positions = ignore_padding, learned_positions
        self.tokens = keras.layers.Embedding(vocab_size, width, name="tokens")
        self.positions = keras.layers.Embedding(context_length, width, name="positions") if learned_positions else None

    def build(self, input_shape):
        self.tokens.build(input_shape)
        if self.positions is not None:
            self.positions.build((input_shape[-1],))
        self.built = True

    def call(self, ids, start=0, positions=None):
        """positions int32[batch, time] (see `word_positions`) or None: window positions start + i."""
        if self.positions is None:
            return self.tokens(ids)
        if positions is None:
            positions = word_positions(ids) if self.ignore_padding else start + tf.range(tf.shape(ids)[-1])
        return self.tokens(ids) + self.positions(positions)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.width)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "context_length": self.context_length,
                "width": self.width, "ignore_padding": self.ignore_padding, "learned_positions": self.learned_positions}


@keras.saving.register_keras_serializable(package="nextword")
class DecoderBlock(keras.layers.Layer):
    """One pre-LN block: causal multi-head self-attention, then a GELU feed-forward layer.

    alibi: each head's scores fall linearly with the distance in words from the query (`alibi_slopes`),
    the model's only notion of order (TokenAndPositionEmbedding without positions)."""

    def __init__(self, width: int, heads: int, ff_dim: int, dropout: float = 0.0, alibi: bool = False, **kwargs):
        super().__init__(**kwargs)
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.width, self.heads, self.ff_dim, self.dropout_rate = width, heads, ff_dim, dropout
        self.alibi = alibi
        self.head_dim = width // heads
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="attention_norm")
        self.query_key_value = keras.layers.Dense(3 * width, name="query_key_value")
        self.attention_output = keras.layers.Dense(width, name="attention_output")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="feed_forward_norm")
        self.feed_forward_in = keras.layers.Dense(ff_dim, activation="gelu", name="feed_forward_in")
        self.feed_forward_out = keras.layers.Dense(width, name="feed_forward_out")
        self.attention_dropout = Dropout(dropout, name="attention_dropout")
        self.feed_forward_dropout = Dropout(dropout, name="feed_forward_dropout")

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

    def forward(self, hidden, start=0, key_is_word=None, training=False, last_only=False):
        """hidden float[batch, time, width] at window slots start..start+time-1.

        key_is_word: None, or bool[batch, time]: False keys (pads) are masked; a query always sees
        its own slot, so a pad's row stays finite.
        last_only: the output at the last slot only (hidden out float[batch, 1, width]); keys and
        values still cover every slot. Why: a cached decoder's re-read needs the last block's keys
        and values everywhere but its output only where the next word is predicted, and the rest
        (attention, projections, feed-forward of every other slot) was ~80% of that block's cost
        (bench/RESULTS.md, "Cheaper per word without changing the words").
        Returns (hidden out, (keys, values) float[batch, time, heads, head_dim]).
        """
        batch, time = tf.shape(hidden)[0], tf.shape(hidden)[1]
        projected = self.query_key_value(self.attention_norm(hidden))
        split = tf.reshape(projected, [batch, time, 3, self.heads, self.head_dim])
        query, key, value = split[:, :, 0], split[:, :, 1], split[:, :, 2]  # [batch, time, heads, head_dim]
        query_position = start + tf.range(time)
        if last_only:
            query, hidden, query_position = query[:, -1:], hidden[:, -1:], query_position[-1:]
        scores = tf.einsum("bqhd,bkhd->bhqk", tf.cast(query, tf.float32), tf.cast(key, tf.float32))
        scores = scores / math.sqrt(self.head_dim)
        if self.alibi:
            scores = scores + self._distance_bias(key_is_word, time, last_only)
        key_position = start + tf.range(time)
        allowed = key_position[tf.newaxis, :] <= query_position[:, tf.newaxis]  # causal: [query, key]
        if key_is_word is not None:
            itself = tf.equal(key_position[tf.newaxis, :], query_position[:, tf.newaxis])
            allowed = tf.logical_and(allowed[tf.newaxis], tf.logical_or(key_is_word[:, tf.newaxis, :], itself))
            allowed = allowed[:, tf.newaxis]  # [batch, 1 (heads), query, key]
        # MASKED_SCORE added, not selected: the same softmax, and the backward pass has no select to run
        # (~x1.02 the compiled training step, bench/RESULTS.md "Dropout masks from a hash")
        weights = tf.nn.softmax(scores + tf.where(allowed, 0.0, MASKED_SCORE), axis=-1)
        attended = tf.einsum("bhqk,bkhd->bqhd", weights, tf.cast(value, tf.float32))
        attended = tf.cast(tf.reshape(attended, [batch, tf.shape(query)[1], self.width]), hidden.dtype)
        hidden = hidden + self.attention_dropout(self.attention_output(attended), training=training)
        feed_forward = self.feed_forward_out(self.feed_forward_in(self.feed_forward_norm(hidden)))
        hidden = hidden + self.feed_forward_dropout(feed_forward, training=training)
        return hidden, (key, value)

    def _distance_bias(self, key_is_word, time, last_only):
        """float32[batch or 1, heads, query, key]: -slope * (the query's word position - the key's). Word
        positions count words, not pads (as `word_positions`); a pad key is masked later all the same."""
        if key_is_word is None:
            position = tf.range(time)[tf.newaxis, :]
        else:
            position = tf.cumsum(tf.cast(key_is_word, tf.int32), axis=1)
        query_position = position[:, -1:] if last_only else position
        distance = tf.cast(query_position[:, :, tf.newaxis] - position[:, tf.newaxis, :], tf.float32)
        slopes = tf.constant(alibi_slopes(self.heads), tf.float32)[:, tf.newaxis, tf.newaxis]
        return -slopes * distance[:, tf.newaxis]

    def step(self, hidden, cache, slot_rows, key_bias, many_rows=False, in_place=True):
        """One new word per row, for cached generation: `forward` at time 1, with fewer ops.

        hidden float[batch, width] (rank 2: Dense layers run a plain MatMul, no reshapes around it);
        cache (keys, values), each float32[batch, heads, context, head_dim], written IN PLACE (`write_rows`: the
        caller owns them); slot_rows int32[batch * heads]: where the new word's key and value go, as rows of
        the cache's [batch * heads * context, head_dim] view;
        key_bias float32[batch, 1 or heads, context]: 0 (ALiBi: -slope * distance) where the word may attend
        (its own slot included), MASKED_SCORE elsewhere, computed once per word for every block. The new word's cost is then
        ~40 ops a block instead of ~150 (the per-word cost is op dispatch at this size: bench/RESULTS.md,
        "Transformer generation per word"). Adding MASKED_SCORE, not replacing by it, gives the same softmax.
        many_rows: attention by BatchMatMul instead of products and sums (the same values up to rounding).
        in_place: False for a trace XLA compiles (`write_rows`).
        Returns (hidden out float[batch, width], (keys, values) with the slot written).
        """
        projected = self.query_key_value(layer_norm(self.attention_norm, hidden))
        query, key, value = tf.unstack(tf.reshape(projected, [-1, 3, self.heads, self.head_dim]), axis=1)
        keys, values = (write_rows(tensor, slot_rows, new, in_place) for tensor, new in zip(cache, (key, value)))
        new_cache = (keys, values)
        # One query a row. Few rows: products and sums, not einsum/BatchMatMul (~30-70 us a call at one
        # row on a CPU, against ~4 us for an elementwise op); many rows (many_rows, a Python bool: the
        # caller picks one of two traced steps): BatchMatMul, whose cost then grows less per row
        # (bench/RESULTS.md, "Transformer generation per word"). Batch-major: no transposes around the softmax.
        query, keys, values = (tf.cast(tensor, tf.float32) for tensor in (query, keys, values))
        if many_rows:  # BatchMatMul: a fixed cost of ~30 us a call, then cheaper per row than products
            scores = tf.matmul(query[:, :, tf.newaxis], keys, transpose_b=True)[:, :, 0]
        else:
            scores = tf.reduce_sum(query[:, :, tf.newaxis] * keys, axis=-1)
        weights = small_softmax(scores / math.sqrt(self.head_dim) + key_bias)  # [batch, heads, context]
        if many_rows:
            attended = tf.matmul(weights[:, :, tf.newaxis], values)[:, :, 0]
        else:
            attended = tf.reduce_sum(weights[..., tf.newaxis] * values, axis=2)  # [batch, heads, head_dim]
        hidden = hidden + self.attention_output(tf.cast(tf.reshape(attended, [-1, self.width]), hidden.dtype))
        hidden = hidden + self.feed_forward_out(self.feed_forward_in(layer_norm(self.feed_forward_norm, hidden)))
        return hidden, new_cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "width": self.width, "heads": self.heads, "ff_dim": self.ff_dim,
                "dropout": self.dropout_rate, "alibi": self.alibi}


@keras.saving.register_keras_serializable(package="nextword")
class LastPosition(keras.layers.Layer):
    """float[batch, time, width] -> float[batch, width] (objective "last")."""

    def call(self, hidden):
        return hidden[:, -1, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
