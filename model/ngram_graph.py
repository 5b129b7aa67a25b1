"""The Kneser-Ney n-gram inside the exported graph, mixed with the network and the context cache:
p = w_net p_net + w_ngram p_ngram + w_cache p_cache (model/context_cache.py; w_cache 0 without it).

Why: on a small corpus an n-gram counted from the train windows beats any network trained on
them (66K words: 5-gram perplexity 313 vs the network's 440), and a linear mixture of the two
beats both (bench/RESULTS.md). The export carries the counted tables (model/ngram.py) as
variables and looks contexts up with `tf.searchsorted`, so `gen`, `eval EXPORT_DIR` and
TF Serving get the mixture without any nextword code.

The lookup is model/ngram.py's `predictive_distributions` written in TensorFlow ops: a row's
trie node for its last k ids is found from its node for the last k - 1 by one sorted-key
search; each order adds its discounted counts at the words seen after the row's context
(a ragged gather), and what they leave goes to the order below, down to the unigram.
"""

from __future__ import annotations

import tensorflow as tf

from nextword.model.ngram import PAD, KneserNey


class NgramMixture(tf.Module):
    """A counted KneserNey, the network's weight in the mixture and the context cache's (the
    n-gram has the rest). cache: whether the mixture has the context cache (its weight may be 0)."""

    def __init__(self, ngram: KneserNey, network_weight: float, cache_weight: float = 0.0, cache: bool = False):
        super().__init__(name="ngram_mixture")
        self.order, self.vocab_size = ngram.order, ngram.vocab_size
        self.network_weight, self.cache_weight = float(network_weight), float(cache_weight) if cache else 0.0
        self.ngram_weight = max(0.0, 1.0 - self.network_weight - self.cache_weight)
        self.cache = cache

        def table(values, dtype):  # variables, not constants: tens of MB stay out of the GraphDef
            return tf.Variable(tf.constant(values, dtype), trainable=False)

        self.trie = [table(keys, tf.int64) for keys in ngram.trie]
        self.offsets = [table(level.offsets, tf.int64) for level in ngram.levels]
        self.words = [table(level.words, tf.int32) for level in ngram.levels]
        self.discounted = [table(level.discounted, tf.float32) for level in ngram.levels]
        self.backoff = [table(level.backoff, tf.float32) for level in ngram.levels]
        self.unigram = table(ngram.unigram, tf.float32)

    def context_nodes(self, contexts: tf.Tensor) -> list[tf.Tensor]:
        """int32[b, order - 1] -> order tensors int64[b]: the trie node of each row's last k ids
        (k = 0 .. order - 1), -1 where training never had that context."""
        ids = tf.cast(contexts, tf.int64)
        nodes = [tf.zeros_like(ids[:, 0])]
        for depth in range(1, self.order):
            table, above = self.trie[depth - 1], nodes[-1]
            keys = above * self.vocab_size + ids[:, -depth]  # negative below an unseen node: never found
            at = tf.minimum(tf.searchsorted(table, keys, out_type=tf.int64), tf.size(table, out_type=tf.int64) - 1)
            found = tf.logical_and(above >= 0, tf.equal(tf.gather(table, at), keys))
            nodes.append(tf.where(found, at, tf.constant(-1, tf.int64)))
        return nodes

    def distributions(self, contexts: tf.Tensor) -> tf.Tensor:
        """int32[b, order - 1] -> float32[b, vocab]: P(. | each row's ids)."""
        nodes = self.context_nodes(contexts)
        weight = tf.ones(tf.shape(contexts)[:1], tf.float32)  # product of the backoffs of the orders above
        rows_of, words_of, values_of = [], [], []
        for n in range(self.order, 1, -1):
            node = nodes[n - 1]
            seen = node >= 0
            safe = tf.maximum(node, 0)
            starts = tf.gather(self.offsets[n - 1], safe)
            limits = tf.where(seen, tf.gather(self.offsets[n - 1], safe + 1), starts)  # unseen: no entries
            entries = tf.ragged.range(starts, limits)
            rows = entries.value_rowids()
            rows_of.append(rows)
            words_of.append(tf.cast(tf.gather(self.words[n - 1], entries.flat_values), tf.int64))
            values_of.append(tf.gather(weight, rows) * tf.gather(self.discounted[n - 1], entries.flat_values))
            weight = tf.where(seen, weight * tf.gather(self.backoff[n - 1], safe), weight)
        dense = weight[:, tf.newaxis] * self.unigram[tf.newaxis, :]
        indices = tf.stack([tf.concat(rows_of, 0), tf.concat(words_of, 0)], axis=1)
        return tf.tensor_scatter_nd_add(dense, indices, tf.concat(values_of, 0))

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
        counts = tf.math.bincount(given, minlength=self.vocab_size, maxlength=self.vocab_size, axis=-1,
                                  dtype=tf.float32)
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
        ngram = self.distributions(window[:, tf.shape(window)[1] - width:])
        network = tf.nn.softmax(network_logits, axis=-1)
        mixed = self.network_weight * network + self.ngram_weight * ngram
        if self.cache:
            mixed += self.cache_weight * self.cache_distributions(window, ngram, generated)
        return tf.math.log(mixed)  # > 0 everywhere: the unigram gives every id mass
