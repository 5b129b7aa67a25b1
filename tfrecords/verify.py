"""verify and inspect: check a DATA_DIR's shards against its manifest; decode a few windows.

A TFRecord file cut exactly at a record boundary reads back as a clean, shorter file, so
CRCs alone cannot catch it: every shard is also checked for its size, record count and
sha256 against `dataset.json`; a span shard ("packed", "spans") also for its windows (their sum and
the windows-per-span histogram the reader plans epochs from). Every layout is handled.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from nextword import storage
from nextword.errors import ArtifactError
from nextword.tfrecords.encode import crc32c, mask_crc
from nextword.tfrecords.manifest import (FEATURE_NAME, LENGTHS_FEATURE, PAD_FEATURE, SPAN_LAYOUTS, SPLITS, Manifest,
                                        join_pieces, load_manifest, load_vocabulary)
from nextword.tfrecords.spans import frame_record, histogram, windows_in_records


@dataclass(frozen=True)
class ShardReport:
    split: str
    file: str
    ok: bool
    problems: tuple[str, ...]
    records: int


READ_BATCH = 8192  # records parsed per call; damage is then located record by record


def _read_records(path: str, manifest: Manifest) -> tuple[int, tuple[np.ndarray, np.ndarray], str | None]:
    """(good records before any damage (exact), (int64[good] windows of each record, int64[their
    spans] windows of each span), problem or None). A record holds one span but in "packed".

    Reading checks every record's CRCs, parsing checks the Example against the layout. Records
    are read and parsed in batches; when a batch fails, the records after the last whole batch
    are read again one by one, so the count is exact. The problem is ours, never TensorFlow's text."""
    import tensorflow as tf

    counts, lengths = [(np.zeros(0, np.int64), np.zeros(0, np.int64))], 0
    try:
        for batch in tf.data.TFRecordDataset(path, buffer_size=8 << 20).batch(READ_BATCH):
            parsed, windows = _parse(batch, manifest)
            counts.append(windows)
            lengths += int(tf.reduce_sum(tf.strings.length(batch[:parsed])).numpy())
            if parsed < batch.shape[0]:
                return _foreign(path, counts, lengths, manifest)
    except tf.errors.DataLossError:
        read = _good(counts)
        records = []
        try:  # one record at a time from the last whole batch up to the damage (< READ_BATCH of them)
            for record in tf.data.TFRecordDataset(path).skip(read):
                records.append(record.numpy())
        except tf.errors.DataLossError:
            pass
        if records:
            parsed, windows = _parse(tf.constant(records), manifest)
            counts.append(windows)
            lengths += sum(len(record) for record in records[:parsed])
            if parsed < len(records):
                return _foreign(path, counts, lengths, manifest)
        return _damaged(path, counts, lengths)
    if 16 * _good(counts) + lengths < storage.size(path):  # TensorFlow reads a cut header as the end
        return _damaged(path, counts, lengths)
    return _good(counts), _joined(counts), None


