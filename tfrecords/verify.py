"""verify and inspect: check a DATA_DIR's shards against its manifest; decode a few windows.

A TFRecord file cut exactly at a record boundary reads back as a clean, shorter file, so
CRCs alone cannot catch it: every shard is also checked for its size, record count and
sha256 against `dataset.json`; a span shard also for its windows (their sum and the
windows-per-record histogram the reader plans epochs from). Both layouts are handled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextword import storage
from tfrecords.manifest import FEATURE_NAME, PAD_FEATURE, SPLITS, Manifest, load_manifest, load_vocabulary
from tfrecords.spans import frame_record, histogram, windows_in_records


@dataclass(frozen=True)
class ShardReport:
    split: str
    file: str
    ok: bool
    problems: tuple[str, ...]
    records: int


def _read_records(path: str, manifest: Manifest) -> tuple[int, np.ndarray, str | None]:
    """(records read, int64[records read] windows of each, error) — reading checks every record's
    CRCs; parsing checks the Example against the layout. The error is ours, not TensorFlow's text."""
    import tensorflow as tf

    spans = manifest.layout == "spans"
    if spans:
        feature = {PAD_FEATURE: tf.io.FixedLenFeature([1], tf.int64), FEATURE_NAME: tf.io.RaggedFeature(tf.int64)}
    else:
        feature = {FEATURE_NAME: tf.io.FixedLenFeature([manifest.record_length], tf.int64)}
    counts = [np.zeros(0, np.int64)]
    try:
        for batch in tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(8192):
            parsed = tf.io.parse_example(batch, feature)
            if spans:
                counts.append(windows_in_records(parsed[PAD_FEATURE][:, 0].numpy(), parsed[FEATURE_NAME].row_lengths().numpy(),
                                                 manifest.context_length, manifest.stride))
            else:
                counts.append(np.ones(int(batch.shape[0]), np.int64))
    except tf.errors.DataLossError:
        return _good(counts), np.concatenate(counts), "its checksum does not match (bytes changed, or the file is cut inside a record)"
    except tf.errors.InvalidArgumentError:
        return _good(counts), np.concatenate(counts), f"it is not a {manifest.layout!r} record of this dataset"
    return _good(counts), np.concatenate(counts), None


def _good(counts: list[np.ndarray]) -> int:
    return sum(len(part) for part in counts)


def _window_problems(shard, record_windows: np.ndarray, manifest: Manifest) -> list[str]:
    """Span shards: every record holds 1..windows_per_record windows, and their sum and
    histogram match the manifest (the reader's epoch plan counts windows from the histogram)."""
    if manifest.layout != "spans":
        return []
    problems = []
    outside = np.flatnonzero((record_windows < 1) | (record_windows > manifest.windows_per_record))
    if len(outside):
        problems.append(f"record {int(outside[0])} holds {int(record_windows[outside[0]])} windows, expected "
                        f"1 to {manifest.windows_per_record}")
    if int(record_windows.sum()) != shard.windows:
        problems.append(f"{int(record_windows.sum())} windows, the manifest says {shard.windows}")
    elif histogram(record_windows) != tuple(shard.record_windows):
        problems.append("windows per record differ from the manifest's record_windows")
    return problems


def verify_shard(data_dir: str, split: str, shard, manifest: Manifest) -> ShardReport:
    path = storage.join(data_dir, shard.file)
    if not storage.exists(path):
        return ShardReport(split, shard.file, False, ("missing",), 0)
    problems = []
    size = storage.size(path)
    if size != shard.bytes:
        problems.append(f"{size} bytes, the manifest says {shard.bytes}")
    records, record_windows, error = _read_records(path, manifest)
    if error is not None:
        problems.append(f"damaged record after {records} good ones: {error}")
    elif records != shard.records:
        problems.append(f"{records} records, the manifest says {shard.records}")
    else:
        problems += _window_problems(shard, record_windows, manifest)
    digest, _ = storage.sha256_of(path)
    if digest != shard.sha256:
        problems.append("sha256 differs from the manifest")
    return ShardReport(split, shard.file, not problems, tuple(problems), records)


def verify_dataset(data_dir: str, on_shard=None) -> tuple[Manifest, list[ShardReport]]:
    manifest = load_manifest(data_dir)
    load_vocabulary(data_dir, manifest)  # raises on a vocabulary that does not match its sha256
    reports = []
    for split in SPLITS:
        for shard in manifest.splits[split].shards if split in manifest.splits else ():
            report = verify_shard(data_dir, split, shard, manifest)
            reports.append(report)
            if on_shard is not None:
                on_shard(report)
    return manifest, reports


def sample_windows(data_dir: str, manifest: Manifest, count: int = 5, split: str = "train") -> list[tuple[list[str], str]]:
    """The first `count` windows of a split's first shard as (context words without padding, target),
    in either layout (span records are framed into their windows)."""
    vocabulary = load_vocabulary(data_dir, manifest)
    shards = manifest.split(split).shards
    if not shards or count < 1:
        return []
    rows = _first_windows(storage.join(data_dir, shards[0].file), manifest, count)
    return [([vocabulary[token] for token in row[:-1] if token != manifest.pad_id], vocabulary[row[-1]]) for row in rows]


def _first_windows(path: str, manifest: Manifest, count: int) -> list[list[int]]:
    """int ids of the first `count` windows of a shard, [context ids..., target] each."""
    import tensorflow as tf

    rows: list[list[int]] = []
    for record in tf.data.TFRecordDataset(path).take(count):  # a record holds at least one window
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        tokens = list(feature[FEATURE_NAME].int64_list.value)
        if manifest.layout == "spans":
            pad = feature[PAD_FEATURE].int64_list.value[0]
            rows += frame_record(pad, np.array(tokens), manifest.context_length, manifest.stride).tolist()
        else:
            rows.append(tokens)
        if len(rows) >= count:
            break
    return rows[:count]
