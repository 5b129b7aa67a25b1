"""Window layout: golden tables for both layouts, counts, strides, document boundaries, shard
spreading and the seeded order inside a shard."""

import numpy as np

from conftest import decode_records, expand_windows
from nextword.ingest.windows import RECORD_INFO, WindowPlan, encode_block, is_validation, order_shard, windows_per_document


def block_pieces(plan, documents, validation=None, first_key=1):
    lengths = np.array([len(doc) for doc in documents])
    flat = np.array([token for doc in documents for token in doc], dtype=np.int32)
    keys = np.arange(first_key, first_key + len(documents), dtype=np.uint64)  # a document's key is its identity
    validation = np.zeros(len(documents), bool) if validation is None else np.array(validation)
    return encode_block(plan, flat, lengths, keys, validation).pieces


def block_records(plan, documents, validation=None, first_key=1):
    return {(split, shard): decode_records(frames, plan.layout)
            for split, shard, frames, _ in block_pieces(plan, documents, validation, first_key)}


def block_windows(plan, documents, validation=None, first_key=1):
    return {key: expand_windows(records, plan.context_length, plan.stride)
            for key, records in block_records(plan, documents, validation, first_key).items()}


def test_golden_windows_one_shard():
    plan = WindowPlan(context_length=3, stride=1, seed=0, shard_counts=(1, 1), layout="windows")
    got = block_windows(plan, [[5, 6, 7, 8, 9], [10], [], [11, 12]])
    assert got == {(0, 0): [
        [0, 0, 5, 6], [0, 5, 6, 7], [5, 6, 7, 8], [6, 7, 8, 9],  # doc 1: targets at 1..4, pre-padded
        [0, 0, 11, 12],  # doc 4; docs of 0 or 1 word give no window, and no window crosses documents
    ]}


def test_golden_span_records_one_shard():
    plan = WindowPlan(context_length=3, stride=1, seed=0, shard_counts=(1, 1), layout="spans", windows_per_record=3)
    pieces = block_pieces(plan, [[5, 6, 7, 8, 9], [10], [], [11, 12]])
    assert decode_records(pieces[0][2], "spans") == [
        (2, [5, 6, 7, 8]),  # doc 1, windows 1-3: two zeros to pre-pad, then the ids they cover, once
        (0, [6, 7, 8, 9]),  # doc 1, window 4: a record never holds more than windows_per_record windows
        (2, [11, 12]),  # doc 4; docs of 0 or 1 word give no record, and no record crosses documents
    ]
    assert pieces[0][3]["windows"].tolist() == [3, 1, 1]
    assert expand_windows(decode_records(pieces[0][2], "spans"), 3, 1) == [
        [0, 0, 5, 6], [0, 5, 6, 7], [5, 6, 7, 8], [6, 7, 8, 9], [0, 0, 11, 12]]


def test_stride_and_validation_split():
    for layout in ("windows", "spans"):
        plan = WindowPlan(context_length=2, stride=2, seed=0, shard_counts=(1, 1), layout=layout, windows_per_record=2)
        got = block_windows(plan, [[1, 2, 3, 4, 5, 6], [7, 8, 9]], validation=[False, True])
        assert got == {(0, 0): [[0, 1, 2], [2, 3, 4], [4, 5, 6]], (1, 0): [[0, 7, 8]]}, layout


def test_window_counts():
    assert windows_per_document(np.array([0, 1, 2, 5]), 1).tolist() == [0, 0, 1, 4]
    assert windows_per_document(np.array([2, 5, 6]), 2).tolist() == [1, 2, 3]


def test_shards_mix_documents_and_do_not_depend_on_batching():
    for layout in ("windows", "spans"):
        plan = WindowPlan(context_length=4, stride=1, seed=3, shard_counts=(4, 1), layout=layout, windows_per_record=2)
        rng = np.random.default_rng(0)
        documents = [rng.integers(2, 50, size=rng.integers(2, 40)).tolist() for _ in range(30)]
        whole = block_records(plan, documents)
        assert sorted(shard for _, shard in whole) == [0, 1, 2, 3]
        sizes = [len(rows) for rows in whole.values()]
        assert min(sizes) > 0.5 * max(sizes)  # spread evenly, not by runs of documents
        halves = [block_records(plan, documents[:13]), block_records(plan, documents[13:], first_key=14)]
        for key, rows in whole.items():
            assert rows == halves[0].get(key, []) + halves[1].get(key, [])


def test_a_shard_is_ordered_by_its_seeded_keys_whatever_the_arrival_order():
    plan = WindowPlan(context_length=4, stride=1, seed=3, shard_counts=(1, 1), layout="spans", windows_per_record=2)
    rng = np.random.default_rng(0)
    documents = [rng.integers(2, 50, size=rng.integers(2, 40)).tolist() for _ in range(40)]
    (_, _, frames, info), = block_pieces(plan, documents)
    ordered, ordered_info = order_shard(frames, info)
    records = decode_records(frames, "spans")
    assert sorted(map(str, decode_records(ordered, "spans"))) == sorted(map(str, records))  # the same records
    assert np.all(np.diff(ordered_info["order"].astype(np.float64)) >= 0)
    position_of = {str(record): index for index, record in enumerate(records)}
    arrival = [position_of[str(record)] for record in decode_records(ordered, "spans")]
    # document order is gone: the rank correlation with arrival order is near zero
    assert abs(np.corrcoef(arrival, np.arange(len(arrival)))[0, 1]) < 0.3
    # pieces that arrive in another split of batches give the same shard bytes
    halves = [block_pieces(plan, documents[:17]), block_pieces(plan, documents[17:], first_key=18)]
    joined = halves[0][0][2] + halves[1][0][2]
    joined_info = np.concatenate([halves[0][0][3], halves[1][0][3]]).astype(RECORD_INFO)
    assert order_shard(joined, joined_info)[0] == ordered


def test_validation_is_stable_and_about_the_fraction():
    keys = np.random.default_rng(1).integers(0, np.iinfo(np.uint64).max, size=20000, dtype=np.uint64, endpoint=True)
    chosen = is_validation(keys, 0.1)
    assert 0.09 < chosen.mean() < 0.11
    assert (chosen == is_validation(keys, 0.1)).all()
    assert not is_validation(keys, 0.0).any()


def test_document_keys_of_a_batch_are_each_document_s_key():
    from nextword.ingest.windows import document_key, document_keys

    texts = [b"", b"one two", "d\u00e9j\u00e0 vu".encode(), b"x" * 5000, b"one two"]
    keys = document_keys(texts)
    assert keys.dtype == np.uint64 and keys.tolist() == [document_key(text) for text in texts]
    assert document_keys([]).shape == (0,)
