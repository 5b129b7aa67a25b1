"""Window layout: a golden table, counts, strides, document boundaries and shard spreading."""

import numpy as np
import tensorflow as tf

from ingest.windows import WindowPlan, encode_block, is_validation, windows_per_document


def decode(frames: bytes, width: int, tmp_path) -> list[list[int]]:
    path = tmp_path / "block.tfrecord"
    path.write_bytes(frames)
    spec = {"tokens": tf.io.FixedLenFeature([width], tf.int64)}
    return [tf.io.parse_single_example(record, spec)["tokens"].numpy().tolist()
            for record in tf.data.TFRecordDataset(str(path))]


def block_windows(plan, documents, tmp_path, validation=None, first_key=1):
    lengths = np.array([len(doc) for doc in documents])
    flat = np.array([token for doc in documents for token in doc], dtype=np.int32)
    keys = np.arange(first_key, first_key + len(documents), dtype=np.uint64)  # a document's key is its identity
    validation = np.zeros(len(documents), bool) if validation is None else np.array(validation)
    block = encode_block(plan, flat, lengths, keys, validation)
    return {(split, shard): decode(frames, plan.context_length + 1, tmp_path) for split, shard, frames, _ in block.pieces}


def test_golden_windows_one_shard(tmp_path):
    plan = WindowPlan(context_length=3, stride=1, seed=0, shard_counts=(1, 1))
    got = block_windows(plan, [[5, 6, 7, 8, 9], [10], [], [11, 12]], tmp_path)
    assert got == {(0, 0): [
        [0, 0, 5, 6], [0, 5, 6, 7], [5, 6, 7, 8], [6, 7, 8, 9],  # doc 1: targets at 1..4, pre-padded
        [0, 0, 11, 12],  # doc 4; docs of 0 or 1 word give no window, and no window crosses documents
    ]}


def test_stride_and_validation_split(tmp_path):
    plan = WindowPlan(context_length=2, stride=2, seed=0, shard_counts=(1, 1))
    got = block_windows(plan, [[1, 2, 3, 4, 5, 6], [7, 8, 9]], tmp_path, validation=[False, True])
    assert got == {(0, 0): [[0, 1, 2], [2, 3, 4], [4, 5, 6]], (1, 0): [[0, 7, 8]]}


def test_window_counts():
    assert windows_per_document(np.array([0, 1, 2, 5]), 1).tolist() == [0, 0, 1, 4]
    assert windows_per_document(np.array([2, 5, 6]), 2).tolist() == [1, 2, 3]


def test_shards_mix_documents_and_do_not_depend_on_batching(tmp_path):
    plan = WindowPlan(context_length=4, stride=1, seed=3, shard_counts=(4, 1))
    rng = np.random.default_rng(0)
    documents = [rng.integers(2, 50, size=rng.integers(2, 40)).tolist() for _ in range(30)]
    whole = block_windows(plan, documents, tmp_path)
    assert sorted(shard for _, shard in whole) == [0, 1, 2, 3]
    sizes = [len(rows) for rows in whole.values()]
    assert min(sizes) > 0.5 * max(sizes)  # spread evenly, not by runs of documents
    halves = [block_windows(plan, documents[:13], tmp_path), block_windows(plan, documents[13:], tmp_path, first_key=14)]
    for key, rows in whole.items():
        assert rows == halves[0].get(key, []) + halves[1].get(key, [])


def test_validation_is_stable_and_about_the_fraction():
    keys = np.random.default_rng(1).integers(0, np.iinfo(np.uint64).max, size=20000, dtype=np.uint64, endpoint=True)
    chosen = is_validation(keys, 0.1)
    assert 0.09 < chosen.mean() < 0.11
    assert (chosen == is_validation(keys, 0.1)).all()
    assert not is_validation(keys, 0.0).any()
