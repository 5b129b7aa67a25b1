"""Word counts -> vocabulary: 0 <pad>, 1 <unk>, then the most frequent words (ties by word).

Counting is exact in bounded memory: the in-memory table holds at most `max_entries` words;
before a batch would take it past that, it is written to disk as a run sorted by word and
emptied. The runs are merged back in word order, equal words summed, and the vocabulary is
kept in a heap of vocab_size - 2 entries, so a corpus of any number of distinct words counts
in ~50 MB of Python objects (plus ~100 B per vocabulary word).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import struct
import itertools
import tempfile
from typing import Iterable, Iterator

import numpy as np

from nextword.ingest.text_spec import RESERVED_TOKENS

# ~50 MB of dict (measured 72 B per entry of a short word), and just under the 699,050 entries a
# dict holds before it doubles its table to 2**21 slots (one more resize would add ~40 MB).
MAX_ENTRIES = 690_000
MAX_OPEN_RUNS = 128  # more runs than this are merged in rounds (open files, read buffers)
_RUN_BLOCK_ENTRIES = 4096  # a reader holds one block (~250 KB) per open run
# A run is a sequence of blocks: entry count n (uint32), n word lengths (uint32), n counts
# (int64), then the n words' bytes back to back. Length-prefixed, so a word may hold any byte
# (the tokenizer's words never hold whitespace, but nothing here depends on it); whole blocks
# keep the per-word work in numpy and bytes.join rather than in per-word read/write calls.
_BLOCK_HEADER = struct.Struct("<I")
# update_packed's batches are summed by Arrow (C++, no Python per word) into an Arrow table of their
# own once this many entries wait (~25 MB); that table reaches the dict (and its runs) only when it
# holds more than max_entries words, or at the end.
FOLD_ENTRIES = 1 << 20


class WordCounts:
    """Corpus-wide word frequencies, fed one batch of (unique words, counts) at a time.

    Holds at most `max_entries` words in memory (unless one batch alone has more); the rest
    is in runs sorted by word, in a temporary directory inside `spill_dir` (None: the system's
    temporary directory) that `close()` removes (or, failing that, garbage collection).
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, spill_dir: str | None = None) -> None:
        self.counts: dict[bytes, int] = {}  # the words counted since the last spill
        self.total = 0
        self.max_entries = max_entries
        self.spill_dir = spill_dir
        self.runs: list[str] = []
        self._runs_written = 0
        self._directory: tempfile.TemporaryDirectory | None = None
        self._pending: list = []  # update_packed's batches not yet summed: (words large_binary, counts int64)
        self._pending_entries = 0
        self._held = None  # update_packed's sums so far: an Arrow table (word, count), at most max_entries rows

    def update(self, words: list[bytes], counts: list[int]) -> None:
        table = self.counts
        if table and len(table) + len(words) > self.max_entries:
            self._spill()  # before the batch, so the table never grows past max_entries
        for word, count in zip(words, counts):
            table[word] = table.get(word, 0) + count
        self.total += sum(counts)

    def update_packed(self, data: bytes, ends: np.ndarray, counts: np.ndarray) -> None:
        """update() for a batch given as its words' bytes end to end (`data`), where each word ends
        (int64[words], ascending), and their counts: what a worker process sends, summed here in
        C++ (the main process's per-word Python was the largest serial cost of pass 1)."""
        import pyarrow as pa

        offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        offsets[1:] = ends
        words = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(ends),
                                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        counts = np.asarray(counts, dtype=np.int64)
        self._pending.append((words, counts))
        self._pending_entries += len(ends)
        self.total += int(counts.sum())
        if self._pending_entries >= FOLD_ENTRIES:
            self._fold(release=False)

    def _fold(self, release: bool = True) -> None:
        """Sum the pending packed batches into the held table; hand that to update() when it holds
        more than max_entries words or `release` (before reading the counts)."""
        import pyarrow as pa

        if self._pending:
            held = [] if self._held is None else [self._held]
            table = pa.concat_tables(held + [pa.table({"word": words, "count": pa.array(counts, pa.int64())})
                                             for words, counts in self._pending])
            self._pending, self._pending_entries = [], 0
            summed = table.group_by("word", use_threads=False).aggregate([("count", "sum")])
            self._held = pa.table({"word": summed.column("word"), "count": summed.column("count_sum")})
        if self._held is not None and (release or len(self._held) > self.max_entries):
            held, self._held = self._held, None
            self.total -= int(held.column("count").to_numpy().sum())  # counted as they came
            self.update(held.column("word").to_pylist(), held.column("count").to_pylist())

    def sorted_counts(self) -> Iterator[tuple[bytes, int]]:
        """Every (word, corpus count), ascending by word bytes, each word once. A word whose count
        is 0 (--dedup subtracted every document that held it) is not there."""
        self._fold()
        if not self.runs:
            return ((word, count) for word, count in sorted(self.counts.items()) if count)
        if self.counts:
            self._spill()  # the rest becomes one more run: merging holds one block per run
        while len(self.runs) > MAX_OPEN_RUNS:
            self._merge_runs(MAX_OPEN_RUNS)
        return ((word, count) for word, count in _summed(heapq.merge(*(_read_run(path) for path in self.runs))) if count)

    def close(self) -> None:
        """Remove the runs (the counts are gone with them)."""
        if self._directory is not None:
            self._directory.cleanup()
        self._directory, self.runs = None, []

    def __enter__(self) -> WordCounts:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _spill(self) -> None:
        table = self.counts
        words = sorted(table)
        _write_run(self._new_run_path(), ((block, [table[word] for word in block]) for block in _chunks(words)))
        table.clear()

    def _merge_runs(self, how_many: int) -> None:
        """Replace the first `how_many` runs by their merge."""
        merging, self.runs = self.runs[:how_many], self.runs[how_many:]
        merged = _summed(heapq.merge(*(_read_run(path) for path in merging)))
        _write_run(self._new_run_path(), (tuple(zip(*block)) for block in _chunks(merged)))
        for path in merging:
            os.remove(path)

    def _new_run_path(self) -> str:
        if self._directory is None:
            if self.spill_dir is not None:
                os.makedirs(self.spill_dir, exist_ok=True)
            self._directory = tempfile.TemporaryDirectory(prefix="word-counts-", dir=self.spill_dir)
        path = os.path.join(self._directory.name, f"run-{self._runs_written:06d}")
        self._runs_written += 1
        self.runs.append(path)
        return path


