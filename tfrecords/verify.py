"""verify and inspect: check a DATA_DIR's shards against its manifest; decode a few windows.

A TFRecord file cut exactly at a record boundary reads back as a clean, shorter file, so
CRCs alone cannot catch it: every shard is also checked for its size, record count and
sha256 against `dataset.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

from nextword import storage
from tfrecords.manifest import SPLITS, Manifest, load_manifest, load_vocabulary


@dataclass(frozen=True)
class ShardReport:
    split: str
    file: str
    ok: bool
    problems: tuple[str, ...]
    records: int


def _read_records(path: str, record_length: int) -> tuple[int, str | None]:
    """(records read, error) — reading checks every record's CRCs; parsing checks the Example."""
    import tensorflow as tf

    feature = {"tokens": tf.io.FixedLenFeature([record_length], tf.int64)}
    dataset = tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(8192)
    count = 0
    try:
        for batch in dataset:
            tf.io.parse_example(batch, feature)
            count += int(batch.shape[0])
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        return count, error.message.splitlines()[0][:200]
    return count, None


def verify_shard(data_dir: str, split: str, shard, record_length: int) -> ShardReport:
    path = storage.join(data_dir, shard.file)
    if not storage.exists(path):
        return ShardReport(split, shard.file, False, ("missing",), 0)
    problems = []
    size = storage.size(path)
    if size != shard.bytes:
        problems.append(f"{size} bytes, the manifest says {shard.bytes}")
    records, error = _read_records(path, record_length)
    if error is not None:
        problems.append(f"damaged record after {records} good ones: {error}")
    elif records != shard.records:
        problems.append(f"{records} records, the manifest says {shard.records}")
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
            report = verify_shard(data_dir, split, shard, manifest.record_length)
            reports.append(report)
            if on_shard is not None:
                on_shard(report)
    return manifest, reports


def sample_windows(data_dir: str, manifest: Manifest, count: int = 5, split: str = "train") -> list[tuple[list[str], str]]:
    """The first `count` windows of a split's first shard as (context words without padding, target)."""
    import tensorflow as tf

    vocabulary = load_vocabulary(data_dir, manifest)
    shards = manifest.split(split).shards
    if not shards:
        return []
    feature = {"tokens": tf.io.FixedLenFeature([manifest.record_length], tf.int64)}
    dataset = tf.data.TFRecordDataset(storage.join(data_dir, shards[0].file)).take(count).batch(count)
    samples = []
    for batch in dataset:
        for row in tf.io.parse_example(batch, feature)["tokens"].numpy().tolist():
            context = [vocabulary[token] for token in row[:-1] if token != manifest.pad_id]
            samples.append((context, vocabulary[row[-1]]))
    return samples
