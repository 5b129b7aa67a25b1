"""The README's few lines of plain tf.data read span records into exactly the windows ingest wrote."""

import collections
import os

import tensorflow as tf

from conftest import dataset_windows


def plain_tf_data_windows(data_dir: str, context_length: int, stride: int) -> tf.data.Dataset:
    # --- as in README.md, "Artifact formats" ---
    def windows(record):
        f = tf.io.parse_single_example(record, {"pad": tf.io.FixedLenFeature([1], tf.int64),
                                                "tokens": tf.io.VarLenFeature(tf.int64)})
        span = tf.concat([tf.zeros(f["pad"], tf.int64), tf.sparse.to_dense(f["tokens"])], 0)
        return tf.data.Dataset.from_tensor_slices(tf.signal.frame(span, context_length + 1, stride))

    files = tf.io.gfile.glob(os.path.join(data_dir, "train-*.tfrecord"))
    return (tf.data.TFRecordDataset(files).flat_map(windows).shuffle(100_000).batch(1024)
            .map(lambda w: (w[:, :-1], w[:, -1])))
    # --- end ---


def test_plain_tf_data_reads_every_window_of_a_span_dataset(tiny_dataset):
    from nextword.tfrecords.manifest import load_manifest

    manifest = load_manifest(tiny_dataset)
    assert manifest.layout == "spans"
    read = collections.Counter()
    for context, targets in plain_tf_data_windows(tiny_dataset, manifest.context_length, manifest.stride):
        read.update(tuple(row) + (target,) for row, target in zip(context.numpy().tolist(), targets.numpy().tolist()))
    assert read == collections.Counter(map(tuple, dataset_windows(tiny_dataset, "train")))
    assert sum(read.values()) == manifest.splits["train"].windows
