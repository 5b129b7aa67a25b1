"""The one tokenizer: a golden table of tricky strings."""

import pytest

from nextword.ingest.text import PAD_ID, UNK_ID, split_words, tokenize_to_ids, vocabulary_table

GOLDEN = [
    ("Hello, World!", ["hello", "world"]),
    ("Don't stop — it's fine", ["don't", "stop", "—", "it's", "fine"]),  # apostrophes kept, like the notebook
    ("Café CAFÉ café", ["café", "café", "café"]),  # accents survive, case folds
    ("e\u0301cole ÉCOLE", ["école", "école"]),  # NFKC composes the combining accent
    ("ＦＵＬＬ width ﬁne", ["full", "width", "fine"]),  # compatibility forms folded
    ("Straße STRASSE", ["strasse", "strasse"]),  # full case folding, not lower()
    ("3.14 and 2,000 in 2024", ["3", "14", "and", "2", "000", "in", "2024"]),
    ("rocket 🚀🚀 moon", ["rocket", "🚀🚀", "moon"]),
    ("中文字 テスト", ["中文字", "テスト"]),
    ("well...!!!???(yes)", ["well", "yes"]),
    ("tabs\tand\nnewlines  \u00a0 nbsp", ["tabs", "and", "newlines", "nbsp"]),
    ("a-b_c/d@e#f", ["a", "b", "c", "d", "e", "f"]),
    ("   ", []),
    ("", []),
    ("!!! ... ---", []),
]

# The repairs, in the graph since tokenizer version 2 (ingest passes raw bytes).
GOLDEN_BYTES = [
    (b"nul\x00byte", ["nul", "byte"]),  # NUL, like every control character, separates words
    (b"a\x01b\x1cc\x7fd\xc2\x85e\xc2\x9ff", ["a", "b", "c", "d", "e", "f"]),  # C0, DEL, NEL, C1
    ("a\u2028b\u2029c\u1680d\u3000e\u00a0f".encode(), ["a", "b", "c", "d", "e", "f"]),  # all White_Space
    (b"caf\xe9 \xff\xfe end", ["caf\ufffd", "\ufffd\ufffd", "end"]),  # each bad byte run -> U+FFFD, a word char
    (b"a\xed\xa0\x80b \xc0\xafc \xf0\x9f\x98", ["a\ufffd\ufffd\ufffdb", "\ufffd\ufffdc", "\ufffd"]),  # surrogate, overlong, cut
    ("\ufeffbom mid\ufeffword".encode(), ["bom", "midword"]),  # U+FEFF deleted anywhere
    ("zero\u200bwidth word\u2060joiner soft\u00adhyphen".encode(), ["zerowidth", "wordjoiner", "softhyphen"]),
    ("👨\u200d👩\u200d👧 ok".encode(), ["👨👩👧", "ok"]),  # ZWJ deleted: the emoji stay one word
    (" \u0301x".encode(), ["\u0301x"]),  # a mark with no base letter stays in its word
]


@pytest.mark.parametrize(("raw", "words"), GOLDEN_BYTES)
def test_split_words_repairs_raw_bytes(raw, words):
    result = split_words([raw]).to_list()[0]
    assert [word.decode("utf-8") for word in result] == words


def test_every_word_is_valid_utf8_without_separators_whatever_the_bytes():
    import random
    import re

    from nextword.ingest.text import PUNCTUATION

    rng = random.Random(7)
    pieces = [b"\x00", b"\x85", b"\xc2\x85", b"\xe2\x80\xa8", b"\xe1\x9a\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xc3", b"\x80", b"\xff", b"\xef\xbb\xbf", b"word", b" ", b"\t", b"\xcc\x81", b"!", "中".encode()]
    texts = [b"".join(rng.choices(pieces, k=rng.randint(0, 12))) for _ in range(500)]
    texts += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) for _ in range(500)]
    separator = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u1680\u2028\u2029" + re.escape(PUNCTUATION) + "]")
    for text, words in zip(texts, split_words(texts).to_list()):
        for word in words:
            decoded = word.decode("utf-8")  # strict: raises on any invalid byte
            assert decoded and not separator.search(decoded), (text, word)


@pytest.mark.parametrize(("text", "words"), GOLDEN)
def test_split_words_golden(text, words):
    result = split_words([text]).to_list()[0]
    assert [word.decode("utf-8") for word in result] == words


def test_ids_use_vocabulary_line_numbers_and_unk():
    table = vocabulary_table(["<pad>", "<unk>", "the", "café"])
    ids = tokenize_to_ids(["The CAFÉ of", ""], table).to_list()
    assert ids == [[2, 3, UNK_ID], []]
    assert PAD_ID == 0 and UNK_ID == 1


def test_reserved_tokens_cannot_come_from_text():
    assert [w.decode() for w in split_words(["<pad> <unk>"]).to_list()[0]] == ["pad", "unk"]
