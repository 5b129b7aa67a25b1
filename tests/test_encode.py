"""The numpy TFRecord encoder writes exactly what protobuf + tf.io.TFRecordWriter write."""

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import encode
from tfrecords.encode import crc32c, encode_windows


def reference_frames(rows: np.ndarray, path) -> bytes:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            example = tf.train.Example(features=tf.train.Features(
                feature={"tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))}))
            writer.write(example.SerializeToString())
    return path.read_bytes()


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


@pytest.mark.parametrize("largest", [1, 127, 128, 500, 16383, 16384, 20000, 300_000])
def test_byte_identical_to_protobuf(tmp_path, largest):
    rng = np.random.default_rng(largest)
    rows = rng.integers(0, largest + 1, size=(200, 45))
    rows[:40, :30] = 0  # pre-padded windows
    rows[-1, :] = largest  # the widest varints
    frames, sizes = encode_windows(rows)
    assert frames == reference_frames(rows, tmp_path / "ref.tfrecord")
    assert sizes.sum() == len(frames)


def test_per_byte_crc_fallback_matches(tmp_path, monkeypatch):
    monkeypatch.setattr(encode, "_MAX_TABLE_ENTRIES", 0)  # force the large-vocabulary path
    rows = np.random.default_rng(7).integers(0, 70_000, size=(50, 9))
    assert encode_windows(rows)[0] == reference_frames(rows, tmp_path / "ref.tfrecord")


def test_context_lengths_and_empty_block(tmp_path):
    for width in (2, 9, 129):
        rows = np.random.default_rng(width).integers(0, 1000, size=(20, width))
        assert encode_windows(rows)[0] == reference_frames(rows, tmp_path / f"{width}.tfrecord")
    frames, sizes = encode_windows(np.zeros((0, 45), dtype=np.int64))
    assert frames == b"" and len(sizes) == 0


def test_negative_ids_refused():
    with pytest.raises(ValueError):
        encode_windows(np.array([[0, -1]]))
