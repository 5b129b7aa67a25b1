"""In-graph next-word sampling: pure TensorFlow ops, no project imports.

The export traces these functions into its `generate` signature, so every filter runs
inside the SavedModel with its parameters passed at call time. Shapes: `logits` is
float32[batch, vocab]; ids are int32. A filtered-out word has logit -inf.

Order inside `choose_next_ids` (the same as Hugging Face's `generate`):
reserved ids masked -> repetition penalty -> no-repeat n-gram ban -> (greedy: argmax)
-> temperature -> top-k -> top-p -> Gumbel-max sample.
"""

from __future__ import annotations

import tensorflow as tf

PAD_ID = 0  # mirrors ingest.text; kept literal so `gen` never imports ingest
UNK_ID = 1
NEG_INF = float("-inf")


def mask_reserved(logits: tf.Tensor) -> tf.Tensor:
    """float32[batch, vocab] with <pad> (0) and <unk> (1) set to -inf: they are never sampled."""
    vocab_size = tf.shape(logits)[-1]
    is_reserved = tf.range(vocab_size) <= UNK_ID
    return tf.where(is_reserved[tf.newaxis, :], tf.constant(NEG_INF, logits.dtype), logits)


def apply_repetition_penalty(logits: tf.Tensor, seen: tf.Tensor, penalty: tf.Tensor) -> tf.Tensor:
    """CTRL-style penalty on words already in the prompt or the output.

    seen: bool[batch, vocab]. A seen word's positive logit is divided by `penalty`, a
    negative one multiplied, so penalty > 1 always makes it less likely; 1.0 is a no-op.
    """
    def penalised() -> tf.Tensor:
        return tf.where(seen, tf.where(logits > 0, logits / penalty, logits * penalty), logits)

    return tf.cond(tf.equal(penalty, 1.0), lambda: logits, penalised)  # off (the default): no ops on [batch, vocab]


def banned_by_ngrams(history: tf.Tensor, length: tf.Tensor, ngram: tf.Tensor, vocab_size: tf.Tensor) -> tf.Tensor:
    """bool[batch, vocab]: words that would repeat an n-gram already in `history`.

    history: int32[batch, capacity], the first `length` columns are filled (pre-padding
    included: an n-gram containing <pad> can only match padding, and <pad> is masked
    anyway). ngram: int32 scalar; < 2 disables the ban.
    """
    batch = tf.shape(history)[0]
    capacity = tf.shape(history)[1]

    def compute() -> tf.Tensor:
        prefix_length = ngram - 1
        starts = tf.range(capacity)
        # an n-gram starting at j is complete inside the history when j + n - 1 < length
        matches = tf.broadcast_to((starts + prefix_length < length)[tf.newaxis, :], [batch, capacity])

        def match_one(k, matches):
            wanted = history[:, length - prefix_length + k]  # int32[batch]
            shifted = tf.roll(history, shift=-k, axis=1)
            return k + 1, tf.logical_and(matches, tf.equal(shifted, wanted[:, tf.newaxis]))

        _, matches = tf.while_loop(lambda k, _: k < prefix_length, match_one, (tf.constant(0), matches))
        follower = tf.roll(history, shift=-prefix_length, axis=1)  # the word after each match
        rows = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, capacity])
        indices = tf.stack([tf.reshape(rows, [-1]), tf.reshape(follower, [-1])], axis=1)
        updates = tf.cast(tf.reshape(matches, [-1]), tf.int32)
        banned = tf.tensor_scatter_nd_max(tf.zeros([batch, vocab_size], tf.int32), indices, updates)
        return banned > 0

    usable = tf.logical_and(ngram >= 2, length >= ngram - 1)
    return tf.cond(usable, compute, lambda: tf.zeros([batch, vocab_size], tf.bool))


def top_k_filter(logits: tf.Tensor, top_k: tf.Tensor) -> tf.Tensor:
    """Keep the k largest logits per row (ties at the k-th value kept); k <= 0 disables."""
    vocab_size = tf.shape(logits)[-1]

    def filtered() -> tf.Tensor:
        # the k-th of a sorted row, not tf.math.top_k: XLA needs k at compile time (compiled generation)
        k = tf.clip_by_value(top_k, 1, vocab_size)
        kth_largest = tf.gather(tf.sort(logits, axis=-1, direction="DESCENDING"), [k - 1], axis=1)
        return tf.where(logits < kth_largest, tf.constant(NEG_INF, logits.dtype), logits)

    return tf.cond(top_k > 0, filtered, lambda: logits)  # skip the sort when off


