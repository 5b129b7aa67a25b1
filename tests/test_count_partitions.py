"""Pass 1's word counts summed by partitions in the workers (ingest/count_partitions.py) and the
leakage report's jobs (ingest/leakage.py): the same vocabulary, totals and report as summing
everything in one place."""

from __future__ import annotations

import collections
import concurrent.futures

import numpy as np
import pytest

from nextword.ingest import count_partitions, leakage
from nextword.ingest.count_partitions import PartitionedCounts, partition_of, partition_words
from nextword.ingest.leakage import NgramSpill, leakage_report
from nextword.ingest.vocab import most_frequent


def words_of(rng, count: int) -> list[bytes]:
    return [bytes(rng.choice(list(b"abcxyz\xc3\xa9"), int(rng.integers(1, 9))).tolist()) for _ in range(count)]


def test_a_word_goes_to_the_same_partition_in_any_batch_and_the_partitions_are_all_used():
    rng = np.random.default_rng(0)
    words = sorted(set(words_of(rng, 3000)))
    alone = {word: int(partition_of(word, np.array([len(word)]))[0]) for word in words}
    shuffled = [words[index] for index in rng.permutation(len(words))]
    together = partition_of(b"".join(shuffled), np.array([len(word) for word in shuffled]))
    assert [alone[word] for word in shuffled] == together.tolist()
    assert set(together.tolist()) == set(range(count_partitions.PARTITIONS))
    assert partition_of(b"", np.zeros(0, np.int64)).tolist() == []


@pytest.mark.parametrize("pooled", [False, True])
def test_partitioned_counts_give_most_frequent_of_the_summed_counts(tmp_path, monkeypatch, pooled):
    """Batches of distinct words with counts, some taken away again (--dedup's dropped documents),
    many ties, words whose count falls to 0, several folds a partition: the same top k (count
    descending, ties by word bytes) and total as summing everything and vocab.most_frequent."""
    monkeypatch.setattr(count_partitions, "FOLD_ENTRIES", 50)
    monkeypatch.setattr(count_partitions, "FLUSH_BYTES", 300)
    rng = np.random.default_rng(1)
    vocabulary = sorted(set(words_of(rng, 800)))
    summed = collections.Counter()
    counts = PartitionedCounts(str(tmp_path / "counts"))
    batches = []
    for _ in range(40):
        chosen = rng.choice(len(vocabulary), int(rng.integers(1, 120)), replace=False)
        words = [vocabulary[index] for index in chosen]
        batch_counts = rng.integers(1, 4, len(words))
        batches.append((words, batch_counts))
        counts.add(*partition_words(words, batch_counts))
        summed.update(dict(zip(words, batch_counts.tolist())))
    for words, batch_counts in batches[:10]:  # taken away whole: some words fall to 0
        counts.add(*partition_words(words, batch_counts), sign=-1)
        summed.subtract(dict(zip(words, batch_counts.tolist())))
    assert min(summed.values()) == 0
    expected = most_frequent(sorted((word, count) for word, count in summed.items() if count), 60)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        kept, total = counts.most_frequent(60, pool if pooled else None)
    assert kept == expected and total == sum(summed.values())
    assert len({count for _, count in kept}) < len(kept)  # ties were broken by the word
    everything, _ = counts.most_frequent(10_000)
    assert everything == most_frequent(sorted((word, count) for word, count in summed.items() if count), 10_000)
    counts.close()
    assert not (tmp_path / "counts").exists()


@pytest.mark.parametrize("pooled", [False, True])
def test_the_leakage_report_in_jobs_matches_every_val_hash_against_every_train_hash(tmp_path, monkeypatch, pooled):
    monkeypatch.setattr(leakage, "CHUNK_HASHES", 1000)  # several chunks a side
    rng = np.random.default_rng(2)
    train = rng.integers(0, 1 << 63, 7000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    val = np.concatenate([rng.choice(train, 300), rng.integers(0, 1 << 63, 900, dtype=np.uint64) * np.uint64(2)])
    spill = NgramSpill(str(tmp_path / "leakage"))
    for index in range(10):
        spill.add(train[700 * index:700 * (index + 1)], val[120 * index:120 * (index + 1)],
                  {"val_windows": 120, "val_checked": 120})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        report = spill.report(1, pool if pooled else None)
    assert report == leakage_report(int(np.isin(val, train).sum()), 1200, 1200, 1)
    assert report["leaked_windows"] == 300
    spill.close()
