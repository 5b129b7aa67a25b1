"""The "packed" layout: a record holds several spans (runs of consecutive windows of one document).

Pure numpy, shared by both runners. Two halves:

- `encode_payloads` (pass 2, in the workers): a record's bytes before ordering are only its ids as
  packed varints (no frame, no Example header, no CRC), with its pad and token count in the
  RECORD_INFO row. On a dictionary line of 4.5 words the frame, header and CRC were most of the
  work and of the bytes (the CRC scan also ran over the 44 pad zeros laid before every document).
- `iter_packed` (the shared ordering stage, one shard at a time): in the shard's final seeded order,
  consecutive records are merged greedily while they hold at most `windows_per_record` windows in
  all (a long document's full runs stay records of their own), and each merged record is framed
  once: Example {"lengths": int64[k], "pad": int64[k], "tokens": int64[sum(lengths)]}. Merging in
  the final order makes a record's documents a random sample (not neighbours in the corpus), and
  makes the output a pure function of the shard's records: byte-identical for any --workers and
  for both runners.
"""

from __future__ import annotations

import functools
from typing import Iterable, Iterator

import numpy as np

from nextword.tfrecords.encode import _advance_by, _byte_table, _int64_feature, _map_entry, _prefix_registers, _varint
from nextword.tfrecords.encode import crc32c, mask_crc, varint_stream
from nextword.tfrecords.manifest import FEATURE_NAME, LENGTHS_FEATURE, PAD_FEATURE

_ROW_CRC_LIMIT = 2048  # records longer than this get their CRC from prefix registers, not a column loop
_MATRIX_BYTES = 1 << 20  # bytes of a right-aligned record matrix per CRC pass (its temporaries: ~20x)
_MATRIX_ROWS = 1 << 16
PIECE_ROWS = 1 << 17  # unordered records packed at a time (see _pack_runs)


