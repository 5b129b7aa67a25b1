"""The one tokenizer: a golden table of tricky strings."""

import pytest

from ingest.text import PAD_ID, UNK_ID, split_words, tokenize_to_ids, vocabulary_table

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
