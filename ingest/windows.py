"""Documents of token ids -> every sliding window, spread over shards, encoded as TFRecords.

Pure numpy (no TensorFlow), so it runs in light worker processes. Everything here is a
function of (document key, position, seed): the shard a window lands in does not depend on
batch boundaries or on how many workers run, which keeps the output byte-identical.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tfrecords.encode import StreamEncoder

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        values = np.asarray(values, dtype=np.uint64) + _GOLDEN
        values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def document_key(text: str) -> int:
    """A stable 64-bit key of a document's text (same text, same key, on any machine)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def is_validation(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Hold out whole documents by their key. No seed: identical documents always share a
    split, so a duplicated text can never leak from train into val."""
    unit = (np.asarray(keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return unit < fraction


def windows_per_document(lengths: np.ndarray, stride: int) -> np.ndarray:
    """Windows of a document with `length` tokens: targets at 1, 1+stride, ... < length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.where(lengths > 1, (lengths - 2) // stride + 1, 0)


@dataclass(frozen=True)
class WindowPlan:
    context_length: int
    stride: int
    seed: int
    shard_counts: tuple[int, int]  # (train, val)


@dataclass(frozen=True)
class EncodedBlock:
    """Per (split, shard): the frames of that shard's windows from this block, in document order."""
    documents: int
    pieces: tuple[tuple[int, int, bytes, int], ...]  # (split index 0=train 1=val, shard, frames, records)


def window_rows(lengths: np.ndarray, stride: int, context_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a block of documents laid out with `context_length` zeros before each:
    (start of each window in that padded layout, document of each window, target position)."""
    counts = windows_per_document(lengths, stride)
    document = np.repeat(np.arange(len(lengths)), counts)
    first_window = np.cumsum(counts) - counts
    position = 1 + (np.arange(int(counts.sum())) - first_window[document]) * stride
    padded_start = np.cumsum(lengths + context_length) - (lengths + context_length)
    return padded_start[document] + position, document, position


def encode_block(plan: WindowPlan, flat_ids: np.ndarray, lengths: np.ndarray, keys: np.ndarray,
                 validation: np.ndarray) -> EncodedBlock:
    """flat_ids int32[total tokens] of documents with `lengths`; keys uint64[documents];
    validation bool[documents] -> the block's windows as TFRecord frames per shard."""
    context = plan.context_length
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = np.zeros(int(lengths.sum()) + context * len(lengths), dtype=np.int32)
    token_document = np.repeat(np.arange(len(lengths)), lengths)
    token_offset = np.arange(len(flat_ids)) - (np.cumsum(lengths) - lengths)[token_document]
    padded[(np.cumsum(lengths + context) - lengths)[token_document] + token_offset] = flat_ids
    starts, document, position = window_rows(lengths, plan.stride, context)

    split = validation[document].astype(np.int64)
    shard_counts = np.array(plan.shard_counts, dtype=np.uint64)[split]
    seed_mix = splitmix64(np.uint64(plan.seed))
    hashed = splitmix64(np.asarray(keys, dtype=np.uint64)[document] ^ splitmix64(position.astype(np.uint64) ^ seed_mix))
    shard = (hashed % shard_counts).astype(np.int64)
    order = np.lexsort((shard, split))  # stable: document order within each (split, shard)
    bucket = (split * max(plan.shard_counts) + shard)[order]
    boundaries = np.flatnonzero(np.diff(bucket)) + 1
    encoder = StreamEncoder(padded)  # every window is a slice of this one stream
    pieces = []
    for group in np.split(np.arange(len(order)), boundaries) if len(order) else []:
        rows = order[group]
        frames, _ = encoder.encode(starts[rows], context + 1)
        pieces.append((int(split[rows[0]]), int(shard[rows[0]]), frames, len(rows)))
    return EncodedBlock(len(lengths), tuple(pieces))


def encode_job(arguments: tuple) -> EncodedBlock:
    """encode_block(*arguments): one picklable callable for a process pool."""
    return encode_block(*arguments)
