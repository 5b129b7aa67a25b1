"""The TF Text tokenizer as compiled batch functions (both runners and every pass use it: the local
runner's worker processes through ingest/worker_pool.py), and an ordered map over a thread pool that
keeps a bounded number of batches in flight."""

from __future__ import annotations

import collections

from nextword.ingest.windows import WindowPlan, document_keys, is_validation


def _batch_function(tf, function):
    """`function` of a string[batch] tensor, called eagerly on a list of texts. A call is a dozen
    ops over a whole batch, so a traced tf.function bought no speed (the ingest's wall time was
    the same or lower without it, 3 corpora), while each worker process held its graphs and
    their runtime state: 140-159 MB private a worker with tf.function, 66-105 MB without
    (--dedup exact, 2 workers; see bench/RESULTS.md, issue 22)."""
    return lambda texts: function(tf.convert_to_tensor(texts, tf.string))


class BatchTokenizer:
    """The TF Text tokenizer as batch functions: count words, and map text to ids (by
    `ingest.text.TextToIds`, of either tokenizer)."""

    def __init__(self) -> None:
        import tensorflow as tf

        from nextword.ingest.text import split_words

        self._tf = tf

        def count(texts):
            words = split_words(texts)
            unique, _, counts = tf.unique_with_counts(words.flat_values)
            return words.row_lengths(), unique, counts

        self.count = _batch_function(tf, count)
        self.to_ids = None
        self._keyed: dict = {}

    def keyed_count(self, near: bool, counting: bool = True):
        """`count` plus --dedup's inputs: string[batch] -> (lengths int64[batch],
        unique words, their counts (both empty unless `counting`), uint8[batch, 8] the fingerprint
        of each document's words joined by a space, uint8[words, 8] each word's fingerprint
        (near only, else empty))."""
        if (near, counting) not in self._keyed:
            tf = self._tf
            from nextword.ingest.text import split_words

            def keyed(texts):
                words = split_words(texts)
                if counting:
                    unique, _, counts = tf.unique_with_counts(words.flat_values)
                else:
                    unique, counts = tf.zeros([0], tf.string), tf.zeros([0], tf.int32)
                joined = tf.fingerprint(tf.strings.reduce_join(words, axis=1, separator=" "))
                prints = tf.fingerprint(words.flat_values) if near else tf.zeros([0, 8], tf.uint8)
                return words.row_lengths(), unique, counts, joined, prints

            self._keyed[(near, counting)] = _batch_function(tf, keyed)
        return self._keyed[(near, counting)]

    def use_vocabulary(self, tokens: list[str], tokenizer: str = "word") -> None:
        tf = self._tf
        from nextword.ingest.text import TextToIds

        text_to_ids = TextToIds(tokens, tokenizer)

        def to_ids(texts):
            ids = text_to_ids(texts)
            return tf.cast(ids.flat_values, tf.int32), ids.row_lengths()

        def lengths_and_ids(texts):  # --vocab-from's pass 1: words and ids of one tokenization
            words, ids, _ = text_to_ids.words_and_ids(texts)
            return words.row_lengths(), tf.cast(ids.flat_values, tf.int32), ids.row_lengths()

        self._text_to_ids = text_to_ids  # keep its table / model alive with the function
        self.to_ids = _batch_function(tf, to_ids)
        self.lengths_and_ids = _batch_function(tf, lengths_and_ids)


def encode_arguments(tokenizer: BatchTokenizer, plan: WindowPlan, texts: list[bytes], val_fraction: float) -> tuple:
    """A batch of texts -> the arguments of `ingest.windows.encode_block` (both runners use this):
    (plan, flat ids int32[tokens], lengths int64[documents], document keys uint64, validation bool)."""
    flat_ids, lengths = (tensor.numpy() for tensor in tokenizer.to_ids(texts))
    keys = document_keys(texts)
    return plan, flat_ids, lengths, keys, is_validation(keys, val_fraction)


def in_order(executor, function, items, depth: int):
    """executor.map(function, items) in order, with at most `depth` items in flight
    (Executor.map would read the whole input ahead)."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(executor.submit(function, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
