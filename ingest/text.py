"""The ONE tokenizer definition, in TensorFlow and TensorFlow Text ops, from raw bytes to words.

Ingest runs it on batches of documents exactly as read from the files (bytes, nothing cleaned
in Python); the export embeds the very same function in its SavedModel, so training data and
generation can never tokenize differently, whatever the bytes (tests/test_one_tokenizer.py).

The recipe follows the notebook's `text_to_word_sequence` (fold case, Keras's default
punctuation filter characters become spaces, split on whitespace; the apostrophe is not a
filter character, so "don't" stays one word), made total over arbitrary bytes. In order:

1. Invalid UTF-8: every maximal ill-formed subsequence (a lone continuation byte, a truncated
   sequence, an overlong form, an encoded surrogate, anything past U+10FFFF, bytes F5-FF) becomes
   one U+FFFD, the Unicode-recommended practice that Python's decoder also follows. U+FFFD is a
   word character: "caf\xe9" (Latin-1) is the word "caf\ufffd".
2. NFKC_Casefold (ICU): folds case and compatibility forms ("Straße" = "strasse", "ｆｉ" = "fi"),
   composes combining marks where a precomposed letter exists ("e\u0301" = "é"), and DELETES
   every Default_Ignorable_Code_Point: zero-width space and (non-)joiners U+200B-U+200D, word
   joiner U+2060 and the invisible operators, U+FEFF anywhere (a BOM or mid-text), soft hyphen,
   bidi marks and embeddings/isolates, variation selectors, tag characters, Hangul fillers,
   U+034F, U+180E. Invisible characters so never split a word ("a\u200bb" = "ab") and an emoji
   ZWJ sequence becomes its emoji run together (one word).
3. To a space: the punctuation filter characters, every control character (U+0000-U+001F with
   NUL, tab, newlines and the separators U+001C-U+001F; U+007F-U+009F with NEL), and every other
   Unicode White_Space character (U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
   U+3000).
4. Split on runs of spaces.

Everything else is part of a word: letters, digits, combining marks (one with no base letter
stays at the start of its word), symbols, emoji, U+FFFD, private use, noncharacters, unassigned
code points and the few format characters that are not default-ignorable (e.g. U+0600).
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
# Controls (C0, DEL, C1) and the White_Space characters other than U+0020, as RE2 ranges of
# code points. U+0020 itself is left alone: replacing the commonest character by itself costs.
SPACE_LIKE = r"\x00-\x1f\x7f-\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
_TO_SPACE_PATTERN = "[" + re.escape(PUNCTUATION) + SPACE_LIKE + "]"
# Exactly the well-formed UTF-8 strings: RE2 compiles explicit code point ranges to exact byte
# sequences (no overlong forms, no surrogates, nothing past U+10FFFF). ~300 MB/s, 8% of split_words;
# the ICU transcode (~20 MB/s) then runs only on the rare strings that need it.
_VALID_UTF8_PATTERN = r"(?s)[\x00-\x{d7ff}\x{e000}-\x{10ffff}]*"

TOKENIZER_CONFIG = {
    "name": "nextword-words",
    "version": 2,  # 1: NUL and invalid UTF-8 were repaired in Python, other controls stayed in words
    "input": "raw bytes; each maximal ill-formed UTF-8 subsequence -> U+FFFD (a word character)",
    "case_fold": "NFKC_Casefold (tensorflow_text.case_fold_utf8), which deletes default-ignorable code points",
    "punctuation_to_space": PUNCTUATION,
    "other_to_space": "control characters U+0000-U+001F, U+007F-U+009F and Unicode White_Space",
    "split": "runs of U+0020 (tensorflow_text.WhitespaceTokenizer, once nothing else is whitespace)",
}


def valid_utf8(texts: tf.Tensor) -> tf.Tensor:
    """string[batch] of any bytes -> the same as valid UTF-8: each maximal ill-formed
    subsequence becomes U+FFFD (ICU's transcode, applied only to the strings that need it)."""
    texts = tf.convert_to_tensor(texts, tf.string)
    broken = tf.where(tf.logical_not(tf.strings.regex_full_match(texts, _VALID_UTF8_PATTERN)))
    return tf.cond(tf.size(broken) > 0, lambda: _repair_utf8(texts, broken), lambda: texts)


def _repair_utf8(texts: tf.Tensor, broken: tf.Tensor) -> tf.Tensor:
    repaired = tf.strings.unicode_transcode(tf.gather_nd(texts, broken), "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD, replace_control_characters=False)
    return tf.tensor_scatter_nd_update(texts, broken, repaired)


def split_words(texts: tf.Tensor) -> tf.RaggedTensor:
    """string[batch] (any bytes) -> ragged string[batch, (words)], each word valid UTF-8."""
    folded = tf_text.case_fold_utf8(valid_utf8(texts))
    spaced = tf.strings.regex_replace(folded, _TO_SPACE_PATTERN, " ")
    # Only U+0020 is left to split on: the WhitespaceTokenizer alone cuts U+0085, U+1680, U+2028
    # and U+2029 in half, leaving their first bytes (invalid UTF-8) in the word before.
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
