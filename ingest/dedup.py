"""Duplicate documents, found in bounded memory: `nextword ingest --dedup none|exact|near`.

Pure numpy (no TensorFlow): the TF Text tokenizer gives each document's words; this module
turns them into keys, and keys into the set of documents to drop.

- exact: a document's key is the 64-bit FarmHash fingerprint of its words (the tokenizer's:
  case folded, punctuation and whitespace gone) joined by one space. Two documents with the same
  words in the same order are duplicates, whatever their case, punctuation or line wrapping.
- near: MinHash over word 5-gram shingles (a document under 5 words is one shingle), 128
  multiply-shift permutations, cut into 16 bands of 8 rows. Two documents that agree on all 8 rows
  of any band are duplicates. A pair with Jaccard similarity J (of their shingle sets) is caught
  with probability 1 - (1 - J**8)**16: 99.96% at J = 0.9, 95% at 0.8, 61% at 0.7, 24% at 0.6,
  6% at 0.5, 1% at 0.4 (the S curve's steepest point is J ≈ 0.71). near also applies exact.

Keep-first: of every group of documents sharing a key, the first in input order is kept and the
others are dropped (so a chain A~B~C keeps A alone, as a union of the groups would). Empty
documents (no words) are never duplicates. The decision depends only on the (key, position)
pairs, never on batches, workers or the runner.

Bounded memory: pass 1 appends (key, position) records (16 bytes each) to 256 bucket files by the
key's top byte; the decision then reads one bucket at a time (1/256 of the records), sorts it by
key (stable: positions stay in input order) and marks every record but a group's first. The
result is one bit per document (`Removed`), 1.25 MB per 10 million documents.
Collisions: 64-bit keys over 10^7 documents give ~3e-6 expected false matches.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import numpy as np

from nextword.ingest.windows import splitmix64

MODES = ("none", "exact", "near")
SHINGLE_WORDS = 5
PERMUTATIONS = 128
BANDS, ROWS = 16, 8  # BANDS * ROWS == PERMUTATIONS
# The permutations' odd 64-bit multipliers: fixed forever (they are part of what a key means).
_MULTIPLIERS = splitmix64(np.arange(1, PERMUTATIONS + 1, dtype=np.uint64)) | np.uint64(1)
_BAND_SALTS = splitmix64(np.arange(1000, 1000 + BANDS, dtype=np.uint64))
_SHINGLE_STEP = np.uint64(0x100000001B3)  # FNV prime: mixes the next word into a shingle's hash
_CHUNK = 8192  # shingles per permutation block: 8192 x 128 x 8 B = 8 MB
BUCKETS = 256
RECORD = np.dtype([("key", "<u8"), ("position", "<u8")])


# ------------------------------------------------------------------ keys

def exact_keys(document_fingerprints: np.ndarray) -> np.ndarray:
    """uint8[documents, 8] (tf.fingerprint of the joined words) -> uint64[documents]."""
    return np.ascontiguousarray(document_fingerprints).view("<u8").reshape(-1).astype(np.uint64)


def shingle_hashes(word_hashes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64[words] of documents with `lengths` -> (uint64[shingles], document int64[shingles]):
    one shingle per run of SHINGLE_WORDS words inside a document, one for a shorter document."""
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.where(lengths > 0, np.maximum(lengths - SHINGLE_WORDS + 1, 1), 0)
    document = np.repeat(np.arange(len(lengths)), counts)
    word_start = (np.cumsum(lengths) - lengths)[document]
    start = word_start + np.arange(int(counts.sum())) - (np.cumsum(counts) - counts)[document]
    end = word_start + lengths[document]
    words = splitmix64(word_hashes)
    hashes = words[start] if len(start) else np.zeros(0, np.uint64)
    for offset in range(1, SHINGLE_WORDS):
        inside = start + offset < end
        following = words[np.minimum(start + offset, max(len(words) - 1, 0))]
        hashes = np.where(inside, splitmix64(hashes * _SHINGLE_STEP ^ following), hashes)
    return hashes, document