def encode_payloads(flat_ids: np.ndarray, token_starts: np.ndarray, token_ends: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The varints of flat_ids[start:end] per record, concatenated in the given order:
    (bytes, int64[records] sizes). flat_ids: int[tokens] of a block's documents end to end."""
    stream, offsets = varint_stream(np.asarray(flat_ids).astype(np.intp, copy=False))
    starts = offsets[token_starts]
    sizes = offsets[token_ends] - starts
    return _gather(stream, starts, sizes).tobytes(), sizes


def _gather(source: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """source[start : start + size] for each segment, concatenated (one numpy gather)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    outputs = np.cumsum(sizes) - sizes
    index_type = np.int32 if max(total, len(source)) < 2**31 else np.int64
    index = np.repeat((np.asarray(starts, dtype=np.int64) - outputs).astype(index_type), sizes)
    index += np.arange(total, dtype=index_type)
    return source[index]


def group_starts(windows: np.ndarray, limit: int) -> np.ndarray:
    """int64[groups + 1]: greedy runs of consecutive records holding at most `limit` windows in
    all (a record of more windows alone), as [first record of each run..., len(windows)]."""
    ends = np.cumsum(np.asarray(windows, dtype=np.int64))
    # the run from record s ends before the first record e whose cumulative count passes base + limit
    next_start = np.searchsorted(ends, ends - windows + limit, side="right")
    next_start = np.maximum(next_start, np.arange(1, len(windows) + 1))
    starts, start, count = [], 0, len(windows)
    while start < count:  # one step a run (~128 windows), not a record
        starts.append(start)
        start = int(next_start[start])
    starts.append(count)
    return np.asarray(starts, dtype=np.int64)


@functools.cache
def _entry(name: str, payload_length: int) -> bytes:
    return _map_entry(name, _int64_feature(payload_length), payload_length)


@functools.cache
def _length_field(data_length: int) -> bytes:
    field = data_length.to_bytes(8, "little")
    return field + int(mask_crc(crc32c(field))).to_bytes(4, "little")


def _table(function, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """function(int) -> bytes for each value, as (bytes uint8, start of each value's bytes, their
    lengths) indexed through `which` (distinct values only are built)."""
    distinct, which = np.unique(values, return_inverse=True)
    pieces = [function(int(value)) for value in distinct]
    lengths = np.array([len(piece) for piece in pieces], dtype=np.int64)
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    return data, (np.cumsum(lengths) - lengths)[which.reshape(-1)], lengths[which.reshape(-1)], lengths


def _segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of values over [starts[g], starts[g + 1]) for each group g."""
    prefix = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=prefix[1:])
    return prefix[starts[1:]] - prefix[starts[:-1]]


def pack_records(payloads: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, tokens: np.ndarray, pads: np.ndarray,
                 starts: np.ndarray) -> bytes:
    """Frames of packed records: records [starts[g], starts[g + 1]) of the given (ordered) rows
    merged into record g. payloads uint8: every row's varints, row i at offsets[i] (sizes[i] bytes)."""
    pad_stream, pad_offsets = varint_stream(pads.astype(np.intp))
    length_stream, length_offsets = varint_stream(tokens.astype(np.intp))
    pad_bytes = pad_offsets[starts[1:]] - pad_offsets[starts[:-1]]
    length_bytes = length_offsets[starts[1:]] - length_offsets[starts[:-1]]
    payload_bytes = _segment_sums(sizes, starts)
    # Example bytes = 0A varint(E) | entry "lengths" | varints | entry "pad" | varints | entry "tokens" | ids
    # (map entries in key order, as protobuf's deterministic serialisation writes them)
    tables = [_table(functools.partial(_entry, name), values) for name, values in
              ((LENGTHS_FEATURE, length_bytes), (PAD_FEATURE, pad_bytes), (FEATURE_NAME, payload_bytes))]
    entries = sum(table[2] for table in tables) + length_bytes + pad_bytes + payload_bytes
    outer = _table(lambda value: b"\x0a" + _varint(value), entries)
    groups = len(starts) - 1
    # Data of every record: one gather from one source through its segments.
    parts = [outer[0], tables[0][0], length_stream, tables[1][0], pad_stream, tables[2][0], payloads]
    bases = np.cumsum([0] + [len(part) for part in parts])
    source = np.concatenate(parts)
    head = np.stack([bases[0] + outer[1], bases[1] + tables[0][1], bases[2] + length_offsets[starts[:-1]],
                     bases[3] + tables[1][1], bases[4] + pad_offsets[starts[:-1]], bases[5] + tables[2][1]], axis=1)
    head_sizes = np.stack([outer[2], tables[0][2], length_bytes, tables[1][2], pad_bytes, tables[2][2]], axis=1)
    members = np.diff(starts)
    # segments per record: its 6 header pieces, then one per merged row's ids
    segment_starts = np.empty(6 * groups + len(sizes), dtype=np.int64)
    segment_sizes = np.empty_like(segment_starts)
    first_segment = np.arange(groups) * 6 + starts[:-1]
    header_slots = (first_segment[:, None] + np.arange(6)).reshape(-1)
    segment_starts[header_slots], segment_sizes[header_slots] = head.reshape(-1), head_sizes.reshape(-1)
    row_slots = np.repeat(first_segment + 6 - starts[:-1], members) + np.arange(len(sizes))
    segment_starts[row_slots], segment_sizes[row_slots] = bases[6] + offsets, sizes
    data = _gather(source, segment_starts, segment_sizes)
    data_lengths = outer[2] + entries
    data_starts = np.cumsum(data_lengths) - data_lengths
    crc_bytes = mask_crc(crc32c_slices(data, data_starts, data_lengths)).astype("<u4").view(np.uint8)
    # Frames: length field + its CRC | data | data CRC.
    fields = _table(_length_field, data_lengths)
    source = np.concatenate([fields[0], data, crc_bytes])
    frame_starts = np.stack([fields[1], len(fields[0]) + data_starts, len(fields[0]) + len(data) + 4 * np.arange(groups)], axis=1)
    frame_sizes = np.stack([fields[2], data_lengths, np.full(groups, 4)], axis=1)
    return _gather(source, frame_starts.reshape(-1), frame_sizes.reshape(-1)).tobytes()


def crc32c_slices(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """uint32[n]: the CRC32C of each data[start : start + length].

    Many records at once, a byte column at a time: the records (sorted by length) are right-aligned
    in a matrix (leading zero bytes leave a register of 0 at 0), so each step is one table lookup
    over every record (70-90 MB/s on this shared 2-core VM, ~2x the prefix-register scan). Long
    records use the scan."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    linear = np.zeros(len(lengths), dtype=np.uint32)  # the register from 0 over each slice
    table = _byte_table()
    order = np.argsort(lengths, kind="stable")
    short = order[lengths[order] <= _ROW_CRC_LIMIT]
    first = 0
    while first < len(short):
        # rows sorted by length: a batch of m rows is m x (its last row's length) bytes; the largest m within budget
        candidates = lengths[short[first: first + _MATRIX_ROWS]]
        fits = np.arange(1, len(candidates) + 1) * candidates <= _MATRIX_BYTES
        last = first + max(1, int(np.searchsorted(~fits, True)))
        width = int(lengths[short[last - 1]])
        rows = short[first:last]
        lead = width - lengths[rows]
        columns = np.arange(width)
        index = starts[rows][None, :] - lead[None, :] + columns[:, None]  # [width, rows]
        matrix = np.where(columns[:, None] >= lead[None, :], data[np.maximum(index, 0)], 0).astype(np.uint32)
        register = np.zeros(len(rows), dtype=np.uint32)
        for column in matrix:
            register = table[(register ^ column) & 0xFF] ^ (register >> 8)
        linear[rows] = register
        first = last
    for row in order[lengths[order] > _ROW_CRC_LIMIT]:
        registers = _prefix_registers(data[starts[row]: starts[row] + lengths[row]])
        linear[row] = registers[-1]
    # crc = linear part ^ the initial value ~0 carried over the slice ^ the final xor
    full = np.full(len(lengths), 0xFFFFFFFF, dtype=np.uint32)
    return linear ^ _advance_by(full, lengths) ^ np.uint32(0xFFFFFFFF)


def iter_packed(payloads: bytes, info: np.ndarray, windows_per_record: int,
                piece_bytes: int = 1 << 20) -> tuple[Iterator[bytes], int]:
    """A shard's unordered payloads and RECORD_INFO rows (arrival order) -> (its packed frames in
    the shard's seeded order as pieces of ~piece_bytes of ids, the number of packed records).
    Equal order keys (duplicated documents) keep arrival order, as in iter_ordered."""
    order = np.argsort(info["order"], kind="stable")
    windows = info["windows"][order]
    starts = group_starts(windows, windows_per_record)
    del windows
    offsets = np.zeros(len(info) + 1, dtype=np.int64)
    np.cumsum(info["size"], out=offsets[1:])
    source = np.frombuffer(payloads, dtype=np.uint8)
    return _pack_runs(source, offsets, order, info, starts, piece_bytes), len(starts) - 1


def _pack_runs(source: np.ndarray, offsets: np.ndarray, order: np.ndarray, info: np.ndarray, starts: np.ndarray,
               piece_bytes: int) -> Iterator[bytes]:
    """Packed frames of the runs `starts` over the rows order[...] (row i's ids: source[offsets[i]:
    offsets[i + 1]]), as pieces of ~piece_bytes of ids."""
    runs = len(starts) - 1
    # runs of ~piece_bytes of ids and at most ~PIECE_ROWS rows (packing holds ~0.15 KB a row at once:
    # a 1 MB piece of 3-byte dictionary lines was ~50 MB)
    per_piece = max(1, min(int(piece_bytes * runs // max(1, int(offsets[-1]))), PIECE_ROWS * runs // max(1, int(starts[-1] - starts[0]))))
    for first in range(0, runs, per_piece):
        bounds = starts[first: first + per_piece + 1]
        rows = order[bounds[0]: bounds[-1]]
        sizes = (offsets[rows + 1] - offsets[rows])
        local = np.cumsum(sizes) - sizes
        ids = _gather(source, offsets[rows], sizes)
        yield pack_records(ids, local, sizes, info["tokens"][rows], info["pad"][rows], bounds - bounds[0])


def iter_packed_buckets(buckets: Iterable[tuple[bytes, np.ndarray]], windows_per_record: int, packed: list,
                        piece_bytes: int = 1 << 20) -> Iterator[bytes]:
    """iter_packed's bytes from a shard cut into buckets of consecutive order keys (each bucket's rows
    in arrival order, the buckets in key order; ingest/writer.py), holding one bucket at a time.
    The greedy runs cross bucket boundaries: a bucket's last run is carried into the next bucket
    (the next records may join it), so the runs, and the bytes, are iter_packed's. packed[0] counts
    the packed records written."""
    carry_info, carry_ids = None, np.zeros(0, dtype=np.uint8)
    buckets = iter(buckets)
    current = next(buckets, None)
    while current is not None:
        payloads, info = current
        following = next(buckets, None)
        order = np.argsort(info["order"], kind="stable")
        offsets = np.zeros(len(info) + 1, dtype=np.int64)
        np.cumsum(info["size"], out=offsets[1:])
        ordered_ids = _gather(np.frombuffer(payloads, dtype=np.uint8), offsets[order], info["size"][order])
        del payloads, offsets
        rows = info[order] if carry_info is None else np.concatenate([carry_info, info[order]])
        ids = np.concatenate([carry_ids, ordered_ids])
        del info, order, ordered_ids
        starts = group_starts(rows["windows"], windows_per_record)
        # the last run stays open while another bucket follows
        keep = int(starts[-2]) if following is not None and len(starts) > 1 else len(rows)
        written = starts[starts <= keep]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(rows["size"], out=offsets[1:])
        yield from _pack_runs(ids, offsets, np.arange(keep), rows, written, piece_bytes)
        packed[0] += len(written) - 1
        carry_info, carry_ids = rows[keep:].copy(), ids[int(offsets[keep]):].copy()
        del rows, ids, offsets
        current = following

