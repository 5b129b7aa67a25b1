"""The leakage report: the share of val windows whose last NGRAM tokens also occur, as a run,
somewhere in the train split.

A window's last NGRAM ids (its target and the NGRAM - 1 ids before it) are hashed to 64 bits with
a polynomial rolling hash (computed for a whole batch from one prefix sum), then mixed
(splitmix64). Pass 2 appends the hash of every train position and of every val window that has
NGRAM ids of its document behind it to a file a side; the report spreads each over 16 range
files by the hash's top 4 bits (a job an 8 MB chunk), then matches one range at a time (a job a
range, in the ingest's worker processes): val hashes found among the range's train hashes are
leaked windows. On a big train split only hashes whose low bits are zero are kept
(a 1/`sample` sample chosen by the hash itself, the same on both sides, so a sampled val n-gram is
found exactly when its train twin exists): disk stays under ~256 MB (twice that at the report) and
memory at one range (1/16 of them). 64-bit hashes: a false match needs a collision, ~1e-19 a pair; over 10^7 val x 10^9 train hashes well under one in a million
windows. Ids, not words: two runs of words that differ only in words outside the vocabulary
(both <unk>) count as the same run, as the model sees them.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from nextword.ingest.windows import splitmix64

NGRAM = 13  # as GPT-3's contamination check (13-grams): long enough that a shared run is no accident
RANGE_BITS = 4
RANGES = 1 << RANGE_BITS  # the report matches the hashes of one range of top bytes at a time, a job a range
CHUNK_HASHES = 1 << 20  # the report spreads a side's file 8 MB at a time, a job a chunk
SAMPLED_TRAIN_HASHES = 1 << 25  # at most ~32M train hashes on disk (256 MB)
_BASE = np.uint64(0x100000001B3)
_INVERSE = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_SIDES = ("train", "val")


def sample_for(train_tokens: int) -> int:
    """Keep 1 train hash in `sample` (a power of two) so that at most ~SAMPLED_TRAIN_HASHES stay."""
    sample = 1
    while train_tokens / sample > SAMPLED_TRAIN_HASHES:
        sample *= 2
    return sample


def ngram_hashes(flat_ids: np.ndarray, lengths: np.ndarray, validation: np.ndarray, stride: int,
                 sample: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """int32[tokens] of documents with `lengths`, validation bool[documents] -> (uint64 hashes of
    every train run of NGRAM ids, uint64 hashes of the val windows' last NGRAM ids, counts
    {"val_windows", "val_checked"}) with only the hashes kept by `sample`."""
    lengths = np.asarray(lengths, dtype=np.int64)
    tokens = len(flat_ids)
    powers = np.cumprod(np.full(tokens + 1, _BASE, dtype=np.uint64)) * _INVERSE  # BASE**k
    inverse = np.cumprod(np.full(tokens + 1, _INVERSE, dtype=np.uint64)) * _BASE  # BASE**-k
    prefix = np.zeros(tokens + 1, dtype=np.uint64)
    np.cumsum((np.asarray(flat_ids, dtype=np.uint64) + np.uint64(1)) * powers[:tokens], out=prefix[1:])
    document = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(tokens) - (np.cumsum(lengths) - lengths)[document]  # in its document
    ends = np.flatnonzero(position >= NGRAM - 1)  # an n-gram ends here
    starts = ends - (NGRAM - 1)
    hashes = splitmix64((prefix[ends + 1] - prefix[starts]) * inverse[starts])
    in_val = validation[document[ends]]
    window_target = (position[ends] - 1) % stride == 0
    keep = (hashes & np.uint64(sample - 1)) == 0
    val_lengths = lengths[validation]
    counts = {"val_windows": int(np.where(val_lengths > 1, (val_lengths - 2) // stride + 1, 0).sum()),
              "val_checked": int((in_val & window_target).sum())}
    return hashes[keep & ~in_val], hashes[keep & in_val & window_target], counts


PENDING_HASHES = 1 << 19  # hashes held before they go to disk (4 MB; each batch's are kept, not joined)


class NgramSpill:
    """Train and val hashes appended in document order to one file a side; resumable: the checkpoint
    records each file's size, a resume truncates to it. The report spreads them over RANGES files
    first. (A file a side, not a bucket a side, during pass 2: a checkpoint then syncs 2 files, not
    512, which took ~2 s at ~4 ms a sync on this machine's disk, every 30 s of an ingest.)"""

    def __init__(self, directory: str, state: dict | None = None):
        self.directory = directory
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_hashes = 0
        self.counts = {"val_windows": 0, "val_checked": 0}
        if state is None:
            shutil.rmtree(directory, ignore_errors=True)
            os.makedirs(directory)
            return
        for name in _SIDES:
            with open(os.path.join(directory, name), "r+b") as handle:
                handle.truncate(state["sizes"][name])
        _remove_buckets(directory)  # of a report killed half way
        self.counts = dict(state["counts"])

    def add(self, train: np.ndarray, val: np.ndarray, counts: dict) -> None:
        self.pending.append((train, val))
        self.pending_hashes += len(train) + len(val)
        for key, value in counts.items():
            self.counts[key] += value
        if self.pending_hashes > PENDING_HASHES:
            self._flush(durable=False)

    def _flush(self, durable: bool) -> None:
        for side, name in enumerate(_SIDES):
            with open(os.path.join(self.directory, name), "ab") as handle:
                for pair in self.pending:  # each batch's array as it is: no joined copy of them all
                    handle.write(np.ascontiguousarray(pair[side], dtype="<u8"))
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
        self.pending, self.pending_hashes = [], 0

    def checkpoint(self) -> dict:
        self._flush(durable=True)
        return {"sizes": {name: os.path.getsize(os.path.join(self.directory, name)) for name in _SIDES},
                "counts": dict(self.counts)}

    def report(self, sample: int, pool=None) -> dict:
        """The leakage report; its work as jobs for `pool`'s workers (ingest/worker_pool.py) when
        given: spreading a chunk of a side's file, then matching one range of buckets."""
        from nextword.ingest.worker_pool import map_in_order

        self._flush(durable=False)
        _remove_buckets(self.directory)
        spreading = [(os.path.join(self.directory, name), chunk) for name in _SIDES
                     for chunk in range(-(-os.path.getsize(os.path.join(self.directory, name)) // (8 * CHUNK_HASHES)))]
        matching = [(self.directory, index) for index in range(RANGES)]
        leaked = 0
        for function, jobs in ((_spread_chunk, spreading), (_leaked_in_range, matching)):
            results = (map(lambda job: function(*job), jobs) if pool is None
                       else map_in_order(pool, function, jobs, depth=len(jobs)))
            leaked += sum(results)
        return leakage_report(leaked, self.counts["val_checked"], self.counts["val_windows"], sample)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _spread_chunk(path: str, chunk: int) -> int:
    """Chunk `chunk` (CHUNK_HASHES hashes) of a side's file -> a file `path`-RR-CCCCC for each range RR
    of the top byte (the side's file stays: a report killed half way is made again from it). -> 0.
    A chunk costs ~3x its size at once (the sort's index and the sorted copy): 8 MB chunks."""
    with open(path, "rb") as source:
        source.seek(8 * CHUNK_HASHES * chunk)
        hashes = np.frombuffer(source.read(8 * CHUNK_HASHES), dtype="<u8")
    # uint8 ranges: numpy's stable sort is then a radix sort (~16x faster than on int64)
    bucket = (hashes >> np.uint64(64 - RANGE_BITS)).astype(np.uint8)
    ordered = hashes[np.argsort(bucket, kind="stable")]
    bounds = np.r_[0, np.cumsum(np.bincount(bucket, minlength=RANGES))]
    for index in np.flatnonzero(np.diff(bounds)):
        with open(f"{path}-{index:02d}-{chunk:05d}", "wb") as handle:
            handle.write(ordered[bounds[index]:bounds[index + 1]].data)
    return 0


def _leaked_in_range(directory: str, index: int) -> int:
    """The val hashes of range `index` found among its train hashes (equal hashes share their top
    byte, so the ranges' counts add up to the whole)."""
    names = sorted(os.listdir(directory))
    train, val = (np.concatenate([_read(os.path.join(directory, name)) for name in names
                                  if name.startswith(f"{side}-{index:02d}-")] or [np.zeros(0, np.uint64)])
                  for side in _SIDES)
    return int(np.isin(val, train).sum()) if len(val) and len(train) else 0


def _remove_buckets(directory: str) -> None:
    for name in os.listdir(directory):
        if "-" in name:
            os.remove(os.path.join(directory, name))


def _read(path: str) -> np.ndarray:
    return np.fromfile(path, dtype="<u8") if os.path.exists(path) else np.zeros(0, np.uint64)


def leakage_report(leaked: int, val_checked: int, val_windows: int, sample: int) -> dict:
    """What dataset.json keeps as extra["leakage"] (both runners build it here). `share` is the
    share of the checked (sampled) val windows whose last `ngram` ids occur as a run in train."""
    sampled = val_checked  # val_checked counts every eligible window; the sample keeps ~1/sample
    return {"ngram": NGRAM, "val_windows": val_windows, "val_windows_checked": sampled, "sample": sample,
            "leaked_windows": leaked, "share": round(leaked * sample / sampled, 6) if sampled else None}
