"""The README's few lines of plain tf.data read span records ("packed", and "spans" of format 2)
into exactly the windows ingest wrote."""

import collections
import os

import pytest
import tensorflow as tf

from conftest import dataset_windows


def plain_tf_data_windows(data_dir: str, context_length: int, stride: int) -> tf.data.Dataset:
    C, STRIDE = context_length, stride
    # --- as in README.md, "Artifact formats" ---
    def windows(record):
        f = tf.io.parse_single_example(record, {name: tf.io.VarLenFeature(tf.int64) for name in ("lengths", "pad", "tokens")})
        lengths, pad, tokens = (tf.sparse.to_dense(f[name]) for name in ("lengths", "pad", "tokens"))
        lengths = tf.concat([lengths, tf.size(tokens, tf.int64)[None]], 0)[:tf.size(pad)]  # "spans": no lengths, one span
        spans = tf.RaggedTensor.from_row_lengths(tokens, lengths)  # a row per span: windows never cross them
        return tf.data.Dataset.from_tensor_slices((pad, spans)).flat_map(lambda pad, span: tf.data.Dataset.from_tensor_slices(
            tf.signal.frame(tf.concat([tf.zeros([pad], tf.int64), span], 0), C + 1, STRIDE)))

    files = tf.io.gfile.glob(os.path.join(data_dir, "train-*.tfrecord"))
    return (tf.data.TFRecordDataset(files).flat_map(windows).shuffle(100_000).batch(1024)
            .map(lambda w: (w[:, :-1], w[:, -1])))
    # --- end ---


@pytest.mark.parametrize("layout", ["packed", "spans"])
def test_plain_tf_data_reads_every_window_of_a_span_dataset(layout, tiny_dataset, tiny_spans_dataset):
    from nextword.tfrecords.manifest import load_manifest

    data_dir = tiny_dataset if layout == "packed" else tiny_spans_dataset
    manifest = load_manifest(data_dir)
    assert manifest.layout == layout
    if layout == "packed":  # records hold several documents' spans: what the recipe must keep apart
        shards = manifest.splits["train"].shards
        assert manifest.splits["train"].records < sum(count for shard in shards for _, count in shard.record_windows)
    read = collections.Counter()
    for context, targets in plain_tf_data_windows(data_dir, manifest.context_length, manifest.stride):
        read.update(tuple(row) + (target,) for row, target in zip(context.numpy().tolist(), targets.numpy().tolist()))
    assert read == collections.Counter(map(tuple, dataset_windows(data_dir, "train")))
    assert sum(read.values()) == manifest.splits["train"].windows
