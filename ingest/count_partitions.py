"""Pass 1's word counts summed by the worker processes, not the main process.

Summing every batch's distinct words in the main process (`vocab.WordCounts`, Arrow group_by) was
most of pass 1's serial CPU on a corpus of many distinct words (a dictionary: ~9 of its ~13 s).
Instead each worker sorts a batch's distinct words into PARTITIONS by a hash of the word
(`partition_words`) and sends one blob a partition; the main process only appends the blobs to a
file a partition (`PartitionedCounts.add`). At the end every partition is summed and its most
frequent words chosen by a job of its own (`sum_partition`, in the workers), and the main process
picks the vocabulary from those few candidates: a word of the corpus-wide top k is in its own
partition's top k, and the order (count descending, ties by word bytes ascending) is
`vocab.most_frequent`'s, so the vocabulary is the same. Memory: a partition job holds at most
FOLD_ENTRIES pending entries plus its partition's distinct words; the main process FLUSH_BYTES.
"""

from __future__ import annotations

import os
import shutil
import struct

import numpy as np

from nextword.ingest.windows import splitmix64

PARTITIONS = 32
FLUSH_BYTES = 8 << 20  # blobs held in the main process before they are appended to their files
FOLD_ENTRIES = 1 << 20  # a partition job sums its blocks each time this many entries wait
# A partition file is a sequence of blocks: entries n (int64; negative: counts to take away, the words
# of documents --dedup drops), n word lengths (uint32), n counts (int64), the words' bytes end to end.
_HEADER = struct.Struct("<q")


