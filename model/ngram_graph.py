"""The Kneser-Ney n-gram inside the exported graph, mixed with the network and the context cache:
p = w_net p_net + w_ngram p_ngram + w_cache p_cache (model/context_cache.py; w_cache 0 without it).

Why: on a small corpus an n-gram counted from the train windows beats any network trained on
them (66K words: 5-gram perplexity 313 vs the network's 440), and a linear mixture of the two
beats both (bench/RESULTS.md). The export carries the counted tables (model/ngram.py) as
variables and looks contexts up with `tf.searchsorted`, so `gen`, `eval EXPORT_DIR` and
TF Serving get the mixture without any nextword code.

The lookup is model/ngram.py's `predictive_distributions` written in TensorFlow ops, in few of
them, as it runs once a word inside the generation loop where each op costs its dispatch: every
context of a row (its last 1 .. order - 1 ids) is found by ONE sorted-key search, its ids read as
one base-V number (one search a depth, from the depth above, when V^(order - 1) overflows int64);
every order's discounted counts at the words seen after the row's contexts are gathered at once
(a ragged gather) and summed into the unigram scaled by the backoffs. The tables are only ever read
whole: a gather from a variable switches it to copy-on-read, and each later read copies it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf

from nextword.model.ngram import PAD, KneserNey


def tuple_key_limit(vocab_size: int, width: int) -> int:
    """One past the largest tuple key of contexts up to width ids (exact: Python ints)."""
    return sum(vocab_size ** depth for depth in range(1, width + 1))


def tuple_key_offsets(vocab_size: int, width: int) -> np.ndarray:
    """int64[width]: where depth k's keys start (k - 1), so no two depths share a key."""
    return np.array([tuple_key_limit(vocab_size, depth - 1) for depth in range(1, width + 1)], np.int64)


def tuple_key_weights(vocab_size: int, width: int) -> np.ndarray:
    """int64[width, width]: [j, k - 1], the weight of context column j (the last is nearest) in the
    depth-k key; the nearest id is the most significant digit, so keys sort as the trie's nodes do."""
    weights = np.zeros((width, width), np.int64)
    for depth in range(1, width + 1):
        for back in range(1, depth + 1):
            weights[width - back, depth - 1] = vocab_size ** (depth - back)
    return weights


def tuple_keys(ngram: KneserNey, depth: int) -> np.ndarray:
    """int64[nodes of depth]: each trie node's last depth ids as a base-V number, nearest most
    significant; ascending, as the trie's keys parent node * V + id are."""
    keys = np.zeros(1, np.int64)  # the empty context
    for level in range(depth):
        parents, ids = np.divmod(ngram.trie[level], ngram.vocab_size)
        keys = keys[parents] * ngram.vocab_size + ids
    return keys