def top_p_filter(logits: tf.Tensor, top_p: tf.Tensor) -> tf.Tensor:
    """Nucleus filter: keep the smallest set of words whose probability reaches top_p.

    The most likely word is always kept; top_p >= 1 keeps everything.
    """

    def filtered() -> tf.Tensor:  # inside the branch: off (the default), no sort runs
        sorted_logits = tf.sort(logits, axis=-1, direction="DESCENDING")
        probabilities = tf.nn.softmax(sorted_logits, axis=-1)
        mass_before = tf.cumsum(probabilities, axis=-1, exclusive=True)
        keep_sorted = mass_before < top_p
        # the smallest kept logit is the threshold; everything at or above it survives
        threshold = tf.reduce_min(tf.where(keep_sorted, sorted_logits, tf.constant(float("inf"), logits.dtype)), axis=-1)
        return tf.where(logits < threshold[:, tf.newaxis], tf.constant(NEG_INF, logits.dtype), logits)

    return tf.cond(top_p >= 1.0, lambda: logits, filtered)


def uniform_noise(shape: tf.Tensor, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """float32[shape] in [1e-20, 1): Philox's uniform draw for the counter (seed, step), the same floats
    compiled by XLA or not.

    Bit for bit what tf.random.stateless_uniform(shape, (seed, step), 1e-20, 1.0) gives uncompiled (so
    the words drawn for a seed are those of earlier exports), built from Philox's integer bits: XLA draws
    the same bits but turns them into floats from their high 23 bits, TensorFlow's kernel from their low
    23, so compiled generation drew other words for the same seed. ~3 more ops a word (~10 us a word at
    one row on a CPU: bench/RESULTS.md, "Compiled generation")."""
    counter = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    bits = tf.random.stateless_uniform(shape, seed=counter, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    mantissa = tf.bitwise.bitwise_and(bits, tf.constant(0x7FFFFF, tf.uint32))
    one_to_two = tf.bitcast(tf.bitwise.bitwise_or(mantissa, tf.constant(0x3F800000, tf.uint32)), tf.float32)
    return (one_to_two - 1.0) + 1e-20  # the kernel's (max - min) * u + min with (1.0 - 1e-20) == 1.0 in float32


def gumbel_sample(logits: tf.Tensor, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """int32[batch]: one draw per row from softmax(logits), by the Gumbel-max trick.

    Counter-based noise (`uniform_noise`) seeded by (seed, step); row r takes row r of the noise, so a
    sample depends only on (seed, row index, step): the same across runs and processes, compiled or not.
    """
    uniform = uniform_noise(tf.shape(logits), seed, step)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)


def choose_next_ids(
    logits: tf.Tensor,
    seen: tf.Tensor,
    banned: tf.Tensor,
    *,
    greedy: tf.Tensor,
    temperature: tf.Tensor,
    top_k: tf.Tensor,
    top_p: tf.Tensor,
    repetition_penalty: tf.Tensor,
    seed: tf.Tensor,
    step: tf.Tensor,
) -> tf.Tensor:
    """int32[batch]: the next word of every row; never <pad> or <unk>.

    If the filters leave a row with no word at all (a tiny vocabulary under a strict
    n-gram ban), that row falls back to the unfiltered distribution minus <pad>/<unk>.
    """
    logits = tf.cast(logits, tf.float32)
    base = mask_reserved(logits)
    shaped = apply_repetition_penalty(base, seen, repetition_penalty)
    shaped = tf.where(banned, tf.constant(NEG_INF, tf.float32), shaped)

    def sampled() -> tf.Tensor:
        scaled = shaped / tf.maximum(temperature, 1e-6)
        filtered = top_p_filter(top_k_filter(scaled, top_k), top_p)
        return gumbel_sample(_with_fallback(filtered, base / tf.maximum(temperature, 1e-6)), seed, step)

    def argmax() -> tf.Tensor:
        return tf.argmax(_with_fallback(shaped, base), axis=-1, output_type=tf.int32)

    return tf.cond(greedy, argmax, sampled)  # one branch a word: its ops only (generation's loop is dispatch-bound)


def _with_fallback(filtered: tf.Tensor, fallback: tf.Tensor) -> tf.Tensor:
    has_candidate = tf.reduce_any(tf.math.is_finite(filtered), axis=-1, keepdims=True)
    return tf.where(has_candidate, filtered, fallback)