def _joined(counts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([records for records, _ in counts]), np.concatenate([spans for _, spans in counts])


def _damaged(path: str, counts: list, lengths: int) -> tuple[int, tuple[np.ndarray, np.ndarray], str]:
    good = _good(counts)
    offset = 16 * good + lengths  # each record: 8-byte length, 4-byte CRC, data, 4-byte CRC
    return good, _joined(counts), (f"damaged record {good + 1:,} at byte {offset:,} "
                                   f"(the {good:,} before it are good): {describe_damage(path, offset)}")


def _parse(batch, manifest: Manifest) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
    """(how many leading records of string[n] parse as this layout's Example, (int64[that many]
    windows of each, int64[their spans] windows of each span)): a failing batch is bisected to its
    first foreign record. A packed record whose lengths do not add up to its ids, or whose pad
    and lengths differ in count, is foreign too."""
    import tensorflow as tf

    if manifest.layout == "packed":
        feature = {name: tf.io.RaggedFeature(tf.int64) for name in (LENGTHS_FEATURE, PAD_FEATURE, FEATURE_NAME)}
    elif manifest.layout == "spans":
        feature = {PAD_FEATURE: tf.io.FixedLenFeature([1], tf.int64), FEATURE_NAME: tf.io.RaggedFeature(tf.int64)}
    else:
        feature = {FEATURE_NAME: tf.io.FixedLenFeature([manifest.record_length], tf.int64)}

    def windows_of(records) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            parsed = tf.io.parse_example(records, feature)
        except tf.errors.InvalidArgumentError:
            return None
        if manifest.layout not in SPAN_LAYOUTS:
            ones = np.ones(int(records.shape[0]), np.int64)
            return ones, ones
        if manifest.layout == "spans":
            windows = windows_in_records(parsed[PAD_FEATURE][:, 0].numpy(), parsed[FEATURE_NAME].row_lengths().numpy(),
                                         manifest.context_length, manifest.stride)
            return windows, windows
        lengths, pad, tokens = (parsed[name] for name in (LENGTHS_FEATURE, PAD_FEATURE, FEATURE_NAME))
        spans = lengths.row_lengths().numpy()
        if (np.any(spans < 1) or np.any(pad.row_lengths().numpy() != spans) or np.any(lengths.values.numpy() < 0)
                or np.any(tf.reduce_sum(lengths, axis=1).numpy() != tokens.row_lengths().numpy())):
            return None
        windows = windows_in_records(pad.values.numpy(), lengths.values.numpy(), manifest.context_length, manifest.stride)
        bounds = np.concatenate([[0], np.cumsum(spans)])
        sums = np.concatenate([[0], np.cumsum(windows)])
        return sums[bounds[1:]] - sums[bounds[:-1]], windows

    total = int(batch.shape[0])
    windows = windows_of(batch)
    if windows is not None:
        return total, windows
    low, high = 0, total - 1  # the longest parsable prefix has low..high records
    while low < high:
        middle = (low + high + 1) // 2
        if windows_of(batch[:middle]) is None:
            high = middle - 1
        else:
            low = middle
    return low, windows_of(batch[:low]) if low else (np.zeros(0, np.int64), np.zeros(0, np.int64))


def _foreign(path: str, counts: list, lengths: int, manifest: Manifest) -> tuple[int, tuple[np.ndarray, np.ndarray], str]:
    good = _good(counts)
    return good, _joined(counts), (f"record {good + 1:,} at byte {16 * good + lengths:,} is not a "
                                   f"{manifest.layout!r} record of this dataset (the {good:,} before it are good)")


def _good(counts: list) -> int:
    return sum(len(records) for records, _ in counts)


def describe_damage(path: str, offset: int) -> str:
    """What is wrong with the TFRecord framing of the record at byte `offset`: a cut file or
    changed bytes (the CRC32C of the length or of the data does not match)."""
    size = storage.size(path)
    with storage.open_file(path, "rb") as handle:
        handle.seek(offset)
        header = handle.read(12)
        if len(header) < 12:
            return f"the file is cut inside its 12-byte header (the file ends at byte {size:,})"
        (length,) = struct.unpack("<Q", header[:8])
        if _masked_crc(header[:8]) != struct.unpack("<I", header[8:])[0]:
            return f"its length header fails its CRC (bytes changed between byte {offset:,} and {offset + 12:,})"
        if offset + 16 + length > size:
            return f"the file is cut inside it (it needs bytes up to {offset + 16 + length:,}, the file ends at byte {size:,})"
        data, stored = handle.read(length), handle.read(4)
    if _masked_crc(data) != struct.unpack("<I", stored)[0]:
        return f"its data fails its CRC (bytes changed between byte {offset + 12:,} and {offset + 16 + length:,})"
    return "TensorFlow cannot read it back although its CRCs match"


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data` (the encoder's reference functions; one record only)."""
    return int(mask_crc(crc32c(data)))


def _window_problems(shard, windows: tuple[np.ndarray, np.ndarray], manifest: Manifest) -> list[str]:
    """Span shards: every record holds 1..windows_per_record windows, every span at least one, and
    their sum and the per-span histogram match the manifest (the reader's epoch plan counts
    windows from the histogram)."""
    if manifest.layout not in SPAN_LAYOUTS:
        return []
    record_windows, span_windows = windows
    problems = []
    outside = np.flatnonzero((record_windows < 1) | (record_windows > manifest.windows_per_record))
    if len(outside):
        problems.append(f"record {int(outside[0])} holds {int(record_windows[outside[0]])} windows, expected "
                        f"1 to {manifest.windows_per_record}")
    elif np.any(span_windows < 1):
        problems.append(f"a span holds {int(span_windows.min())} windows, expected at least 1")
    if int(record_windows.sum()) != shard.windows:
        problems.append(f"{int(record_windows.sum())} windows, the manifest says {shard.windows}")
    elif histogram(span_windows) != tuple(shard.record_windows):
        unit = "span" if manifest.layout == "packed" else "record"
        problems.append(f"windows per {unit} differ from the manifest's record_windows")
    return problems


def verify_shard(data_dir: str, split: str, shard, manifest: Manifest) -> ShardReport:
    path = storage.join(data_dir, shard.file)
    if not storage.exists(path):
        return ShardReport(split, shard.file, False, ("missing",), 0)
    problems = []
    size = storage.size(path)
    if size != shard.bytes:
        problems.append(f"{size} bytes, the manifest says {shard.bytes}")
    records, windows, error = _read_records(path, manifest)
    if error is not None:
        problems.append(error)
    elif records != shard.records:
        problems.append(f"{records} records, the manifest says {shard.records}")
    else:
        problems += _window_problems(shard, windows, manifest)
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
    in either layout (span records are framed into their windows). Wordpiece: the context's pieces
    joined into words, the target a piece."""
    vocabulary = load_vocabulary(data_dir, manifest)
    shards = manifest.split(split).shards
    if not shards or count < 1:
        return []
    rows = _first_windows(storage.join(data_dir, shards[0].file), manifest, count)
    samples = [([vocabulary[token] for token in row[:-1] if token != manifest.pad_id], vocabulary[row[-1]]) for row in rows]
    if manifest.tokenizer_choice == "wordpiece":  # pieces -> words; the target stays a piece ("##ing")
        suffix_indicator = manifest.tokenizer.get("suffix_indicator", "##")
        samples = [(join_pieces(context, suffix_indicator), target) for context, target in samples]
    return samples


def _first_windows(path: str, manifest: Manifest, count: int) -> list[list[int]]:
    """int ids of the first `count` windows of a shard, [context ids..., target] each."""
    import tensorflow as tf

    rows: list[list[int]] = []
    try:
        records = [record.numpy() for record in tf.data.TFRecordDataset(path).take(count)]  # >= 1 window each
    except tf.errors.DataLossError:
        raise ArtifactError(f"{path} is damaged: its first records fail their CRC or the file is cut",
                            hint="run `nextword verify DATA_DIR` to see which shards are damaged") from None
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        tokens = np.array(feature[FEATURE_NAME].int64_list.value, dtype=np.int64)
        if manifest.layout in SPAN_LAYOUTS:
            pads = list(feature[PAD_FEATURE].int64_list.value)
            lengths = list(feature[LENGTHS_FEATURE].int64_list.value) if manifest.layout == "packed" else [len(tokens)]
            for pad, span in zip(pads, np.split(tokens, np.cumsum(lengths)[:-1])):
                rows += frame_record(pad, span, manifest.context_length, manifest.stride).tolist()
        else:
            rows.append(tokens.tolist())
        if len(rows) >= count:
            break
    return rows[:count]
