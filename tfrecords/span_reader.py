"""The span-record half of the tf.data reader (tfrecords/reader.py has the pipeline around it), for
the "packed" and "spans" layouts: records are parsed into their spans, and all the rest is per span.

Per chunk of records, never per window: parse pad + tokens (+ lengths), count the windows the epoch selects,
then cut them with ONE gather from the chunk's flat padded ids. The selection rule (objective
"last": every window; "all": non-overlapping windows) is in tfrecords/reader.py's docstring and,
in numpy, in tfrecords/spans.py. `record_chunks` says which records share a chunk (regrouped
every training epoch).
"""

from __future__ import annotations

import tensorflow as tf

from nextword.tfrecords.manifest import FEATURE_NAME, LENGTHS_FEATURE, PAD_FEATURE, Manifest

SPAN_FEATURES = {
    PAD_FEATURE: tf.io.FixedLenFeature([1], tf.int64),
    # a VarLen feature, parsed straight to ragged: row lengths without a sparse round trip
    FEATURE_NAME: tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
}
PACKED_FEATURES = {name: tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64)
                   for name in (LENGTHS_FEATURE, PAD_FEATURE, FEATURE_NAME)}


def parse_spans(serialized: tf.Tensor, layout: str) -> tuple[tf.Tensor, tf.RaggedTensor, tf.Tensor]:
    """string[records] -> (pad int64[spans], tokens ragged int64[spans, None], spans of each record
    int64[records]): a "packed" record's k spans flattened in record order (everything after this
    works per span), a "spans" record's one span."""
    if layout == "spans":
        parsed = tf.io.parse_example(serialized, SPAN_FEATURES)
        return parsed[PAD_FEATURE][:, 0], parsed[FEATURE_NAME], tf.ones_like(parsed[PAD_FEATURE][:, 0])
    parsed = tf.io.parse_example(serialized, PACKED_FEATURES)
    lengths = parsed[LENGTHS_FEATURE]
    tokens = tf.RaggedTensor.from_row_lengths(parsed[FEATURE_NAME].values, lengths.values, validate=False)
    return parsed[PAD_FEATURE].values, tokens, lengths.row_lengths()


def record_chunks(records: tf.data.Dataset, chunk_records: int, block_chunks: int, seed) -> tf.data.Dataset:
    """string records -> chunks string[chunk_records] (the last one may be shorter).

    seed None (evaluation): runs of consecutive records. Otherwise (training) records are
    regrouped every epoch: each block of block_chunks * chunk_records consecutive records is
    permuted as one tensor (stateless_shuffle seeded by (seed, block)) and cut into block_chunks
    chunks. Chunk sizes depend on the record count only, so the epoch holds the same records
    and the same number of chunks whatever the seed; only which records share a chunk changes.
    seed: int64 scalar, a tensor in make_epochs_dataset's traced pipeline.
    """
    if seed is None:
        return records.batch(chunk_records)

    def regroup(block_index, block):
        count, size = tf.size(block, out_type=tf.int64), tf.constant(chunk_records, tf.int64)
        # (seed, -1 - block): never the (seed, chunk >= 0) that permutes a chunk's windows. Gathering
        # through a permuted range copies each string once (~1.6x cheaper than shuffling the strings).
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([seed, -1 - block_index]))
        lengths = tf.minimum(size, count - tf.range(0, count, size))
        return tf.RaggedTensor.from_row_lengths(tf.gather(block, order), lengths, validate=False)

    blocks = records.batch(block_chunks * chunk_records).enumerate().map(regroup)
    return blocks.flat_map(tf.data.Dataset.from_tensor_slices)


