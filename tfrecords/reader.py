"""The tf.data reader: DATA_DIR + split -> batches ready for the model.

One config dataclass (`ReaderConfig`), `epoch_plan` (what an epoch holds), `make_dataset` (one
epoch) and `make_epochs_dataset` (consecutive epochs through one iterator, for training).
The layout named in the manifest picks the pipeline; both start alike:

    files of this input pipeline (shuffled per epoch from (seed, epoch); whole files round
    robin over pipelines, or every n-th record when there are fewer files than pipelines)
      -> TFRecordDataset, one file after another

Both work per chunk of records, and training regroups records into chunks every epoch: within
each block of G chunks' worth of consecutive records (~regroup_bytes, 8 MiB, of serialized
records; G from the manifest's mean record size, see regroup_block_chunks), a permutation seeded
by (seed, epoch, block) decides which records share a chunk. Without it, a dataset of one or two
shards (whose file permutation changes nothing) gave every epoch the same groups of records. A
split under regroup_bytes is regrouped across all its records, a larger one within each block
(and its file order). Chunk sizes, hence the epoch's windows and batch count, do not change.
Evaluation reads chunks of consecutive records in file order.

"packed" (format 3) and "spans" (format 2): a record holds k >= 1 spans, runs of consecutive windows
of one document each (k = 1 in "spans"; see tfrecords/manifest.py), so the work is per chunk of
records, never per window:
      -> chunks of R = shuffle_buffer // windows_per_record records (not of the batch size, so
         2 replicas x batch b and 1 replica x batch 2b read the same window stream; nor is G);
         training permutes each block of G x R serialized records as one string tensor and cuts
         it into G chunks (span_reader.record_chunks: a string copy per record of ~128 windows)
      -> per chunk, parse pad + tokens (+ lengths: one tf.io.parse_example), flatten the records'
         spans (everything below is per span), and count the selected windows
      -> resume: skip whole chunks already consumed, from a running count (scan), unexpanded
      -> per chunk, the selected windows by ONE gather from the chunk's flat padded ids
         through their start indices; training permutes them first (seeded by (seed, epoch,
         chunk)); evaluation keeps record order
      -> rebatch to the batch size (training drops the epoch's final partial batch only)
   Which windows an epoch selects from a span of W windows k = 0..W-1 is written once, in
   tfrecords/spans.py (objective "last": every window, targets int32[b] = each window's last id;
   "all": non-overlapping windows from a per-(seed, epoch) offset; evaluation uses offset 0).
   Weights under "all": window k covers padded-span indices [k * stride, k * stride + C]; its
   target j (0..C-1) is padded index k * stride + 1 + j. The record owns target indices in
   (C - stride, C + (W - 1) * stride]. Target j of a selected window weighs 1 iff its index is
   owned, greater than the previous selected window's k' * stride + C (when there is one), and
   its id is not pad 0. With stride 1 every target of the record weighs 1 exactly once per epoch.

"windows" (format 1, or format 2 written with --layout windows): one window per record, as
in 0.1.0: training parses chunks of ~shuffle_buffer records (a whole number of batches) as one
tensor each, permutes the parsed windows of each block of G chunks whole (int32 rows: a string
copy per window would cost more than the parse's share, see shuffled_batches) and cuts batches;
evaluation batches in file order. Objective "all" there reads every window
with all C targets weighted (0 only on pad), i.e. each token is a target in ~C windows.

Both end with take(the epoch's batches) (training also asserts that count) -> (context
int32[b, C], targets, weights float32 like targets) -> prefetch(AUTOTUNE). Training chains
epochs: after the first, one flat_map over a table of epochs builds all of this with the
epoch and its "all" offset as tensors (make_epochs_dataset). Everything is a pure function of
(seed, epoch, input pipeline), which is what makes a resumed run read exactly what an
uninterrupted run would.

Checks against the manifest: before reading, each shard's size must equal the manifest's
`bytes` (a file cut at a record boundary would otherwise read as a clean, shorter file);
`epoch_plan` counts exactly the windows and batches an epoch holds (span shards from their
windows-per-record histograms; read once per process when there are fewer files than
pipelines), and the training loop / evaluation refuse an epoch that ends early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError, SettingsError
from nextword.quiet import absorb_onednn_note
from nextword.tfrecords.manifest import FEATURE_NAME, SPAN_LAYOUTS, Manifest, load_manifest
from nextword.tfrecords.span_reader import parse_spans, span_batches, span_chunk_records
from nextword.tfrecords.spans import (epoch_offset, selected_counts, selected_in_histogram, selection_period,
                             windows_in_records)

log = logging.getLogger(__name__)

OBJECTIVES = ("last", "all")


@dataclass(frozen=True)
class ReaderConfig:
    """How to read one split.

    batch_size: windows per batch the dataset yields (the PER-REPLICA batch size when used
      through `strategy.distribute_datasets_from_function`; the global one otherwise).
    objective: "last" -> targets int32[batch]; "all" -> targets int32[batch, context_length]
      (on span datasets: non-overlapping windows, each token a target once; module docstring).
    training: shuffle files and windows and drop the last partial batch (every replica and
      worker must take the same number of steps); evaluation reads every ("last") or every
      selected ("all", offset 0) window in order and keeps the last partial batch.
    shuffle_buffer: windows permuted together (span datasets: chunks of
      shuffle_buffer // windows_per_record records).
    regroup_bytes: training regroups records into chunks every epoch, within blocks of whole
      chunks holding ~this many bytes of serialized records (memory: ~2 blocks per pipeline,
      see regroup_block_chunks); a corpus smaller than this is regrouped across all its records.
    keep_last_batch: training on span records reads consecutive epochs as ONE window stream cut into
      batches (no epoch drops a partial batch; one input pipeline only): a blend's source
      (tfrecords/blend.py), whose epochs differ in size with the "all" offset.
    """

    batch_size: int = 256
    objective: str = "all"
    seed: int = 0
    training: bool = True
    shuffle_buffer: int = 16_384
    check_sizes: bool = True
    regroup_bytes: int = 8 << 20
    keep_last_batch: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SettingsError(f"batch size must be at least 1, got {self.batch_size}")
        if self.objective not in OBJECTIVES:
            raise SettingsError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.shuffle_buffer < 1 or self.regroup_bytes < 1:
            raise SettingsError("shuffle_buffer and regroup_bytes must be at least 1")


@dataclass(frozen=True)
class EpochPlan:
    """What one input pipeline reads in one epoch.

    files: shard paths in this epoch's order; record_shard: (num_shards, index) when the
    pipeline keeps every n-th record instead of whole files (fewer files than pipelines);
    windows: records this pipeline holds; batches: full batches every pipeline can yield
    (the minimum over pipelines in training, so all workers take the same number of steps).
    """

    files: tuple[str, ...]
    record_shard: tuple[int, int] | None
    windows: int
    batches: int


def epoch_selection(manifest: Manifest, config: ReaderConfig, epoch: int) -> tuple[int, int]:
    """(offset, period) of the span windows an epoch selects (see tfrecords/spans.py): every
    window for "last"; for "all" every period-th one from a per-(seed, epoch) offset (offset 0
    in evaluation, so an evaluation is the same whatever the epoch)."""
    if config.objective == "last" or manifest.layout not in SPAN_LAYOUTS:
        return 0, 1
    period = selection_period(manifest.context_length, manifest.stride)
    return (epoch_offset(config.seed, epoch, period) if config.training else 0), period


_RECORD_WINDOWS_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def scan_record_windows(data_dir: str, manifest: Manifest, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{shard file: (int64[spans] windows of each span, int64[records] spans of each record)}, read
    from the shards (parsing only pad and lengths); cached per (data_dir, split, shard checksums)."""
    shards = manifest.split(split).shards
    key = (data_dir, split, tuple(shard.sha256 for shard in shards))
    if key not in _RECORD_WINDOWS_CACHE:
        _RECORD_WINDOWS_CACHE[key] = {
            shard.file: _record_windows_of_file(storage.join(data_dir, shard.file), manifest) for shard in shards
        }
    return _RECORD_WINDOWS_CACHE[key]


def _record_windows_of_file(path: str, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    def lengths(serialized):
        pad, tokens, spans = parse_spans(serialized, manifest.layout)
        return pad, tokens.row_lengths(), spans

    windows, spans = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for pad, tokens, record_spans in tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(4096).map(lengths):
        windows.append(windows_in_records(pad.numpy(), tokens.numpy(), manifest.context_length, manifest.stride))
        spans.append(record_spans.numpy())
    return np.concatenate(windows), np.concatenate(spans)


def _selected_per_record(scanned: tuple[np.ndarray, np.ndarray], selection: tuple[int, int]) -> np.ndarray:
    """int64[records] windows an epoch selects from each record: the sum over its spans."""
    span_windows, record_spans = scanned
    selected = np.zeros(len(span_windows) + 1, np.int64)
    np.cumsum(selected_counts(span_windows, *selection), out=selected[1:])
    bounds = np.zeros(len(record_spans) + 1, np.int64)
    np.cumsum(record_spans, out=bounds[1:])
    return selected[bounds[1:]] - selected[bounds[:-1]]


def windows_per_pipeline(data_dir: str, manifest: Manifest, split: str, shards: list, selection: tuple[int, int],
                         num_pipelines: int) -> list[int]:
    """Windows each input pipeline reads in one epoch: whole files round robin when there are
    enough files, else every num_pipelines-th record of the files in this order."""
    spans = manifest.layout in SPAN_LAYOUTS
    if len(shards) < num_pipelines and not spans:  # one window per record
        total = sum(shard.records for shard in shards)
        return [len(range(i, total, num_pipelines)) for i in range(num_pipelines)]
    if len(shards) < num_pipelines:  # the histograms cannot say which records a pipeline gets
        by_file = scan_record_windows(data_dir, manifest, split)
        selected = np.concatenate([np.zeros(0, np.int64)] + [_selected_per_record(by_file[s.file], selection) for s in shards])
        return [int(selected[i::num_pipelines].sum()) for i in range(num_pipelines)]
    if not spans:
        counts = [shard.records for shard in shards]
    elif all(shard.record_windows or not shard.records for shard in shards):
        counts = [selected_in_histogram(shard.record_windows, *selection) for shard in shards]
    else:  # a manifest without histograms: count record by record
        by_file = scan_record_windows(data_dir, manifest, split)
        counts = [int(_selected_per_record(by_file[shard.file], selection).sum()) for shard in shards]
    return [sum(counts[i::num_pipelines]) for i in range(num_pipelines)]


def epoch_plan(
    data_dir: str,
    manifest: Manifest,
    split: str,
    config: ReaderConfig,
    epoch: int = 0,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
    replicas_per_pipeline: int = 1,
) -> EpochPlan:
    """The files, window count and batch count of one pipeline in one epoch (exact for both
    layouts; span shards are read only when there are fewer files than pipelines).

    Training batches are a multiple of replicas_per_pipeline: a step takes one batch per
    replica, and a batch left over would start the next chained epoch one batch late (at 2
    replicas the data would then differ from 1 replica's, and an elastic resume would shift)."""
    shards = list(manifest.split(split).shards)
    if config.training:
        # Same permutation on every worker: it depends on (seed, epoch) only.
        order = np.random.default_rng([config.seed, epoch]).permutation(len(shards))
        shards = [shards[i] for i in order]
    selection = epoch_selection(manifest, config, epoch)
    per_pipeline = windows_per_pipeline(data_dir, manifest, split, shards, selection, num_pipelines)
    if len(shards) >= num_pipelines:
        mine, record_shard = shards[pipeline_id::num_pipelines], None
    else:
        mine, record_shard = shards, (num_pipelines, pipeline_id)
    if config.training and config.keep_last_batch and manifest.layout in SPAN_LAYOUTS:
        if num_pipelines != 1 or replicas_per_pipeline != 1:
            raise ValueError("keep_last_batch reads one pipeline of one replica (a blend's source)")
        batches = -(-per_pipeline[0] // config.batch_size)
    elif config.training:
        batches = min(count // config.batch_size for count in per_pipeline)
        batches -= batches % replicas_per_pipeline
    else:
        batches = -(-per_pipeline[pipeline_id] // config.batch_size)
    files = tuple(storage.join(data_dir, shard.file) for shard in mine)
    return EpochPlan(files=files, record_shard=record_shard, windows=per_pipeline[pipeline_id], batches=batches)


def regroup_block_chunks(manifest: Manifest, split: str, config: ReaderConfig) -> int:
    """G: chunks regrouped together per block in training, so that a block holds ~regroup_bytes of
    serialized records (from the split's mean record size in the manifest: the same in every
    process, and independent of the batch size for span chunks).

    Memory per pipeline, whatever the corpus size. Spans: the block batch() fills, then its
    permuted copy, which flat_map holds while it hands out the chunks: ~2 x regroup_bytes (16 MiB
    by default) of serialized records; parsed data stays per chunk, as before. Windows: a block's
    parsed windows (int32, ~2x their serialized size at context 44) and their permuted copy:
    ~4 x regroup_bytes. Time: a block's first chunk waits for the whole block to be read (on a
    split under regroup_bytes, the whole split at each epoch start)."""
    shards = manifest.split(split).shards
    record_bytes = max(1, sum(shard.bytes for shard in shards) // max(1, sum(shard.records for shard in shards)))
    return max(1, config.regroup_bytes // (record_bytes * _chunk_records(manifest, config)))


def _chunk_records(manifest: Manifest, config: ReaderConfig) -> int:
    if manifest.layout in SPAN_LAYOUTS:
        return span_chunk_records(manifest, config.shuffle_buffer)
    return _windows_batches_per_chunk(config) * config.batch_size


def _windows_batches_per_chunk(config: ReaderConfig) -> int:
    """Layout "windows": a chunk holds a whole number of batches (~shuffle_buffer records)."""
    return max(1, -(-config.shuffle_buffer // config.batch_size))


def check_shard_sizes(data_dir: str, manifest: Manifest, split: str) -> None:
    """Every shard exists and has the manifest's byte size (cheap: one stat per file)."""
    for shard in manifest.split(split).shards:
        path = storage.join(data_dir, shard.file)
        if not storage.exists(path):
            raise ArtifactError(
                f"shard {path} listed in the manifest is missing",
                hint="the dataset is incomplete; re-run `nextword ingest`",
            )
        actual = storage.size(path)
        if actual != shard.bytes:
            raise ArtifactError(
                f"shard {path} has {actual} bytes, the manifest says {shard.bytes}",
                hint="the file was truncated or replaced after ingest; re-run `nextword ingest`",
            )


def parse_batch(serialized: tf.Tensor, context_length: int, objective: str):
    """string[batch] -> (context int32[batch, context_length], targets, weights).

    last: targets int32[batch], weights float32[batch].
    all:  targets int32[batch, context_length] = tokens[1:], weights 0 where the target is pad.
    """
    features = {FEATURE_NAME: tf.io.FixedLenFeature([context_length + 1], tf.int64)}
    tokens = tf.cast(tf.io.parse_example(serialized, features)[FEATURE_NAME], tf.int32)
    context = tokens[:, :-1]
    targets = tokens[:, -1] if objective == "last" else tokens[:, 1:]
    weights = tf.cast(tf.not_equal(targets, 0), tf.float32)
    return context, targets, weights


def shuffled_batches(records: tf.data.Dataset, config: ReaderConfig, epoch, context_length: int,
                     skip_batches: int = 0, block_chunks: int = 1) -> tf.data.Dataset:
    """string records -> parsed training batches: chunks of ~shuffle_buffer records are parsed
    as one tensor each, every block of block_chunks parsed chunks is permuted whole (seeded by
    (seed, epoch, block)) and cut into batches.

    Per-chunk instead of per-record tf.data work, and one big vectorised parse. Windows are
    regrouped after parsing: permuting int32 rows costs next to nothing, whereas gathering the
    serialized records (one string copy per window) cost ~25% more CPU per window (measured).
    A chunk holds a whole number of batches, so only the epoch's last partial batch is dropped,
    as `batch(drop_remainder=True)` would. Resuming skips whole blocks before parsing.
    """
    batch = config.batch_size
    chunk_records = _windows_batches_per_chunk(config) * batch
    block_batches = block_chunks * chunk_records // batch
    seed = tf.cast(epoch, tf.int64) + config.seed * 1_000_003  # epoch: int or int64 tensor

    def permute_and_cut(block_index, ragged_parts):
        parts = tuple(part.values for part in ragged_parts)  # [block windows, ...]: the chunks end to end
        count = tf.shape(parts[0], out_type=tf.int64)[0]
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([seed, block_index]))
        full = count // batch * batch
        return tuple(tf.reshape(tf.gather(part, order[:full]), tf.concat([[-1, batch], tf.shape(part)[1:]], 0))
                     for part in parts)

    skipped_blocks = skip_batches // block_batches
    chunks = records.batch(chunk_records).skip(skipped_blocks * block_chunks)
    parsed = chunks.map(lambda serialized: parse_batch(serialized, context_length, config.objective),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    blocks = parsed.ragged_batch(block_chunks).enumerate(start=skipped_blocks).map(permute_and_cut)
    return blocks.flat_map(lambda *parts: tf.data.Dataset.from_tensor_slices(parts)).skip(skip_batches % block_batches)


def make_dataset(
    data_dir: str,
    split: str,
    config: ReaderConfig,
    *,
    input_context: tf.distribute.InputContext | None = None,
    epoch: int = 0,
    skip_batches: int = 0,
    manifest: Manifest | None = None,
    pad_to_batches: int | None = None,
) -> tf.data.Dataset:
    """Batches of one epoch of `split` for one input pipeline (see the module docstring).

    skip_batches: batches of this epoch already consumed (exact resume).
    pad_to_batches (evaluation): append one-row batches whose target is -1 (read by no metric)
    up to this many, so every replica of every worker takes the same number of steps.
    Yields (context int32[b, C], targets int32[b] | int32[b, C], weights float32 like targets).
    """
    if config.training:
        return make_epochs_dataset(data_dir, split, config, range(epoch, epoch + 1), input_context=input_context,
                                   skip_batches=skip_batches, manifest=manifest)
    absorb_onednn_note()
    manifest = manifest or load_manifest(data_dir)
    if config.check_sizes:
        check_shard_sizes(data_dir, manifest, split)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    # (No record-sharding warning: evaluation splits are small, and reading every file is fine.)
    plan = epoch_plan(data_dir, manifest, split, config, epoch, num_pipelines, pipeline_id)
    records = _records(tf.constant(plan.files, tf.string), plan.record_shard)
    if manifest.layout in SPAN_LAYOUTS:
        parsed = span_batches(records, manifest, config, epoch_selection(manifest, config, epoch), epoch, skip_batches)
    else:
        parsed = records.batch(config.batch_size).skip(skip_batches).map(
            lambda serialized: parse_batch(serialized, manifest.context_length, config.objective),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    parsed = parsed.take(plan.batches - skip_batches)
    if pad_to_batches is not None and pad_to_batches > plan.batches - skip_batches:
        context, targets, weights = (tf.TensorSpec.from_spec(spec) for spec in parsed.element_spec)
        padding = (tf.zeros([1, manifest.context_length], context.dtype),
                   -tf.ones([1] + [manifest.context_length] * (targets.shape.rank - 1), targets.dtype),
                   tf.zeros([1] + [manifest.context_length] * (weights.shape.rank - 1), weights.dtype))
        parsed = parsed.concatenate(tf.data.Dataset.from_tensors(padding).repeat(
            pad_to_batches - (plan.batches - skip_batches)))
    return _finish(parsed)


def make_epochs_dataset(
    data_dir: str,
    split: str,
    config: ReaderConfig,
    epochs: range,
    *,
    input_context: tf.distribute.InputContext | None = None,
    skip_batches: int = 0,
    manifest: Manifest | None = None,
    skip_windows: int | None = None,
) -> tf.data.Dataset:
    """Training batches of consecutive epochs through one iterator: epoch epochs[0] from
    skip_batches on, then every later epoch of the range whole, each exactly one epoch.

    config.keep_last_batch on span records: the epochs are one window stream cut into batches once
    (an epoch's last windows share a batch with the next epoch's first), from skip_windows (or
    skip_batches x batch) windows into epochs[0]; no per-epoch count is asserted there.

    After the first epoch, the per-epoch values (file order, "all" offset, shuffle seed, batch
    count) are a small table and ONE traced pipeline reads every row of it (flat_map): no
    Python graph building per epoch, and the outer prefetch opens the next epoch's files while
    the current epoch's last batches train. (A pipeline built per epoch made the training loop
    wait 23% of its step time on the embedded corpus, whose `all` epochs are ~14 steps; chained,
    0.8%: bench/RESULTS.md.) Each epoch's batch count is asserted: one that ends early fails at
    its end (FailedPreconditionError "expected to contain") rather than shifting later epochs.
    """
    if not config.training or len(epochs) < 1:
        raise ValueError("make_epochs_dataset reads at least one training epoch")
    absorb_onednn_note()
    manifest = manifest or load_manifest(data_dir)
    if config.check_sizes:
        check_shard_sizes(data_dir, manifest, split)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    replicas = max(1, input_context.num_replicas_in_sync // num_pipelines) if input_context else 1
    plans = [epoch_plan(data_dir, manifest, split, config, epoch, num_pipelines, pipeline_id, replicas)
             for epoch in epochs]
    _warn_record_sharding(plans[0], split, num_pipelines)
    period = epoch_selection(manifest, config, epochs[0])[1]  # the same every epoch
    block_chunks = regroup_block_chunks(manifest, split, config)

    continuous = config.keep_last_batch and manifest.layout in SPAN_LAYOUTS

    def one_epoch(epoch, offset, skip, batches, files) -> tf.data.Dataset:
        records = _records(files, plans[0].record_shard)
        if continuous:
            return span_batches(records, manifest, config, (offset, period), epoch, 0, block_chunks,
                                skip_windows=skip, rebatch=False)
        if manifest.layout in SPAN_LAYOUTS:
            parsed = span_batches(records, manifest, config, (offset, period), epoch, skip, block_chunks)
        else:
            parsed = shuffled_batches(records, config, epoch, manifest.context_length, skip, block_chunks)
        return parsed.take(batches).apply(tf.data.experimental.assert_cardinality(batches))

    # The first epoch is built with its values as constants (the one that may resume mid-epoch);
    # the rest are rows of a table read by one traced pipeline.
    if continuous:
        skip_windows = skip_batches * config.batch_size if skip_windows is None else skip_windows
    first = one_epoch(epochs[0], epoch_selection(manifest, config, epochs[0])[0],
                      skip_windows if continuous else skip_batches,
                      plans[0].batches - skip_batches, tf.constant(plans[0].files, tf.string))
    if len(epochs) == 1:
        return _finish(first.rebatch(config.batch_size) if continuous else first)
    later, later_plans = epochs[1:], plans[1:]
    table = tf.data.Dataset.from_tensor_slices({
        "epoch": tf.constant(list(later), tf.int64),
        "offset": tf.constant([epoch_selection(manifest, config, epoch)[0] for epoch in later], tf.int64),
        "batches": tf.constant([plan.batches for plan in later_plans], tf.int64),
        "files": tf.constant([list(plan.files) for plan in later_plans], tf.string,
                             shape=[len(later_plans), len(plans[0].files)]),
    })
    rest = table.flat_map(lambda row: one_epoch(row["epoch"], row["offset"], 0, row["batches"], row["files"]))
    chained = first.concatenate(rest)
    return _finish(chained.rebatch(config.batch_size) if continuous else chained)


def _warn_record_sharding(plan: EpochPlan, split: str, num_pipelines: int) -> None:
    if plan.record_shard is not None:
        log.warning(
            "%s has %d shard(s) for %d input pipelines: sharding by record (every pipeline reads every file)",
            split, len(plan.files), num_pipelines,
        )


def _records(files: tf.Tensor, record_shard) -> tf.data.Dataset:
    """string[files] -> the records this pipeline reads, in order."""
    # One file after another: no per-record interleave work. Every shard is already a sample of
    # the whole corpus (ingest spreads windows by hash), so the chunk shuffle mixes as well as an
    # interleave would (which would also reorder the records an epoch plan counts on).
    records = tf.data.TFRecordDataset(files, buffer_size=1 << 20)
    return records.shard(*record_shard) if record_shard is not None else records


def _finish(parsed: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return parsed.with_options(options).prefetch(tf.data.AUTOTUNE)