def partition_of(data: bytes, lengths: np.ndarray, partitions: int = PARTITIONS) -> np.ndarray:
    """int64[words]: the partition of each word of `data` (words end to end, `lengths` bytes each), a
    function of the word's bytes alone (its length and four of its bytes, mixed by splitmix64): every
    worker and every batch sends a word to the same partition."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(lengths):
        return np.zeros(0, np.int64)
    raw = np.frombuffer(data, np.uint8)
    starts = np.cumsum(lengths) - lengths
    worded = lengths > 0
    key = lengths.astype(np.uint64)
    with np.errstate(over="ignore"):
        for offset in (np.zeros_like(lengths), lengths - 1, lengths // 2, lengths // 3):
            index = np.minimum(starts + np.maximum(offset, 0), max(len(raw) - 1, 0))
            byte = np.where(worded, raw[index] if len(raw) else 0, 0).astype(np.uint64)
            key = key * np.uint64(257) + byte
    return (splitmix64(key) % np.uint64(partitions)).astype(np.int64)


def partition_words(words: list[bytes], counts: np.ndarray, partitions: int = PARTITIONS) -> tuple[np.ndarray, list[bytes]]:
    """A batch's distinct words and their counts (in a worker) -> (entries per partition, one blob a
    partition: the words' uint32 lengths, int64 counts and bytes, as a block of its file without the header)."""
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    partition = partition_of(b"".join(words), lengths, partitions)
    order = np.argsort(partition, kind="stable")
    entries = np.bincount(partition, minlength=partitions).astype(np.int64)
    bounds = np.r_[0, np.cumsum(entries)]
    lengths, counts = lengths[order].astype(np.uint32), np.asarray(counts, dtype=np.int64)[order]
    ordered = [words[index] for index in order.tolist()]
    blobs = [lengths[low:high].tobytes() + counts[low:high].tobytes() + b"".join(ordered[low:high]) if high > low else b""
             for low, high in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
    return entries, blobs


class PartitionedCounts:
    """The main process's side: blobs appended to a file a partition in `directory` (made afresh,
    removed by `close()`), then summed by `most_frequent` in a pool's workers."""

    def __init__(self, directory: str, partitions: int = PARTITIONS):
        self.directory, self.partitions = directory, partitions
        shutil.rmtree(directory, ignore_errors=True)  # an earlier, killed pass 1's
        os.makedirs(directory)
        self.pending: list[list[bytes]] = [[] for _ in range(partitions)]
        self.pending_bytes = 0

    def path(self, partition: int) -> str:
        return os.path.join(self.directory, f"{partition:03d}")

    def add(self, entries: np.ndarray, blobs: list[bytes], sign: int = 1) -> None:
        """One batch's partitions (`partition_words`); sign -1 takes its counts away."""
        for partition in np.flatnonzero(entries).tolist():
            self.pending[partition] += (_HEADER.pack(sign * int(entries[partition])), blobs[partition])
            self.pending_bytes += len(blobs[partition])
        if self.pending_bytes > FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        for partition, pieces in enumerate(self.pending):
            if pieces:
                with open(self.path(partition), "ab") as handle:
                    handle.write(b"".join(pieces))
        self.pending, self.pending_bytes = [[] for _ in range(self.partitions)], 0

    def most_frequent(self, keep: int, pool=None) -> tuple[list[tuple[bytes, int]], int]:
        """(the `keep` (word, count) pairs of highest count, ties by word bytes ascending, in that
        order; every count summed): `vocab.most_frequent` over every word, from a job a partition."""
        from nextword.ingest.worker_pool import map_in_order

        self._flush()
        jobs = [(self.path(partition), keep) for partition in range(self.partitions)
                if os.path.exists(self.path(partition))]
        results = list(map(lambda job: sum_partition(*job), jobs) if pool is None
                       else map_in_order(pool, sum_partition, jobs, depth=len(jobs)))
        total = sum(partition_total for partition_total, *_ in results)
        counts = np.concatenate([np.zeros(0, np.int64)] + [top_counts for *_, top_counts in results])
        # only candidates at or above the keep-th highest count (ties at it included) become Python objects
        threshold = np.partition(counts, len(counts) - keep)[len(counts) - keep] if len(counts) > keep else 0
        candidates = []
        for _, data, lengths, top_counts in results:
            ends = np.cumsum(lengths, dtype=np.int64)
            for index in np.flatnonzero(top_counts >= threshold).tolist():
                candidates.append((data[ends[index] - lengths[index]:ends[index]], int(top_counts[index])))
        candidates.sort(key=lambda pair: (-pair[1], pair[0]))
        return candidates[:keep], total

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _blocks(path: str):
    """A partition file -> (words large_binary, signed counts int64) a block."""
    import pyarrow as pa

    with open(path, "rb") as handle:
        while header := handle.read(_HEADER.size):
            (entries,) = _HEADER.unpack(header)
            sign, entries = (1, entries) if entries > 0 else (-1, -entries)
            lengths = np.frombuffer(handle.read(4 * entries), np.uint32)
            counts = np.frombuffer(handle.read(8 * entries), np.int64) * sign
            offsets = np.zeros(entries + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            data = handle.read(int(offsets[-1]))
            yield pa.LargeBinaryArray.from_buffers(pa.large_binary(), entries,
                                                   [None, pa.py_buffer(offsets), pa.py_buffer(data)]), counts


def sum_partition(path: str, keep: int) -> tuple[int, bytes, np.ndarray, np.ndarray]:
    """One partition (a job for a worker) -> (its counts' sum, and of its words with a count above 0
    the `keep` most frequent (more where counts tie at the keep-th): their bytes end to end, their
    uint32 lengths, their int64 counts): little to send back, no Python object a word."""
    import pyarrow as pa

    held, pending, waiting = None, [], 0

    def fold(held, pending):
        table = pa.concat_tables(([held] if held is not None else [])
                                 + [pa.table({"word": words, "count": counts}) for words, counts in pending])
        summed = table.group_by("word", use_threads=False).aggregate([("count", "sum")])
        return pa.table({"word": summed.column("word"), "count": summed.column("count_sum")})

    for words, counts in _blocks(path):
        pending.append((words, counts))
        waiting += len(counts)
        if waiting >= FOLD_ENTRIES:
            held, pending, waiting = fold(held, pending), [], 0
    if pending:
        held = fold(held, pending)
    if held is None:
        return 0, b"", np.zeros(0, np.uint32), np.zeros(0, np.int64)
    counts = held.column("count").to_numpy()
    total = int(counts.sum())
    positive = np.flatnonzero(counts > 0)
    if len(positive) > keep:  # the words at or above the keep-th highest count (ties at it included)
        threshold = np.partition(counts[positive], len(positive) - keep)[len(positive) - keep]
        positive = positive[counts[positive] >= threshold]
    words = held.column("word").take(pa.array(positive)).to_pylist()
    return (total, b"".join(words), np.fromiter(map(len, words), np.uint32, len(words)),
            counts[positive].astype(np.int64))