def span_chunk_records(manifest: Manifest, shuffle_buffer: int) -> int:
    """R: records per chunk, so that a chunk holds ~shuffle_buffer windows."""
    return max(1, shuffle_buffer // max(1, manifest.windows_per_record))


def span_chunk_counter(context_length: int, stride: int, selection: tuple[int, int], layout: str = "spans"):
    """string[records] -> (pad int64[s], tokens ragged int64[s, None], windows int64[s],
    selected int64[s]) per span s of the records: the parse every chunk needs, which alone says
    how many windows it yields."""
    offset, period = selection  # offset: int or int64 tensor (one traced pipeline for many epochs)

    def count(serialized):
        pad, tokens, _ = parse_spans(serialized, layout)
        windows = (pad + tokens.row_lengths() - context_length - 1) // stride + 1
        # as tfrecords.spans.selected_counts: k % period == o_r, plus the last window
        record_offset = record_offsets(windows, offset, period)
        selected = (windows - 1 - record_offset) // period + 1 + tf.cast((windows - 1) % period != record_offset, tf.int64)
        return pad, tokens, windows, selected

    return count


def record_offsets(windows: tf.Tensor, offset, period: int) -> tf.Tensor:
    """o_r per record, as tfrecords.spans.record_offsets: W - 1 when W <= period, else `offset`."""
    return tf.where(windows <= period, windows - 1, tf.cast(offset, windows.dtype))


def padded_flat_ids(pad: tf.Tensor, tokens: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A chunk's spans laid end to end, each after its pad zeros: (ids int32[sum(pad + n)],
    int32[records] where each record's padded span starts). A ragged concat: ~4x cheaper than
    scattering the ids to their padded positions."""
    zeros = tf.RaggedTensor.from_row_lengths(tf.zeros([tf.reduce_sum(pad)], tf.int32), pad, validate=False)
    spans = tf.concat([zeros, tokens.with_values(tf.cast(tokens.values, tf.int32))], axis=1)
    return spans.values, tf.cast(spans.row_splits[:-1], tf.int32)


def selected_window_starts(windows: tf.Tensor, selected: tf.Tensor, padded_starts: tf.Tensor, context_length: int,
                           stride: int, selection: tuple[int, int], every_target: bool) -> tf.Tensor:
    """int32[n, 1 or 2]: per selected window its start in the flat padded ids and, with
    every_target (objective "all"), the first target j it weights.

    The i-th selected window of a record is k = min(o_r + i * period, W - 1); its targets at
    padded index <= the previous selected window's end (or <= C - stride, the record before's)
    are someone else's, so it weights targets j >= that bound - k * stride."""
    offset, period = selection
    windows, selected = tf.cast(windows, tf.int32), tf.cast(selected, tf.int32)
    before = tf.cumsum(selected, exclusive=True)
    if not every_target:  # objective "last" selects every window (offset 0, period 1), k = i: fewer ops
        shift = tf.repeat(padded_starts - before * stride, selected)
        return (tf.range(tf.reduce_sum(selected)) * stride + shift)[:, None]
    record = tf.repeat(tf.range(tf.size(selected)), selected)
    i = tf.range(tf.reduce_sum(selected)) - tf.gather(before, record)
    offset = tf.gather(record_offsets(windows, offset, period), record)
    k = tf.minimum(offset + i * period, tf.gather(windows, record) - 1)
    starts = tf.gather(padded_starts, record) + k * stride
    owned_after = tf.where(i == 0, context_length - stride, (offset + (i - 1) * period) * stride + context_length)
    return tf.stack([starts, owned_after - k * stride], axis=1)


def context_and_targets(ids: tf.Tensor, starts: tf.Tensor, context_length: int, objective: str,
                        frame_every_position: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """The windows ids[start : start + C + 1] as (context int32[n, C], targets int32[n] for "last",
    int32[n, C] = the window shifted by one for "all"), gathered straight from `ids`.

    frame_every_position: gather whole rows of a [positions, C] frame matrix built from C
    shifted slices (contiguous copies + one transpose): ~3x faster than gathering n * C single
    ids when most positions start a window (long documents: 128 windows over 172 positions). It
    frames every position, so per chunk it is used only when positions <= 1.5 n: on verses (23
    windows over 67 padded positions) the single-id gather read ~1.7x faster (packed records,
    2026-12-05), as the frame matrix of a chunk of ~16K windows outgrows the caches."""
    def rows_of(frames):
        if frames is None:
            return lambda offsets: tf.gather(ids, offsets[:, None] + tf.range(context_length))
        return lambda offsets: tf.gather(frames, offsets)

    def windows(frames):
        rows = rows_of(frames)
        targets = tf.gather(ids, starts + context_length) if objective == "last" else rows(starts + 1)
        return rows(starts), targets

    if not frame_every_position:
        return windows(None)

    def framed():
        positions = tf.size(ids) - context_length + 1
        return windows(tf.transpose(tf.stack([ids[shift: shift + positions] for shift in range(context_length)])))

    return tf.cond(2 * tf.size(ids) <= 3 * tf.size(starts), framed, lambda: windows(None))


def span_chunk_expander(context_length: int, stride: int, objective: str, selection: tuple[int, int],
                        shuffle_seed: tf.Tensor | None, skip_windows: int):
    """One chunk of parsed span records -> its selected windows as (context int32[n, C], targets,
    weights), with ONE gather from the chunk's flat (padded) ids through the window starts.

    shuffle_seed: permute the chunk's windows, seeded by (shuffle_seed, chunk index); None keeps
    record order. skip_windows: windows of the epoch already consumed (resume); the chunk drops
    those it holds, given `before`, the epoch's windows in the chunks before it.
    """
    frame_every_position = stride * selection[1] <= 2  # see context_and_targets

    def expand(index, pad, tokens, windows, selected, before):
        ids, padded_starts = padded_flat_ids(pad, tokens)
        columns = selected_window_starts(windows, selected, padded_starts, context_length, stride, selection,
                                         every_target=objective == "all")
        if shuffle_seed is not None:
            columns = tf.random.experimental.stateless_shuffle(columns, seed=tf.stack([shuffle_seed, index]))
        columns = columns[tf.cast(tf.maximum(skip_windows - before, 0), tf.int32):]
        context, targets = context_and_targets(ids, columns[:, 0], context_length, objective, frame_every_position)
        if objective == "last":
            return context, targets, tf.cast(tf.not_equal(targets, 0), tf.float32)
        owned = tf.range(context_length)[None, :] >= columns[:, 1:]
        return context, targets, tf.cast(owned & tf.not_equal(targets, 0), tf.float32)

    return expand


def span_batches(records: tf.data.Dataset, manifest: Manifest, config, selection: tuple, epoch,
                 skip_batches: int = 0, block_chunks: int = 1, skip_windows: int | None = None,
                 rebatch: bool = True) -> tf.data.Dataset:
    """string span records -> batches: chunks of R records (R from shuffle_buffer, never from the
    batch size, so 2 replicas x b and 1 replica x 2b read the same window stream; in training
    regrouped every epoch within blocks of block_chunks chunks, see record_chunks) -> parse ->
    skip whole chunks already consumed -> expand (+ permute in training) -> rebatch.

    config: the reader's ReaderConfig; selection: (offset, period) of the windows this epoch reads.
    The offset and epoch may be int64 tensors (make_epochs_dataset's flat_map); skip_batches is an int.
    skip_windows (instead of skip_batches x batch) and rebatch=False (chunks of windows as they are
    expanded): a blend's source, rebatched once over its chained epochs (make_epochs_dataset)."""
    context_length, stride = manifest.context_length, manifest.stride
    skip_windows = skip_batches * config.batch_size if skip_windows is None else skip_windows
    shuffle_seed = tf.cast(epoch, tf.int64) + config.seed * 1_000_003 if config.training else None

    def add_windows_before(before, chunk):
        index, (pad, tokens, windows, selected) = chunk
        return before + tf.reduce_sum(selected), (index, pad, tokens, windows, selected, before)

    count = span_chunk_counter(context_length, stride, selection, manifest.layout)
    chunk_records = span_chunk_records(manifest, config.shuffle_buffer)
    chunks = record_chunks(records, chunk_records, block_chunks, shuffle_seed).enumerate().map(
        lambda index, serialized: (index, count(serialized)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    if skip_windows:
        chunks = chunks.scan(tf.constant(0, tf.int64), add_windows_before).filter(
            lambda index, pad, tokens, windows, selected, before: before + tf.reduce_sum(selected) > skip_windows)
    else:
        chunks = chunks.map(lambda index, parts: (index, *parts, tf.constant(0, tf.int64)))
    expand = span_chunk_expander(context_length, stride, config.objective, selection, shuffle_seed, skip_windows)
    windows = chunks.map(expand, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return windows.rebatch(config.batch_size, drop_remainder=config.training) if rebatch else windows
