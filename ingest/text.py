"""The ONE tokenizer definition, in TensorFlow Text ops.

Ingest runs it on batches of documents; the export embeds the very same function in its
SavedModel, so training data and generation can never tokenize differently.

The recipe follows the notebook's `text_to_word_sequence`: fold case, turn Keras's
default punctuation filter characters into spaces (the apostrophe is not among them, so
"don't" stays one word), split on whitespace. Case folding is Unicode NFKC_Casefold rather
than `str.lower`, so "É", "é" and "ｅ\u0301" all meet as one word.
"""

from __future__ import annotations

import re

import tensorflow as tf
import tensorflow_text as tf_text

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN)

# Keras `text_to_word_sequence` default filters, minus tab and newline (whitespace anyway).
PUNCTUATION = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'
_PUNCTUATION_PATTERN = "[" + re.escape(PUNCTUATION) + "]"

TOKENIZER_CONFIG = {
    "name": "nextword-words",
    "version": 1,
    "case_fold": "NFKC_Casefold (tensorflow_text.case_fold_utf8)",
    "punctuation_to_space": PUNCTUATION,
    "split": "Unicode whitespace (tensorflow_text.WhitespaceTokenizer)",
}


def split_words(texts: tf.Tensor) -> tf.RaggedTensor:
    """string[batch] (valid UTF-8) -> ragged string[batch, (words)]."""
    folded = tf_text.case_fold_utf8(texts)
    spaced = tf.strings.regex_replace(folded, _PUNCTUATION_PATTERN, " ")
    return tf_text.WhitespaceTokenizer().tokenize(spaced)


def vocabulary_table(tokens: list[str] | tf.Tensor) -> tf.lookup.StaticHashTable:
    """A word -> id table; ids are line numbers of vocab.txt, unknown words map to UNK_ID."""
    keys = tf.constant(tokens, dtype=tf.string) if not isinstance(tokens, tf.Tensor) else tokens
    values = tf.range(tf.size(keys, out_type=tf.int64), dtype=tf.int64)
    initializer = tf.lookup.KeyValueTensorInitializer(keys, values)
    return tf.lookup.StaticHashTable(initializer, default_value=UNK_ID)


def words_to_ids(words: tf.RaggedTensor, table: tf.lookup.StaticHashTable) -> tf.RaggedTensor:
    """ragged string[batch, (words)] -> ragged int64[batch, (words)]."""
    return tf.ragged.map_flat_values(table.lookup, words)


def tokenize_to_ids(texts: tf.Tensor, table: tf.lookup.StaticHashTable) -> tf.RaggedTensor:
    """string[batch] -> ragged int64[batch, (words)]: the whole text -> ids path."""
    return words_to_ids(split_words(texts), table)