def bucket_count(keys: int) -> int:
    """A prime near keys / 2: the buckets of a BucketIndex (a key's bucket is key mod it)."""
    count = max(3, keys // 2) | 1
    while any(count % divisor == 0 for divisor in range(3, int(count ** 0.5) + 1, 2)):
        count += 2
    return count


class BucketIndex(tf.Module):
    """Finds keys in a sorted int64 table with shapes XLA knows when it compiles.

    Why: `tf.searchsorted` is one op uncompiled, but XLA lowers it to a comparison of every query with every
    key (a compiled mixed loop ran 1,400 words/s at 64 rows on the KJV's 590K contexts). Here a key's bucket
    (key mod a prime near half the table) lists its candidates, at most `cap` of them (11-12 on three real
    corpora's 97K-1.7M keys): a fixed number of gathers and compares. 6 bytes a key: each bucket's places in the table, sorted
    by bucket, and where each bucket starts."""

    def __init__(self, keys: np.ndarray):
        super().__init__(name="bucket_index")
        self.buckets = bucket_count(len(keys))
        bucket = keys % self.buckets
        by_bucket = np.lexsort((keys, bucket))
        sizes = np.bincount(bucket, minlength=self.buckets)
        self.cap = max(1, int(sizes.max(initial=0)))
        # never empty: a gather at an empty bucket's place 0 must stay in range (`inside` then discards it)
        self.places = tf.Variable(tf.constant(by_bucket if len(keys) else [0], tf.int32), trainable=False)
        self.starts = tf.Variable(tf.constant(np.concatenate([[0], np.cumsum(sizes)]), tf.int32), trainable=False)

    def find(self, table: tf.Tensor, keys: tf.Tensor) -> tf.Tensor:
        """table int64[n] (the sorted keys this index was built on), keys int64[m] -> int32[m]: each key's
        place in table, -1 where it is not there."""
        bucket = tf.cast(tf.math.floormod(keys, self.buckets), tf.int32)
        bounds = tf.gather(self.starts.value(), tf.stack([bucket, bucket + 1], axis=1))  # [m, 2]
        candidates = bounds[:, :1] + tf.range(self.cap)  # [m, cap]
        inside = candidates < bounds[:, 1:]
        places = tf.gather(self.places.value(), tf.where(inside, candidates, 0))
        hit = tf.logical_and(inside, tf.equal(tf.gather(table, places), keys[:, tf.newaxis]))
        return tf.reduce_max(tf.where(hit, places, -1), axis=1)


class NgramMixture(tf.Module):
    """A counted KneserNey, the network's weight in the mixture and the context cache's (the
    n-gram has the rest). cache: whether the mixture has the context cache (its weight may be 0).

    The tables are laid out for few ops a word (inside the generation loop each op costs its dispatch,
    ~6 us on a CPU, more than its arithmetic): every context of depths 1 .. order - 1 is one node of
    one table, whose row holds its followers' span and its backoff, and a last row, `unseen`, holds
    an empty span and a backoff of 1 for a context training never had."""

    def __init__(self, ngram: KneserNey, network_weight: float, cache_weight: float = 0.0, cache: bool = False):
        super().__init__(name="ngram_mixture")
        self.order, self.vocab_size = ngram.order, ngram.vocab_size
        self.network_weight, self.cache_weight = float(network_weight), float(cache_weight) if cache else 0.0
        self.ngram_weight = max(0.0, 1.0 - self.network_weight - self.cache_weight)
        self.cache = cache

        def table(values, dtype):  # variables, not constants: tens of MB stay out of the GraphDef
            return tf.Variable(tf.constant(values, dtype), trainable=False)

        width = self.order - 1
        levels = ngram.levels[1:]  # orders 2 .. order: contexts of depths 1 .. width (order 1 is in the unigram)
        node_counts = [len(keys) for keys in ngram.trie]
        self.first_node = np.concatenate([[0], np.cumsum(node_counts)]).astype(np.int64)  # of each depth
        self.unseen = int(self.first_node[-1])
        entry_starts = np.concatenate([[0], np.cumsum([len(level.words) for level in levels])])
        spans = np.concatenate([np.stack([level.offsets[:-1], level.offsets[1:]], axis=1) + start
                                for level, start in zip(levels, entry_starts)] + [np.zeros((1, 2), np.int64)])
        self.spans = table(spans, tf.int32)  # < order x MAX_EVENTS entries
        self.backoff = table(np.concatenate([level.backoff for level in levels] + [[1.0]]), tf.float32)
        self.words = table(np.concatenate([level.words for level in levels]), tf.int32)
        self.discounted = table(np.concatenate([level.discounted for level in levels]), tf.float32)
        self.unigram = table(ngram.unigram, tf.float32)
        # The most words any context of each depth was seen followed by: the static width of the compilable
        # lookup's entries (`_entries`), one column per possible follower of each depth's context.
        span_caps = [max(1, int(np.diff(level.offsets).max(initial=0))) for level in levels]
        self.entry_depth = np.repeat(np.arange(width, dtype=np.int32), span_caps)  # [entries]: each column's depth
        self.entry_rank = np.concatenate([np.arange(cap, dtype=np.int32) for cap in span_caps])  # its place in the span
        self.tuple_keys = tuple_key_limit(self.vocab_size, width) < np.iinfo(np.int64).max
        if self.tuple_keys:  # one search: each context's key is its ids as a base-V number, by depth
            self.key_weights = tuple_key_weights(self.vocab_size, width)
            self.key_offsets = tuple_key_offsets(self.vocab_size, width)
            keys = np.concatenate([tuple_keys(ngram, depth) + self.key_offsets[depth - 1] for depth in range(1, width + 1)])
            self.keys = table(np.concatenate([keys, [np.iinfo(np.int64).max]]), tf.int64)  # a sentinel: unseen
            self.index = BucketIndex(keys)
        else:  # keys too large for int64: one search a depth, from the node of the depth above
            self.trie = [table(keys, tf.int64) for keys in ngram.trie]
            self.index = [BucketIndex(keys) for keys in ngram.trie]
        self._static_shapes = False

    @contextlib.contextmanager
    def static_shapes(self):
        """Within it, the lookup is traced in ops whose shapes XLA knows when it compiles (every context's
        place found through `BucketIndex`, every depth's followers read `entry_rank` wide), the same
        distributions; outside it, in the fewest ops uncompiled (`tf.searchsorted`, a ragged range of the
        followers seen: at 64 rows on the KJV the static lookup ran the loop at less than half its words/s
        uncompiled)."""
        self._static_shapes = True
        try:
            yield
        finally:
            self._static_shapes = False

    def context_nodes(self, contexts: tf.Tensor) -> tf.Tensor:
        """int32[b, order - 1] -> int32[b, order - 1]: column k - 1, each row's node for its last k ids
        in the mixture's one table of contexts, `unseen` where training never had that context."""
        ids = tf.cast(contexts, tf.int64)
        if self.tuple_keys:
            keys = tf.reshape(tf.reduce_sum(ids[:, :, tf.newaxis] * self.key_weights, axis=1) + self.key_offsets, [-1])
            table = self.keys.value()
            if self._static_shapes:
                at = self.index.find(table, keys)
                return tf.reshape(tf.where(at >= 0, at, self.unseen), tf.shape(contexts))
            at = tf.searchsorted(table, keys, out_type=tf.int32)  # <= unseen: the sentinel
            found = tf.equal(tf.gather(table, at), keys)
            return tf.reshape(tf.where(found, at, self.unseen), tf.shape(contexts))
        nodes, above = [], tf.zeros_like(ids[:, 0])
        for depth in range(1, self.order):
            table = self.trie[depth - 1].value()
            keys = above * self.vocab_size + ids[:, -depth]  # negative below an unseen node: never found
            if self._static_shapes:
                above = tf.where(above >= 0, tf.cast(self.index[depth - 1].find(table, keys), tf.int64), -1)
            else:
                at = tf.minimum(tf.searchsorted(table, keys, out_type=tf.int64), tf.size(table, out_type=tf.int64) - 1)
                above = tf.where(tf.logical_and(above >= 0, tf.equal(tf.gather(table, at), keys)), at, -1)
            nodes.append(tf.where(above >= 0, above + self.first_node[depth - 1], self.unseen))
        return tf.cast(tf.stack(nodes, axis=1), tf.int32)

    def distributions(self, contexts: tf.Tensor) -> tf.Tensor:
        """int32[b, order - 1] -> float32[b, vocab]: P(. | each row's ids).

        Unrolled interpolation (model/ngram.py predictive_distributions): each seen order's
        discounted counts times the product of the backoffs of the orders above it, plus the
        product of all of them times the unigram; every order's entries gathered and scattered at once."""
        nodes = self.context_nodes(contexts)
        backoffs = tf.gather(self.backoff.value(), nodes)  # [b, width]; 1 where unseen
        above = tf.math.cumprod(backoffs, axis=1, exclusive=True, reverse=True)  # column k: depths > k + 1
        dense = tf.reduce_prod(backoffs, axis=1, keepdims=True) * self.unigram.value()
        spans = tf.gather(self.spans.value(), nodes)  # [b, width, 2]
        rows, entries, scale = self._entries(spans, above)
        words = tf.gather(self.words.value(), entries)
        values = scale * tf.gather(self.discounted.value(), entries)
        # a segment sum over row * V + word: ~2x faster at 64 rows than tensor_scatter_nd_add (bench/RESULTS.md)
        flat = tf.reshape(tf.cast(rows, tf.int64) * self.vocab_size + tf.cast(words, tf.int64), [-1])
        added = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), flat, tf.size(dense, out_type=tf.int64))
        return dense + tf.reshape(added, tf.shape(dense))

    def _entries(self, spans, above):
        """spans int32[b, width, 2] (each context's followers), above float32[b, width] -> (rows, entries, scale),
        broadcastable: each follower's row, its place in `words`/`discounted` and the backoffs above its order."""
        if self._static_shapes:  # every depth's widest span: an empty place scales by 0
            entries = tf.gather(spans[:, :, 0], self.entry_depth, axis=1) + self.entry_rank  # [b, entries]
            inside = entries < tf.gather(spans[:, :, 1], self.entry_depth, axis=1)
            scale = tf.where(inside, tf.gather(above, self.entry_depth, axis=1), 0.0)
            return tf.range(tf.shape(spans)[0])[:, tf.newaxis], tf.where(inside, entries, 0), scale
        spans = tf.reshape(spans, [-1, 2])
        followers = tf.ragged.range(spans[:, 0], spans[:, 1], row_splits_dtype=tf.int32)
        cells = followers.value_rowids()  # row * width + column of each entry
        width = self.order - 1
        return cells // width, followers.flat_values, tf.gather(tf.reshape(above, [-1]), cells)

    def ids_read(self, context_length: int) -> int:
        """How many of the ids before a word the mixture reads: the whole window with the cache."""
        return context_length if self.cache else self.order - 1

    def cache_distributions(self, window: tf.Tensor, fallback: tf.Tensor, generated: tf.Tensor | None = None) -> tf.Tensor:
        """int32[b, width] -> float32[b, vocab]: the share of each window's words (pad excluded)
        that are each id; fallback float32[b, vocab] for a window holding no word. generated:
        bool[width], positions that hold the model's own samples: each counts as the fallback's
        distribution instead of its word, so a sample does not make itself likelier (a cache of its
        own output feeds on itself) while the prompt's words still thin out as the window fills."""
        given = window if generated is None else tf.where(generated[tf.newaxis, :], tf.zeros_like(window), window)
        # the raw op: tf.math.bincount derives its size from the ids' maximum at run time, which XLA refuses
        counts = tf.raw_ops.DenseBincount(input=given, size=self.vocab_size, weights=tf.zeros([0], tf.float32))
        counts = counts * tf.one_hot(PAD, self.vocab_size, on_value=0.0, off_value=1.0)  # pad is no word
        if generated is not None:  # samples are never pad
            samples = tf.reduce_sum(tf.cast(tf.logical_and(generated[tf.newaxis, :], window != PAD), tf.float32),
                                    axis=1, keepdims=True)
            counts += samples * fallback
        held = tf.reduce_sum(counts, axis=1, keepdims=True)
        return tf.where(held > 0, counts / tf.maximum(held, 1e-30), fallback)

    def mixed_log_probabilities(self, network_logits: tf.Tensor, window: tf.Tensor,
                                generated: tf.Tensor | None = None) -> tf.Tensor:
        """network logits float32[b, vocab] and the ids they follow int32[b, >= ids_read] ->
        float32[b, vocab]: log(w_net softmax(logits) + w_ngram P_ngram + w_cache P_cache).
        Sampling treats them as logits (their softmax is the mixture itself). generated: bool[width],
        the window's positions that hold the model's own samples (see cache_distributions)."""
        width = self.order - 1
        ngram = self.distributions(window[:, -width:])
        network = tf.nn.softmax(network_logits, axis=-1)
        mixed = self.network_weight * network + self.ngram_weight * ngram
        if self.cache:
            mixed += self.cache_weight * self.cache_distributions(window, ngram, generated)
        return tf.math.log(mixed)  # > 0 everywhere: the unigram gives every id mass
