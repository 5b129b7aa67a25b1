"""The numpy TFRecord encoder writes exactly what protobuf + tf.io.TFRecordWriter write."""

import numpy as np
import pytest
import tensorflow as tf

from nextword.tfrecords.encode import StreamEncoder, crc32c, encode_stream_windows, encode_windows


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


def test_overlapping_stream_windows_equal_materialised_windows(tmp_path):
    rng = np.random.default_rng(3)
    stream = rng.integers(0, 40_000, size=5000)
    starts = rng.integers(0, 5000 - 45, size=700)  # any order, overlapping
    frames, sizes = encode_stream_windows(stream, starts, 45)
    windows = np.stack([stream[start:start + 45] for start in starts])
    assert frames == encode_windows(windows)[0] == reference_frames(windows, tmp_path / "ref.tfrecord")
    assert len(sizes) == 700


def test_huge_ids(tmp_path):
    rows = np.random.default_rng(7).integers(0, 2**40, size=(30, 5))
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


@pytest.mark.parametrize("largest_id, longest", [(100, 50), (70_000, 3000)])
def test_span_records_equal_protobuf_byte_for_byte(tmp_path, largest_id, longest):
    """Span records (a "pad" and a variable-length "tokens" feature) are protobuf's deterministic
    bytes, with CRCs TFRecordDataset accepts, short and long (past the tabled CRC powers)."""
    rng = np.random.default_rng(largest_id)
    ids = rng.integers(0, largest_id, 20_000)
    starts = rng.integers(0, 15_000, 200)
    ends = np.minimum(starts + rng.integers(1, longest, 200), len(ids))
    pads = rng.integers(0, 200, 200)
    frames, sizes = StreamEncoder(ids).encode_slices(starts, ends, pads)
    assert int(sizes.sum()) == len(frames)
    path = tmp_path / "spans.tfrecord"
    path.write_bytes(frames)
    records = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    assert len(records) == 200
    for record, start, end, pad in zip(records, starts, ends, pads):
        expected = tf.train.Example(features=tf.train.Features(feature={
            "pad": tf.train.Feature(int64_list=tf.train.Int64List(value=[pad])),
            "tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=ids[start:end])),
        }))
        assert record == expected.SerializeToString(deterministic=True)
