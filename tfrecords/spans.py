"""Span records in numpy: how many windows a record holds, which of them an epoch selects.

No TensorFlow here: `epoch_plan`, verify and inspect count and frame windows with these, and
the reader's in-graph expansion follows the very same rules (see tfrecords/reader.py).

A span record holds `pad` zeros plus `tokens` ids; framing the padded span with width
context_length + 1 and step `stride` gives its W windows, k = 0..W-1, window k covering padded
indices [k * stride, k * stride + context_length].

Objective "last" selects every window. Objective "all" selects non-overlapping windows, so that
each token is a target once per epoch: with period m = max(1, context_length // stride) and an
epoch offset o in [0, m), a record selects k = o, o + m, o + 2m, ... < W, plus k = W - 1.
Written as one formula, the i-th selected window is k_i = min(o_r + i * m, W - 1), where the
record's offset o_r is o, except for a record of W <= m windows, whose last window holds every
target it owns: o_r = W - 1 selects that window alone. (A verse-length document used to cost
two windows in most epochs, the second recomputing the first's words as context: on the King
James Bible 38% of the positions a batch computed were weighted targets, 53% now: 23.1 of 44 a window.)
"""

from __future__ import annotations

import numpy as np


def selection_period(context_length: int, stride: int) -> int:
    """m: windows that are m apart do not overlap in their targets (they may abut)."""
    return max(1, context_length // stride)


def epoch_offset(seed: int, epoch: int, period: int) -> int:
    """o in [0, period): seeded, and consecutive epochs take consecutive offsets (mod period),
    so different epochs differ whenever period > 1 and every offset recurs every `period` epochs."""
    base = int(np.random.default_rng([seed, 7_919]).integers(period))
    return (base + epoch) % period


def windows_in_records(pad: np.ndarray, token_counts: np.ndarray, context_length: int, stride: int) -> np.ndarray:
    """int64[records] windows each record holds: (pad + n - context_length - 1) // stride + 1."""
    padded = np.asarray(pad, dtype=np.int64) + np.asarray(token_counts, dtype=np.int64)
    return (padded - context_length - 1) // stride + 1


def record_offsets(record_windows: np.ndarray, offset: int, period: int) -> np.ndarray:
    """int64[records] o_r: the epoch's offset, or W - 1 for a record of W <= period windows."""
    windows = np.asarray(record_windows, dtype=np.int64)
    return np.where(windows <= period, windows - 1, offset)


def selected_counts(record_windows: np.ndarray, offset: int, period: int) -> np.ndarray:
    """int64[records] windows selected from records holding `record_windows` windows (>= 1):
    those with k % period == o_r, plus the last one when it is not among them."""
    windows = np.asarray(record_windows, dtype=np.int64)
    offset = record_offsets(windows, offset, period)
    by_offset = (windows - 1 - offset) // period + 1  # floor division: 0 when W - 1 < offset
    return by_offset + ((windows - 1) % period != offset)


def selected_in_histogram(histogram, offset: int, period: int) -> int:
    """Windows selected from a shard described by ((windows in a record, records), ...)."""
    if not histogram:
        return 0
    windows, records = np.asarray(histogram, dtype=np.int64).reshape(-1, 2).T
    return int(np.sum(selected_counts(windows, offset, period) * records))


def histogram(record_windows: np.ndarray) -> tuple[tuple[int, int], ...]:
    """int[records] -> ((windows in a record, records with that many), ...) ascending."""
    values, counts = np.unique(np.asarray(record_windows, dtype=np.int64), return_counts=True)
    return tuple((int(value), int(count)) for value, count in zip(values, counts))


def frame_record(pad: int, tokens: np.ndarray, context_length: int, stride: int) -> np.ndarray:
    """One record's windows: int64[W, context_length + 1], each [context ids..., target]."""
    padded = np.concatenate([np.zeros(int(pad), dtype=np.int64), np.asarray(tokens, dtype=np.int64)])
    count = max(0, (len(padded) - context_length - 1) // stride + 1)
    starts = np.arange(count, dtype=np.int64) * stride
    return padded[starts[:, None] + np.arange(context_length + 1)]