def minhash(shingles: np.ndarray, document: np.ndarray, documents: int) -> np.ndarray:
    """uint32[documents, PERMUTATIONS]: per document, the least value of each permutation
    (the top 32 bits of multiplier * shingle mod 2**64) over its shingles; all ones if it has none."""
    signature = np.full((documents, PERMUTATIONS), np.iinfo(np.uint64).max, dtype=np.uint64)
    for first in range(0, len(shingles), _CHUNK):
        chunk, owner = shingles[first:first + _CHUNK], document[first:first + _CHUNK]
        values = chunk[:, None] * _MULTIPLIERS[None, :]  # uint64 arrays wrap: mod 2**64
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        lowest = np.minimum.reduceat(values, starts, axis=0)
        owners = owner[starts]
        signature[owners] = np.minimum(signature[owners], lowest)
    return (signature >> np.uint64(32)).astype(np.uint32)


def band_keys(signatures: np.ndarray) -> np.ndarray:
    """uint32[documents, PERMUTATIONS] -> uint64[documents, BANDS]: a hash of each band's rows,
    salted by the band's number (band 3 of one document never meets band 5 of another)."""
    rows = signatures.astype(np.uint64).reshape(len(signatures), BANDS, ROWS)
    keys = np.broadcast_to(_BAND_SALTS, (len(signatures), BANDS)).copy()
    for row in range(ROWS):
        keys = splitmix64(keys * _SHINGLE_STEP ^ rows[:, :, row])
    return keys


def dedup_records(mode: str, first_position: int, lengths: np.ndarray, document_fingerprints: np.ndarray,
                  word_fingerprints: np.ndarray | None) -> dict[str, np.ndarray]:
    """One batch's keys as RECORD arrays, in position order: {"exact": ..., "near": ...} (near only
    for mode "near"). Documents without words get no record."""
    lengths = np.asarray(lengths, dtype=np.int64)
    worded = np.flatnonzero(lengths > 0)
    positions = np.uint64(first_position) + worded.astype(np.uint64)
    records = {"exact": _records(exact_keys(document_fingerprints)[worded], positions)}
    if mode == "near":
        shingles, document = shingle_hashes(exact_keys(word_fingerprints), lengths)
        bands = band_keys(minhash(shingles, document, len(lengths)))[worded]
        records["near"] = _records(bands.reshape(-1), np.repeat(positions, BANDS))
    return records


def shifted_records(records: dict[str, np.ndarray], offset: int) -> dict[str, np.ndarray]:
    """A block's records (numbered from its first document) numbered from the stream's start."""
    shifted = {}
    for kind, each in records.items():
        shifted[kind] = each.copy()
        shifted[kind]["position"] += np.uint64(offset)
    return shifted


