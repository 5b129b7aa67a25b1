"""The tokenizer's definition as data, without TensorFlow: reserved tokens, the characters that
become spaces, the WordPiece settings and what dataset.json records as `tokenizer`. The ops that
apply it are in ingest/text.py; this module is what a process that only reads, hands out and
writes (the ingest's main process with --workers > 1) needs of it, so it need not load TensorFlow.
"""

from __future__ import annotations

import re

from nextword.tfrecords.manifest import WORDPIECE_NAME

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


# ------------------------------------------------------------------ subwords (--tokenizer wordpiece)

SUFFIX_INDICATOR = "##"  # marks a piece that continues a word: "walking" -> "walk", "##ing"
# FastWordpieceTokenizer's default: a longer word (in UTF-8 bytes) becomes one <unk>.
MAX_BYTES_PER_WORD = 100
# The WordPiece learner's settings (tensorflow_text ... wordpiece_tokenizer_learner_lib.learn; its
# defaults but for the joiner), and how many distinct words it is given: the most frequent ones
# (plus every other character of the corpus, see ingest/wordpiece.py). The learner is pure Python
# and its time grows with the words it is given. Measured on this 2-core machine, vim's help files
# (1.5M words, 37,203 distinct), --vocab-size 5000: 5K words 6.5 s, 10K 21 s, 20K 38 s, all 37K 70 s
# (55 s for 20K words at --vocab-size 20000), while the corpus took 1.215, 1.191, 1.193 and 1.188
# pieces a word: past ~10K words the pieces hardly change. 20K (the default --vocab-size) bounds the
# learner near a minute whatever the corpus; a rarer word is still spelled from the pieces learned.
LEARNER_WORDS = 20_000
LEARNER_PARAMS = dict(upper_thresh=10_000_000, lower_thresh=10, num_iterations=4, max_token_length=50,
                      max_unique_chars=1000, slack_ratio=0.05, include_joiner_token=True, joiner=SUFFIX_INDICATOR)

WORDPIECE_CONFIG = {
    **TOKENIZER_CONFIG,  # the same words, then each word becomes pieces ("name" keeps its place, first)
    "name": WORDPIECE_NAME,
    "pieces": "tensorflow_text.FastWordpieceTokenizer over each word (no_pretokenization), ids merged per document",
    "suffix_indicator": SUFFIX_INDICATOR,
    "unknown_token": UNK_TOKEN,
    "unknown": "one unknown_token for a whole word its pieces cannot spell (a character outside the learned "
               "alphabet) or longer than max_bytes_per_word UTF-8 bytes",
    "max_bytes_per_word": MAX_BYTES_PER_WORD,
    "learner": "tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib.learn",
    "learner_words": LEARNER_WORDS,  # the most frequent words (ties by word) with their counts
    "learner_characters": "every character of the corpus: one that no word given holds is given as a word, count 1",
    "learner_params": LEARNER_PARAMS,
}


def tokenizer_config(tokenizer: str) -> dict:
    """What dataset.json records as `tokenizer` for `--tokenizer word|wordpiece`."""
    return WORDPIECE_CONFIG if tokenizer == "wordpiece" else TOKENIZER_CONFIG
