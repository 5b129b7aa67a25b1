"""The reader on "spans" datasets: every window once ("last"), every token once ("all"),
exact epoch plans, exact resume, the same stream for any batch split, and mixing.

Datasets come from tests/_span_data.py, a reference writer independent of the ingest."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from _span_data import decode_position, document_windows, position_documents, span_records, write_span_data_dir
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset
from nextword.tfrecords.spans import frame_record

CONTEXT = 6
MAX_LENGTH = 40  # position_documents: id = 2 + document * MAX_LENGTH + position


def write_positions(path, stride: int, windows_per_record: int = 8) -> str:
    splits = {"train": position_documents(40, 2, MAX_LENGTH, seed=1), "val": position_documents(9, 2, MAX_LENGTH, seed=2)}
    return write_span_data_dir(str(path), splits, vocab_size=2 + 40 * MAX_LENGTH, context_length=CONTEXT,
                               stride=stride, windows_per_record=windows_per_record)


@pytest.fixture(scope="module")
def spans_dir(tmp_path_factory):
    return write_positions(tmp_path_factory.mktemp("spans"), stride=1)


@pytest.fixture(scope="module")
def stride2_dir(tmp_path_factory):
    return write_positions(tmp_path_factory.mktemp("spans2"), stride=2, windows_per_record=5)


def train_documents():
    return position_documents(40, 2, MAX_LENGTH, seed=1)


def windows(dataset) -> list[tuple]:
    """Every window read, as (context ids..., last target), in order."""
    out = []
    for context, targets, _ in dataset:
        last = targets.numpy() if targets.shape.rank == 1 else targets.numpy()[:, -1]
        out += [tuple(row) + (target,) for row, target in zip(context.numpy().tolist(), last.tolist())]
    return out


def batches(dataset) -> list[tuple]:
    """Every batch as nested tuples of (context, targets, weights), for exact comparison."""
    return [tuple(tuple(map(tuple, np.atleast_2d(part.numpy()).tolist())) for part in batch) for batch in dataset]


def weighted_positions(dataset) -> Counter:
    """(document, position) of every target with weight 1 (objective "all")."""
    found = Counter()
    for _, targets, weights in dataset:
        for token in targets.numpy()[weights.numpy() > 0].tolist():
            found[decode_position(token, MAX_LENGTH)] += 1
    return found


def test_reference_records_frame_to_the_documents_windows():
    for stride, per_record in ((1, 8), (2, 5), (3, 1)):
        for document in train_documents()[:10]:
            framed = [tuple(w) for pad, tokens in span_records(document, CONTEXT, stride, per_record)
                      for w in frame_record(pad, np.array(tokens), CONTEXT, stride).tolist()]
            assert framed == document_windows(document, CONTEXT, stride)


def test_last_shapes_dtypes(spans_dir):
    context, targets, weights = next(iter(make_dataset(spans_dir, "train", ReaderConfig(batch_size=8, objective="last"))))
    assert context.dtype == tf.int32 and context.shape == (8, CONTEXT)
    assert targets.dtype == tf.int32 and targets.shape == (8,)
    assert weights.dtype == tf.float32 and weights.numpy().tolist() == [1.0] * 8
    context, targets, weights = next(iter(make_dataset(spans_dir, "train", ReaderConfig(batch_size=8, objective="all"))))
    assert targets.dtype == tf.int32 and targets.shape == (8, CONTEXT) and weights.shape == (8, CONTEXT)
    np.testing.assert_array_equal(context.numpy()[:, 1:], targets.numpy()[:, :-1])  # shifted by one word


@pytest.mark.parametrize("training", [True, False])
def test_last_epoch_reads_every_window_once(spans_dir, training):
    expected = Counter(w for d in train_documents() for w in document_windows(d, CONTEXT, 1))
    read = windows(make_dataset(spans_dir, "train", ReaderConfig(batch_size=1, objective="last", training=training,
                                                                 shuffle_buffer=32, seed=4)))
    assert Counter(read) == expected


def test_evaluation_keeps_record_order_and_the_last_partial_batch(spans_dir):
    config = ReaderConfig(batch_size=7, objective="last", training=False)
    sizes = [int(targets.shape[0]) for _, targets, _ in make_dataset(spans_dir, "val", config)]
    total = load_manifest(spans_dir).splits["val"].windows
    assert sum(sizes) == total and sizes[:-1] == [7] * (len(sizes) - 1) and sizes[-1] == total - 7 * (len(sizes) - 1)
    one_by_one = windows(make_dataset(spans_dir, "val", ReaderConfig(batch_size=1, objective="last", training=False)))
    assert one_by_one == windows(make_dataset(spans_dir, "val", config))


def test_all_epoch_weights_every_token_once(spans_dir):
    expected = Counter({(doc, position): 1 for doc, document in enumerate(train_documents())
                        for position in range(1, len(document))})
    seen = []
    for epoch in (0, 1):
        config = ReaderConfig(batch_size=1, objective="all", seed=3, shuffle_buffer=32)
        assert weighted_positions(make_dataset(spans_dir, "train", config, epoch=epoch)) == expected
        seen.append(Counter(windows(make_dataset(spans_dir, "train", config, epoch=epoch))))
    assert seen[0] != seen[1]  # different offsets select different windows
    assert sum(seen[0].values()) < load_manifest(spans_dir).splits["train"].windows / 3  # non-overlapping


def test_all_reads_a_document_that_fits_one_window_as_that_window_alone(tmp_path):
    """Documents of 2..C+1 words (W <= C windows): every epoch, whatever its offset, reads one window
    per document, the one ending on its last word, with all of its targets weighted. Before, most
    offsets also read an earlier window of the same document (two windows for one verse)."""
    short = position_documents(60, 2, CONTEXT + 1, seed=5)
    data_dir = write_span_data_dir(str(tmp_path / "short"), {"train": short, "val": short[:3]}, vocab_size=2 + 60 * (CONTEXT + 1),
                                   context_length=CONTEXT, windows_per_record=8)
    config = ReaderConfig(batch_size=1, objective="all", seed=3, shuffle_buffer=32)
    expected = Counter(document_windows(document, CONTEXT, 1)[-1] for document in short)
    for epoch in range(CONTEXT):  # every offset of the period
        dataset = make_dataset(data_dir, "train", config, epoch=epoch)
        assert Counter(windows(dataset)) == expected, f"epoch {epoch}"
        weighted = Counter(token for _, targets, weights in dataset for token in targets.numpy()[weights.numpy() > 0])
        assert weighted == Counter(token for document in short for token in document[1:])  # ids are unique
        assert epoch_plan(data_dir, load_manifest(data_dir), "train", config, epoch=epoch).windows == len(short)


def test_all_with_stride_2_weights_each_covered_token_once(stride2_dir):
    config = ReaderConfig(batch_size=1, objective="all", seed=1, shuffle_buffer=16)
    for epoch in (0, 1, 2):
        found = weighted_positions(make_dataset(stride2_dir, "train", config, epoch=epoch))
        assert max(found.values()) == 1
        for doc, document in enumerate(train_documents()):
            last_target = (len(document) - 2) // 2 * 2 + 1  # windows' targets at 1, 3, 5, ...
            positions = {position for (d, position) in found if d == doc}
            assert set(range(1, last_target + 1)) <= positions <= set(range(0, last_target + 1))


@pytest.mark.parametrize("objective", ["last", "all"])
def test_epoch_plan_counts_the_windows_read(spans_dir, objective):
    manifest = load_manifest(spans_dir)
    for split, pipelines in (("train", 1), ("train", 2), ("val", 2)):  # val: 1 shard for 2 pipelines
        evaluation = ReaderConfig(batch_size=1, objective=objective, training=False)
        training = ReaderConfig(batch_size=1, objective=objective, seed=6, shuffle_buffer=24)
        plans, reads = [], []
        for i in range(pipelines):
            context = tf.distribute.InputContext(pipelines, i, 1)
            plan = epoch_plan(spans_dir, manifest, split, evaluation, 0, pipelines, i)
            assert len(windows(make_dataset(spans_dir, split, evaluation, input_context=context))) == plan.windows
            plans.append(epoch_plan(spans_dir, manifest, split, training, 1, pipelines, i))
            reads.append(len(windows(make_dataset(spans_dir, split, training, input_context=context, epoch=1))))
        whole = len(windows(make_dataset(spans_dir, split, training, epoch=1)))
        assert sum(plan.windows for plan in plans) == whole
        assert reads == [min(plan.windows for plan in plans)] * pipelines == [plans[0].batches] * pipelines


def test_fewer_files_than_pipelines_split_records(spans_dir, caplog):
    config = ReaderConfig(batch_size=2, objective="last", training=False)
    with caplog.at_level(logging.WARNING):
        parts = [windows(make_dataset(spans_dir, "val", config, input_context=tf.distribute.InputContext(2, i, 1)))
                 for i in range(2)]
    assert "sharding by record" not in caplog.text  # evaluation splits are small: reading every file is fine
    assert Counter(parts[0] + parts[1]) == Counter(windows(make_dataset(spans_dir, "val", config)))
    assert parts[0] and parts[1]


@pytest.mark.parametrize("objective", ["last", "all"])
def test_skip_batches_resumes_exactly(spans_dir, objective):
    # shuffle_buffer 32 -> chunks of 4 records (~30 windows): skips land inside and between chunks
    config = ReaderConfig(batch_size=4, objective=objective, seed=5, shuffle_buffer=32)
    full = batches(make_dataset(spans_dir, "train", config, epoch=1))
    assert len(full) > 20
    for skip in (1, 3, 7, 8, 13, len(full) - 1):
        assert batches(make_dataset(spans_dir, "train", config, epoch=1, skip_batches=skip)) == full[skip:], skip


def test_two_replicas_of_b_read_the_stream_of_one_of_2b(spans_dir):
    small = windows(make_dataset(spans_dir, "train", ReaderConfig(batch_size=4, objective="last", seed=2)))
    large = windows(make_dataset(spans_dir, "train", ReaderConfig(batch_size=8, objective="last", seed=2)))
    assert len(large) > 100 and small[: len(large)] == large


def test_training_order_depends_on_seed_and_epoch_only(spans_dir):
    config = ReaderConfig(batch_size=8, objective="last", seed=3, shuffle_buffer=64)
    first = windows(make_dataset(spans_dir, "train", config, epoch=0))
    assert first == windows(make_dataset(spans_dir, "train", config, epoch=0))
    assert first != windows(make_dataset(spans_dir, "train", config, epoch=1))


# ---------------------------------------------------------------- mixing

TOPICS, TOPIC_WORDS, BATCH = 8, 50, 64


def topic_documents(seed: int = 0) -> list[list[int]]:
    """25 documents per topic, written topic after topic; topic t uses ids 2 + t * 50 ... (disjoint)."""
    rng = np.random.default_rng(seed)
    return [(2 + topic * TOPIC_WORDS + rng.integers(0, TOPIC_WORDS, size=int(rng.integers(20, 60)))).tolist()
            for topic in range(TOPICS) for _ in range(25)]


def topics_per_batch(data_dir: str, shuffle_buffer: int, count: int = 10, regroup_bytes: int = 8 << 20) -> float:
    config = ReaderConfig(batch_size=BATCH, objective="last", seed=1, shuffle_buffer=shuffle_buffer,
                          regroup_bytes=regroup_bytes)
    dataset = make_dataset(data_dir, "train", config).take(count)
    return float(np.mean([len(set(((targets.numpy() - 2) // TOPIC_WORDS).tolist())) for _, targets, _ in dataset]))


def uniform_topics_per_batch(documents) -> float:
    """E[distinct topics among BATCH windows drawn uniformly from the split]."""
    share = np.bincount([(document[0] - 2) // TOPIC_WORDS for document in documents for _ in document[1:]]) / sum(
        len(document) - 1 for document in documents)
    return float(np.sum(1 - (1 - share) ** BATCH))


def test_batches_mix_topics_like_a_uniform_draw(tmp_path):
    documents = topic_documents()
    vocab = 2 + TOPICS * TOPIC_WORDS
    shuffled = write_span_data_dir(str(tmp_path / "shuffled"), {"train": documents}, vocab, CONTEXT,
                                   windows_per_record=16, shards={"train": 4})
    in_order = write_span_data_dir(str(tmp_path / "ordered"), {"train": documents}, vocab, CONTEXT,
                                   windows_per_record=16, shards={"train": 4}, shuffle=False)
    expected = uniform_topics_per_batch(documents)
    assert expected > 7.5
    assert topics_per_batch(shuffled, shuffle_buffer=1024) >= 0.8 * expected
    # the same data in topic order, read with a small buffer and no regrouping across chunks (as
    # in a corpus much larger than regroup_bytes): what the measure catches
    assert topics_per_batch(in_order, shuffle_buffer=64, regroup_bytes=1) <= 0.4 * expected
