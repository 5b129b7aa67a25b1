"""Word counting in bounded memory: spilling sorted runs to disk gives exactly the in-memory vocabulary."""

from __future__ import annotations

import collections
import os
import random

import pytest

from nextword.ingest import vocab
from nextword.ingest.vocab import WordCounts, ids_varint_bytes, most_frequent, select_vocabulary


def word_batches(seed: int = 0, distinct: int = 3000, batches: int = 40) -> list[tuple[list[bytes], list[int]]]:
    """Batches of (unique words, counts) as the tokenizer hands them over: ~3,000 distinct words,
    counts drawn from a few small values so that many words tie."""
    rng = random.Random(seed)
    words = [f"w{rng.randrange(36 ** 4):x}".encode() for _ in range(distinct)] + [b"the", b"a", b"of"]
    result = []
    for _ in range(batches):
        batch = collections.Counter(rng.choices(words, k=300))
        batch.update({b"the": 50, b"a": 30, b"of": 30})  # a tie at the top too
        result.append((list(batch), list(batch.values())))
    return result


def count_all(batches, **options) -> WordCounts:
    counts = WordCounts(**options)
    for words, numbers in batches:
        counts.update(words, numbers)
    return counts


def expected_vocabulary(batches, vocab_size: int) -> tuple[list[str], int]:
    """The rule, computed the plain way: most frequent first, ties by word bytes ascending."""
    totals = collections.Counter()
    for words, numbers in batches:
        totals.update(dict(zip(words, numbers)))
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[: vocab_size - 2]
    return ["<pad>", "<unk>"] + [word.decode() for word, _ in ranked], sum(totals.values()) - sum(c for _, c in ranked)


@pytest.mark.parametrize("vocab_size", [3, 50, 700, 10_000])
def test_spilling_gives_the_same_vocabulary_as_counting_in_memory(tmp_path, vocab_size):
    batches = word_batches()
    in_memory = count_all(batches)
    spilled = count_all(batches, max_entries=37, spill_dir=str(tmp_path))
    assert in_memory.runs == [] and len(spilled.runs) > 20
    tokens, oov, kept_counts = select_vocabulary(spilled, vocab_size)
    assert (tokens, oov, kept_counts) == select_vocabulary(in_memory, vocab_size)
    assert spilled.total == in_memory.total == sum(sum(numbers) for _, numbers in batches)
    assert (tokens, oov) == expected_vocabulary(batches, vocab_size)
    assert sum(kept_counts) + oov == spilled.total


def test_runs_are_removed_on_close(tmp_path):
    spill_dir = tmp_path / "state"
    with count_all(word_batches(), max_entries=100, spill_dir=str(spill_dir)) as counts:
        select_vocabulary(counts, 20)
        (directory,) = os.listdir(spill_dir)
        assert sorted(os.listdir(spill_dir / directory)) == sorted(os.path.basename(path) for path in counts.runs)
    assert os.listdir(spill_dir) == [] and counts.runs == []


def test_merging_in_rounds_when_runs_exceed_the_open_file_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(vocab, "MAX_OPEN_RUNS", 4)
    batches = word_batches(seed=3)
    with count_all(batches, max_entries=50, spill_dir=str(tmp_path)) as counts:
        merged = list(counts.sorted_counts())
        assert len(counts.runs) <= 4
        assert len(os.listdir(os.path.join(tmp_path, os.listdir(tmp_path)[0]))) == len(counts.runs)
    expected = collections.Counter()
    for words, numbers in batches:
        expected.update(dict(zip(words, numbers)))
    assert merged == sorted(expected.items())


def test_any_byte_survives_a_run(tmp_path):
    """Run files are length-prefixed: words with newlines, tabs, NUL or invalid UTF-8 come back intact."""
    odd = [b"a\nb", b"tab\there", b"nul\x00", b"\xff\xfe", b"", b"x" * 70_000, b"plain"]
    with WordCounts(max_entries=2, spill_dir=str(tmp_path)) as counts:
        for round_number in range(3):
            counts.update(odd, [round_number + 1] * len(odd))
        assert dict(counts.sorted_counts()) == {word: 6 for word in odd}


def test_most_frequent_breaks_ties_by_word_bytes():
    pairs = sorted({b"b": 2, b"a": 2, b"c": 5, b"d": 2, b"e": 1}.items())
    assert most_frequent(pairs, 3) == [(b"c", 5), (b"a", 2), (b"b", 2)]
    assert most_frequent(pairs, 10) == [(b"c", 5), (b"a", 2), (b"b", 2), (b"d", 2), (b"e", 1)]


def test_varint_bytes_from_the_vocabulary_counts_alone():
    """The shard sizing needs only the kept words' counts: every other token is <unk>, one byte."""
    rng = random.Random(5)
    totals = {f"w{index}".encode(): rng.randint(1, 40) for index in range(20_000)}
    counts = count_all([(list(totals), list(totals.values()))], max_entries=3000)
    tokens, _, kept_counts = select_vocabulary(counts, 17_000)  # ids past 127 and past 16383
    position = {token.encode(): token_id for token_id, token in enumerate(tokens)}
    per_word = sum(count * (1 + (position.get(word, 1) >= 128) + (position.get(word, 1) >= 16384))
                   for word, count in totals.items())
    assert ids_varint_bytes(kept_counts, counts.total) == per_word
    counts.close()


def test_packed_batches_count_as_word_lists_do(tmp_path, monkeypatch):
    """update_packed (what pass 1's workers send: the words end to end, their ends, their counts),
    summed by Arrow in folds, with dict updates (negative ones too, as --dedup takes words out)
    between them and spilling to runs: the same counts as update() alone."""
    import numpy as np

    monkeypatch.setattr(vocab, "FOLD_ENTRIES", 500)
    batches = word_batches(seed=7)
    expected = count_all(batches)
    with WordCounts(max_entries=120, spill_dir=str(tmp_path)) as counts:
        for index, (words, numbers) in enumerate(batches):
            if index % 5 == 4:  # a plain update and a removal in between
                counts.update(words, numbers)
                counts.update(words[:3], [-number for number in numbers[:3]])
                counts.update_packed(b"".join(words[:3]), np.cumsum([len(word) for word in words[:3]]), numbers[:3])
                continue
            counts.update_packed(b"".join(words), np.cumsum([len(word) for word in words]), np.array(numbers))
        assert counts.runs  # it spilled: the folds feed the bounded table like any update
        assert counts.total == expected.total
        assert list(counts.sorted_counts()) == list(expected.sorted_counts())
