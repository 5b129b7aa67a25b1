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

Words become ids in one of two ways (`TextToIds`, `nextword ingest --tokenizer`): `word` looks each
word up in the vocabulary (<unk> if absent); `wordpiece` spells each word with TF Text's
FastWordpieceTokenizer from pieces learned at ingest (ingest/wordpiece.py), "##" marking a piece
that continues a word, and merges the pieces of a document into one sequence.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from nextword.tfrecords.manifest import TOKENIZERS, is_continuation

from nextword.ingest.text_spec import (
    LEARNER_PARAMS, LEARNER_WORDS, MAX_BYTES_PER_WORD, PAD_ID, PAD_TOKEN, PUNCTUATION,
    RESERVED_TOKENS, SPACE_LIKE, SUFFIX_INDICATOR, TOKENIZER_CONFIG, UNK_ID, UNK_TOKEN,
    WORDPIECE_CONFIG, _TO_SPACE_PATTERN, _VALID_UTF8_PATTERN, tokenizer_config,
)

# the definition's data lives in ingest/text_spec.py (no TensorFlow there); importable from here as before
__all__ = [
    'LEARNER_PARAMS', 'LEARNER_WORDS', 'MAX_BYTES_PER_WORD', 'PAD_ID', 'PAD_TOKEN', 'PUNCTUATION',
    'RESERVED_TOKENS', 'SPACE_LIKE', 'SUFFIX_INDICATOR', 'TOKENIZER_CONFIG', 'UNK_ID', 'UNK_TOKEN',
    'WORDPIECE_CONFIG', 'tokenizer_config', 'valid_utf8', 'split_words', 'vocabulary_table', 'words_to_ids',
    'tokenize_to_ids', 'TextToIds',
]


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


class TextToIds(tf.Module):
    """The text -> ids function of either tokenizer: string[batch] (any bytes) -> ragged
    int64[batch, (tokens)], for a vocabulary given as a list of strings (line number = id).

    word:      each word of `split_words` -> its id, or UNK_ID.
    wordpiece: each word of `split_words` -> its pieces' ids (FastWordpieceTokenizer, "##" marking
               a piece that continues a word; a word it cannot spell -> one UNK_ID), merged into
               one sequence per document.

    Ingest calls it; the export embeds the same module (plus `detokenize`) in its SavedModel.
    """

    def __init__(self, vocabulary: list[str], tokenizer: str = "word") -> None:
        super().__init__(name="text_to_ids")
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
        self.tokenizer = tokenizer
        # A variable: the export shares it as its `vocabulary` (loadable from the SavedModel)
        self.vocabulary = tf.Variable(list(vocabulary), trainable=False, dtype=tf.string, name="vocabulary")
        if tokenizer == "wordpiece":
            self.wordpiece = tf_text.FastWordpieceTokenizer(
                list(vocabulary), suffix_indicator=SUFFIX_INDICATOR, max_bytes_per_word=MAX_BYTES_PER_WORD,
                unknown_token=UNK_TOKEN, no_pretokenization=True, support_detokenization=True)
        else:
            self.table = vocabulary_table(vocabulary)
        # bool[vocab]: the ids that continue the word before them ("##ing"); none for `word`.
        self.continues_word = tf.constant([is_continuation(token, SUFFIX_INDICATOR) and tokenizer == "wordpiece"
                                           for token in vocabulary])

    def __call__(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return self.words_and_ids(texts)[1]

    def words_and_ids(self, texts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """string[batch] -> (words ragged string[batch, (words)], ids ragged int64[batch, (tokens)],
        unknown ragged bool[batch, (words)]: the words read as <unk>)."""
        words = split_words(texts)
        if self.tokenizer == "word":
            ids = words_to_ids(words, self.table)
            return words, ids, tf.equal(ids, UNK_ID)
        pieces = self.wordpiece.tokenize(words)  # [batch, (words), (pieces)]
        unknown = tf.reduce_any(tf.equal(pieces, UNK_ID), axis=2)
        return words, pieces.merge_dims(1, 2), unknown

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """ragged int[batch, (tokens)] -> string[batch]: the words, joined by single spaces (a piece
        continuing a word is appended to it; `word` joins the words as they are)."""
        if self.tokenizer == "wordpiece":
            return self.wordpiece.detokenize(ids)
        return tf.strings.reduce_join(tf.gather(self.vocabulary, ids), axis=1, separator=" ")