def _chunks(items: Iterable) -> Iterator[list]:
    iterator = iter(items)
    while block := list(itertools.islice(iterator, _RUN_BLOCK_ENTRIES)):
        yield block


def _write_run(path: str, blocks: Iterable[tuple[list[bytes], list[int]]]) -> None:
    """blocks: (words, their counts), the words ascending over the whole run."""
    with open(path, "wb") as handle:
        for words, counts in blocks:
            handle.write(_BLOCK_HEADER.pack(len(words)))
            handle.write(np.fromiter(map(len, words), np.uint32, len(words)).tobytes())
            handle.write(np.array(counts, np.int64).tobytes())
            handle.write(b"".join(words))


def _read_run(path: str) -> Iterator[tuple[bytes, int]]:
    with open(path, "rb") as handle:
        while header := handle.read(_BLOCK_HEADER.size):
            (entries,) = _BLOCK_HEADER.unpack(header)
            ends = np.cumsum(np.frombuffer(handle.read(4 * entries), np.uint32), dtype=np.int64).tolist()
            counts = np.frombuffer(handle.read(8 * entries), np.int64).tolist()
            data = handle.read(ends[-1])
            yield from zip([data[start:end] for start, end in zip([0] + ends[:-1], ends)], counts)


def _summed(pairs: Iterable[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    """(word, count) pairs sorted by word -> one pair per word, its counts summed."""
    current, total = None, 0
    for word, count in pairs:
        if word == current:
            total += count
            continue
        if current is not None:
            yield current, total
        current, total = word, count
    if current is not None:
        yield current, total


def most_frequent(sorted_pairs: Iterable[tuple[bytes, int]], keep: int) -> list[tuple[bytes, int]]:
    """The `keep` (word, count) pairs of highest count, ties by word bytes ascending, in that order.

    sorted_pairs: ascending by word, each word once. One pass, a heap of `keep` entries.
    """
    # Words arrive in ascending order, so on a tie the newcomer is the larger word and loses:
    # only a count strictly above the worst kept one gets in.
    pairs = iter(sorted_pairs)
    heap = [(count, -arrival, word) for arrival, (word, count) in zip(range(keep), pairs)]  # heap[0]: the worst kept
    heapq.heapify(heap)
    worst = heap[0][0] if heap else 0
    for arrival, (word, count) in enumerate(pairs, start=len(heap)):
        if count > worst:
            heapq.heapreplace(heap, (count, -arrival, word))
            worst = heap[0][0]
    return [(word, count) for count, _, word in sorted(heap, key=lambda entry: (-entry[0], entry[2]))]


def select_vocabulary(counts: WordCounts, vocab_size: int) -> tuple[list[str], int, list[int]]:
    """(tokens with line number = id, how many corpus tokens fall outside them,
    the corpus count of each kept word: kept_counts[i] belongs to id i + 2)."""
    return vocabulary_of(most_frequent(counts.sorted_counts(), vocab_size - len(RESERVED_TOKENS)), counts.total)


def vocabulary_of(kept: list[tuple[bytes, int]], total: int) -> tuple[list[str], int, list[int]]:
    """select_vocabulary's result from the kept (word, count) pairs, in id order, and every count's sum."""
    kept_counts = [count for _, count in kept]
    tokens = list(RESERVED_TOKENS) + [word.decode("utf-8") for word, _ in kept]
    return tokens, total - sum(kept_counts), kept_counts


def varint_length(token_id):
    """Bytes of an id as a protobuf varint (ids stay below 2**21: at most 3); an int, or elementwise
    for a numpy array of ids. The one place this size is written (shard sizing, both tokenizers)."""
    return 1 + (token_id >= 128) + (token_id >= 16384)


def ids_varint_bytes(kept_counts: list[int], total_tokens: int) -> int:
    """Varint bytes of every corpus token's id: kept word i has id i + 2, any other word is <unk> (1 byte)."""
    counts = np.asarray(kept_counts, dtype=np.int64)
    inside = int((counts * varint_length(np.arange(len(RESERVED_TOKENS), len(RESERVED_TOKENS) + len(counts)))).sum())
    return inside + (total_tokens - int(counts.sum()))


def vocabulary_bytes(tokens: list[str]) -> tuple[bytes, str]:
    data = ("\n".join(tokens) + "\n" if tokens else "").encode("utf-8")
    return data, hashlib.sha256(data).hexdigest()