def _records(keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    records = np.empty(len(keys), dtype=RECORD)
    records["key"], records["position"] = keys, positions
    return records


# ------------------------------------------------------------------ deciding, in bounded memory

class KeySpill:
    """(key, position) records appended in position order, spread over BUCKETS files by the key's
    top byte; `duplicates()` then reads one bucket at a time."""

    def __init__(self, directory: str, buffer_records: int = 1 << 20):
        self.directory, self.buffer_records = directory, buffer_records
        shutil.rmtree(directory, ignore_errors=True)  # an earlier, killed pass 1's
        os.makedirs(directory)
        self.pending: list[np.ndarray] = []
        self.pending_records = 0

    def add(self, records: np.ndarray) -> None:
        self.pending.append(records)
        self.pending_records += len(records)
        if self.pending_records >= self.buffer_records:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        records = np.concatenate(self.pending)
        bucket = (records["key"] >> np.uint64(56)).astype(np.uint8)  # uint8: a radix sort
        ordered = records[np.argsort(bucket, kind="stable")]  # keeps position order inside each bucket
        bounds = np.r_[0, np.cumsum(np.bincount(bucket, minlength=BUCKETS))]
        for index in np.flatnonzero(np.diff(bounds)):
            with open(os.path.join(self.directory, f"{index:03d}"), "ab") as handle:
                handle.write(ordered[bounds[index]:bounds[index + 1]].tobytes())
        self.pending, self.pending_records = [], 0

    def duplicates(self, documents: int) -> np.ndarray:
        """bool[documents]: positions that share a key with an earlier position."""
        self._flush()
        found = np.zeros(documents, dtype=bool)
        for name in sorted(os.listdir(self.directory)):
            records = np.fromfile(os.path.join(self.directory, name), dtype=RECORD)
            order = np.argsort(records["key"], kind="stable")
            keys, positions = records["key"][order], records["position"][order]
            later = np.r_[False, keys[1:] == keys[:-1]]
            found[positions[later].astype(np.int64)] = True
        return found

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class Removed:
    """One bit per document of the input stream (in iter_documents order): dropped or not.
    `exact` documents were dropped as exact duplicates, the rest of `bits` as near duplicates."""

    bits: np.ndarray  # uint8, np.packbits of bool[documents]
    exact: int
    near: int
    documents: int

    @classmethod
    def of(cls, exact: np.ndarray, near: np.ndarray | None) -> "Removed":
        either = exact if near is None else (exact | near)
        return cls(np.packbits(either), int(exact.sum()), int(either.sum() - exact.sum()), len(exact))

    def keep(self, first: int, count: int) -> np.ndarray:
        """bool[count]: which of the documents first .. first + count - 1 are kept."""
        if count == 0:
            return np.zeros(0, dtype=bool)
        low, high = first // 8, (first + count + 7) // 8 + 1
        bits = np.unpackbits(self.bits[low:high])[first - 8 * low:first - 8 * low + count]
        return np.r_[bits, np.zeros(count - len(bits), np.uint8)] == 0

    def inverted(self) -> "Removed":
        """The removed documents as the kept ones (to re-read just them)."""
        return Removed(np.invert(self.bits), self.exact, self.near, self.documents)

    def shifted(self, offset: int) -> "Shifted":
        """The same bits for a stream that starts at document `offset` (one input of several)."""
        return Shifted(self, offset)

    def to_bytes(self) -> bytes:
        header = np.array([self.documents, self.exact, self.near], dtype="<u8").tobytes()
        return header + self.bits.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Removed":
        documents, exact, near = np.frombuffer(data[:24], dtype="<u8").tolist()
        return cls(np.frombuffer(data[24:], dtype=np.uint8), exact, near, documents)

    @property
    def total(self) -> int:
        return self.exact + self.near


@dataclass(frozen=True)
class Shifted:
    removed: Removed
    offset: int

    def keep(self, first: int, count: int) -> np.ndarray:
        return self.removed.keep(self.offset + first, count)


class DuplicateFinder:
    """Pass 1's side of --dedup: each batch's records (`records`, in a worker thread), appended in
    input order (`add`), then the decision (`removed`)."""

    def __init__(self, mode: str, spill_dir: str):
        self.mode, self.near = mode, mode == "near"
        self.spills = {kind: KeySpill(os.path.join(spill_dir, f"dedup-{kind}"))
                       for kind in (("exact", "near") if self.near else ("exact",))}

    def records(self, first_position: int, lengths, document_fingerprints, word_fingerprints) -> dict:
        return dedup_records(self.mode, first_position, lengths, document_fingerprints, word_fingerprints)

    def add(self, records: dict) -> None:
        for kind, spill in self.spills.items():
            spill.add(records[kind])

    def removed(self, documents: int) -> Removed:
        found = {kind: spill.duplicates(documents) for kind, spill in self.spills.items()}
        return Removed.of(found["exact"], found.get("near"))

    def close(self) -> None:
        for spill in self.spills.values():
            spill.close()


def dedup_report(mode: str, removed: Removed, words: int, windows: int) -> dict:
    """What dataset.json keeps as extra["dedup"] (both runners build it here): documents dropped as
    exact and as near duplicates, and the words and windows they held (counted in words, with
    --stride, whatever the tokenizer)."""
    return {"mode": mode, "documents_removed": removed.total, "exact_duplicates": removed.exact,
            "near_duplicates": removed.near, "words_removed": words, "windows_removed": windows}
