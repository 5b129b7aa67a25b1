"""The tf.data reader: DATA_DIR + split -> batches ready for the model.

One config dataclass (`ReaderConfig`) and one function (`make_dataset`). The pipeline is

    files of this input pipeline (shuffled per epoch from (seed, epoch))
      -> interleave of TFRecordDataset (deterministic order)
      -> training: chunks of ~shuffle_buffer records, each parsed as one tensor
         (tf.io.parse_example), permuted whole (seeded by (seed, epoch, chunk)) and cut into
         batches of the per-replica batch size: a full shuffle of every chunk without
         tf.data's per-record shuffle cost, which took ~45% of the reader's time
         evaluation: batches in file order, each parsed as one tensor
      -> skip the batches already consumed (resume; whole chunks before parsing)
      -> take the batches of one epoch -> (context, targets, weights)
      -> prefetch(AUTOTUNE)

Everything is a pure function of (seed, epoch, input pipeline), which is what makes a
resumed run read exactly the windows an uninterrupted run would have read.

Checks against the manifest: before reading, each shard's size must equal the manifest's
`bytes` (a file cut at a record boundary would otherwise read as a clean, shorter file);
`epoch_plan` says how many batches an epoch holds, and the training loop / evaluation
refuse an epoch that ends early.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError, SettingsError
from tfrecords.manifest import FEATURE_NAME, Manifest, load_manifest

log = logging.getLogger(__name__)

OBJECTIVES = ("last", "all")


@dataclass(frozen=True)
class ReaderConfig:
    """How to read one split.

    batch_size: windows per batch the dataset yields (the PER-REPLICA batch size when used
      through `strategy.distribute_datasets_from_function`; the global one otherwise).
    objective: "last" -> targets int32[batch]; "all" -> targets int32[batch, context_length].
    training: shuffle files and windows and drop the last partial batch (every replica and
      worker must take the same number of steps); evaluation reads every window in order.
    """

    batch_size: int = 256
    objective: str = "all"
    seed: int = 0
    training: bool = True
    shuffle_buffer: int = 16_384
    cycle_length: int = 1  # files read at once (interleaved record by record); 1 = one after another
    check_sizes: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SettingsError(f"batch size must be at least 1, got {self.batch_size}")
        if self.objective not in OBJECTIVES:
            raise SettingsError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.shuffle_buffer < 1 or self.cycle_length < 1:
            raise SettingsError("shuffle_buffer and cycle_length must be at least 1")


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


def epoch_plan(
    data_dir: str,
    manifest: Manifest,
    split: str,
    config: ReaderConfig,
    epoch: int = 0,
    num_pipelines: int = 1,
    pipeline_id: int = 0,
) -> EpochPlan:
    """Pure Python: the files and batch count of one pipeline in one epoch."""
    shards = list(manifest.split(split).shards)
    if config.training:
        # Same permutation on every worker: it depends on (seed, epoch) only.
        order = np.random.default_rng([config.seed, epoch]).permutation(len(shards))
        shards = [shards[i] for i in order]
    counts = [shard.records for shard in shards]
    if len(shards) >= num_pipelines:
        mine = shards[pipeline_id::num_pipelines]
        per_pipeline = [sum(counts[i::num_pipelines]) for i in range(num_pipelines)]
        record_shard = None
    else:
        mine = shards
        total = sum(counts)
        per_pipeline = [len(range(i, total, num_pipelines)) for i in range(num_pipelines)]
        record_shard = (num_pipelines, pipeline_id)
    if config.training:
        batches = min(count // config.batch_size for count in per_pipeline)
    else:
        batches = -(-per_pipeline[pipeline_id] // config.batch_size)
    files = tuple(storage.join(data_dir, shard.file) for shard in mine)
    return EpochPlan(files=files, record_shard=record_shard, windows=per_pipeline[pipeline_id], batches=batches)


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


def shuffled_batches(records: tf.data.Dataset, config: ReaderConfig, epoch: int, context_length: int,
                     skip_batches: int = 0) -> tf.data.Dataset:
    """string records -> parsed training batches; every chunk of ~shuffle_buffer records is
    parsed as one tensor, permuted whole (seeded by (seed, epoch, chunk)) and cut into batches.

    Per-chunk instead of per-record tf.data work, and one big vectorised parse. A chunk holds
    a whole number of batches, so only the epoch's last partial batch is dropped, as
    `batch(drop_remainder=True)` would. Resuming skips whole chunks before parsing.
    """
    batch = config.batch_size
    batches_per_chunk = max(1, -(-config.shuffle_buffer // batch))
    seed = tf.constant(config.seed * 1_000_003 + epoch, tf.int64)

    def parse_and_permute(index, serialized):
        parsed = parse_batch(serialized, context_length, config.objective)
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.size(serialized)), seed=tf.stack([seed, index]))
        full = tf.size(serialized) // batch * batch
        return tuple(tf.reshape(tf.gather(part, order[:full]), tf.concat([[-1, batch], tf.shape(part)[1:]], 0))
                     for part in parsed)

    chunks = records.batch(batches_per_chunk * batch).enumerate().skip(skip_batches // batches_per_chunk)
    parsed = chunks.map(parse_and_permute, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return parsed.flat_map(lambda *parts: tf.data.Dataset.from_tensor_slices(parts)).skip(skip_batches % batches_per_chunk)


def make_dataset(
    data_dir: str,
    split: str,
    config: ReaderConfig,
    *,
    input_context: tf.distribute.InputContext | None = None,
    epoch: int = 0,
    skip_batches: int = 0,
    manifest: Manifest | None = None,
) -> tf.data.Dataset:
    """Batches of one epoch of `split` for one input pipeline (see the module docstring).

    skip_batches: batches of this epoch already consumed (exact resume).
    Yields (context int32[b, C], targets int32[b] | int32[b, C], weights float32 like targets).
    """
    manifest = manifest or load_manifest(data_dir)
    if config.check_sizes:
        check_shard_sizes(data_dir, manifest, split)
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    plan = epoch_plan(data_dir, manifest, split, config, epoch, num_pipelines, pipeline_id)
    if plan.record_shard is not None:
        log.warning(
            "%s has %d shard(s) for %d input pipelines: sharding by record (every pipeline reads every file)",
            split, len(plan.files), num_pipelines,
        )
    files = tf.data.Dataset.from_tensor_slices(list(plan.files))
    if config.cycle_length > 1:
        records = files.interleave(
            tf.data.TFRecordDataset, cycle_length=min(config.cycle_length, len(plan.files)), block_length=1,
        )
    else:
        # One file after another: no per-record interleave work. Every shard is already a
        # sample of the whole corpus (ingest spreads windows by hash), so the chunk shuffle
        # below mixes as well as an interleave would.
        records = tf.data.TFRecordDataset(files, buffer_size=1 << 20)
    if plan.record_shard is not None:
        records = records.shard(*plan.record_shard)
    if config.training:
        parsed = shuffled_batches(records, config, epoch, manifest.context_length, skip_batches)
    else:
        parsed = records.batch(config.batch_size).skip(skip_batches).map(
            lambda serialized: parse_batch(serialized, manifest.context_length, config.objective),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
    parsed = parsed.take(plan.batches - skip_batches)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return parsed.with_options(options).prefetch(tf.data.AUTOTUNE)
