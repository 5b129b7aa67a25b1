"""Training regroups records into chunks every epoch (tfrecords/span_reader.record_chunks).

On a dataset of one or two shards, the file permutation per epoch changes nothing, so without
regrouping every epoch's batches drew from the same fixed runs of consecutive records. Measured
here as batch-mates: pairs of records (spans) or windows (windows layout) that share a batch or
chunk in epoch 0 and again in epoch 1, against what an independent regrouping gives. And what the
regrouping must keep: every window once per epoch, exact resume, 1 replica x 2b = 2 replicas x b,
the epoch plan, and evaluation in record order."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from _span_data import decode_position, document_windows, position_documents, write_span_data_dir
from conftest import dataset_windows, synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset, make_epochs_dataset, regroup_block_chunks
from nextword.tfrecords.span_reader import span_chunk_records

CONTEXT, MAX_LENGTH, PER_RECORD = 6, 40, 8
DOCUMENTS = position_documents(80, 2, MAX_LENGTH, seed=3)  # id = 2 + document * MAX_LENGTH + position
SMALL_BLOCKS = 1_000  # regroup_bytes: blocks of a few chunks, so that epochs cross block boundaries


def write_positions(path, shards: int) -> str:
    return write_span_data_dir(str(path), {"train": DOCUMENTS}, vocab_size=2 + len(DOCUMENTS) * MAX_LENGTH,
                               context_length=CONTEXT, windows_per_record=PER_RECORD, shards={"train": shards})


@pytest.fixture(scope="module", params=[1, 2], ids=["1-shard", "2-shards"])
def few_shards(request, tmp_path_factory):
    return write_positions(tmp_path_factory.mktemp("regroup"), request.param)


@pytest.fixture(scope="module")
def one_shard(tmp_path_factory):
    return write_positions(tmp_path_factory.mktemp("regroup1"), 1)


def record_of(target_id: int) -> tuple[int, int]:
    """(document, record) of a "last" window from its target: window k targets position k + 1,
    and the reference writer cuts a document's windows PER_RECORD at a time."""
    document, position = decode_position(target_id, MAX_LENGTH)
    return document, (position - 1) // PER_RECORD


def mate_pairs(groups) -> set:
    """Unordered pairs of distinct keys that share a group."""
    return {pair for group in groups for pair in itertools.combinations(sorted(set(group)), 2)}


def recurrence(first: set, second: set, keys: int) -> tuple[float, float]:
    """(share of first's pairs found again in second, the share an independent grouping with
    second's number of pairs would give: len(second) / all pairs)."""
    return len(first & second) / len(first), len(second) / (keys * (keys - 1) / 2)


def target_ids(dataset) -> list[np.ndarray]:
    return [targets.numpy() for _, targets, _ in dataset]


def windows(dataset) -> list[tuple]:
    """Every window read, as (context ids..., last target), in order."""
    out = []
    for context, targets, _ in dataset:
        last = targets.numpy() if targets.shape.rank == 1 else targets.numpy()[:, -1]
        out += [tuple(row) + (target,) for row, target in zip(context.numpy().tolist(), last.tolist())]
    return out


# ---------------------------------------------------------------- mixing


def test_span_batch_mates_change_between_epochs(few_shards):
    again, independent = span_batch_recurrence(few_shards, seed=7)
    assert independent < 0.05
    assert again < 2 * independent + 0.02  # without regrouping: 0.71-0.83 (seeds 7-9)


def span_batch_recurrence(data_dir: str, seed: int) -> tuple[float, float]:
    # chunks of 4 records (~25 windows), batches of 16 windows: a batch holds ~3-5 records
    config = ReaderConfig(batch_size=16, objective="last", seed=seed, shuffle_buffer=32)
    groups = [[[record_of(t) for t in batch.tolist()] for batch in target_ids(make_dataset(data_dir, "train", config,
                                                                                             epoch=epoch))]
              for epoch in (0, 1)]
    return recurrence(mate_pairs(groups[0]), mate_pairs(groups[1]), len({key for batch in groups[1] for key in batch}))


@pytest.fixture(scope="module")
def windows_layout(tmp_path_factory):
    return write_unique_windows(tmp_path_factory.mktemp("regroup-windows"))


def write_unique_windows(tmp) -> str:
    """One shard of one Example per window, every word unique (a target names its window)."""
    rng = np.random.default_rng(0)
    corpus = [" ".join(f"d{doc}w{word}" for word in range(int(rng.integers(5, 30)))) for doc in range(80)]
    out = str(tmp / "data")
    run_ingest(IngestSettings(inputs=(write_lines(tmp / "unique.txt", corpus),), out=out, vocab_size=4000,
                              context_length=CONTEXT, shards=1, val_fraction=0.0, workers=1, layout="windows"))
    return out


def test_windows_layout_chunk_mates_change_between_epochs(windows_layout):
    again, independent = windows_chunk_recurrence(windows_layout, seed=7)
    assert independent < 0.06
    assert again < 2 * independent + 0.02  # without regrouping: 0.995 (the same chunks, reordered)


def windows_chunk_recurrence(windows_layout: str, seed: int) -> tuple[float, float]:
    batch, chunk = 8, 64  # a chunk is shuffle_buffer records = 8 whole batches
    config = ReaderConfig(batch_size=batch, objective="last", seed=seed, shuffle_buffer=chunk)
    groups = []
    for epoch in (0, 1):
        stream = np.concatenate(target_ids(make_dataset(windows_layout, "train", config, epoch=epoch)))
        groups.append([stream[start:start + chunk].tolist() for start in range(0, len(stream), chunk)])
    return recurrence(mate_pairs(groups[0]), mate_pairs(groups[1]), len(set(stream.tolist())))


# ---------------------------------------------------------------- what regrouping keeps


@pytest.fixture(scope="module")
def packed_lines(tmp_path_factory) -> str:
    """The real ingest of short lines, packed: records of several documents' spans."""
    root = tmp_path_factory.mktemp("regroup-packed")
    corpus = write_lines(root / "lines.txt", synthetic_documents(150, seed=7, max_words=16))
    out = str(root / "data")
    run_ingest(IngestSettings(inputs=(corpus,), out=out, vocab_size=64, context_length=CONTEXT, shards=1,
                              val_fraction=0.0, workers=1, windows_per_record=PER_RECORD, text_unit="line"))
    return out


@pytest.fixture(params=["spans", "packed", "windows"])
def small_blocks(request) -> tuple[str, dict]:
    """(data_dir, ReaderConfig settings) whose blocks of several chunks cut the split into several
    blocks: spans, chunks of 4 records, ~6 chunks a block; packed, chunks of 4 records, 3 chunks a
    block; windows, chunks of 64 records (whole batches of 4 and 8), 3 chunks a block."""
    if request.param == "spans":
        return request.getfixturevalue("one_shard"), {"shuffle_buffer": 32, "regroup_bytes": SMALL_BLOCKS}
    if request.param == "packed":
        data_dir = request.getfixturevalue("packed_lines")
        shard = load_manifest(data_dir).splits["train"].shards[0]
        return data_dir, {"shuffle_buffer": 32, "regroup_bytes": 3 * 4 * (shard.bytes // shard.records)}
    data_dir = request.getfixturevalue("windows_layout")
    shard = load_manifest(data_dir).splits["train"].shards[0]
    return data_dir, {"shuffle_buffer": 64, "regroup_bytes": 3 * 64 * (shard.bytes // shard.records)}


def test_small_blocks_make_several_blocks(small_blocks):
    data_dir, settings = small_blocks
    manifest = load_manifest(data_dir)
    for batch_size in (4, 8):
        config = ReaderConfig(batch_size=batch_size, **settings)
        chunk = span_chunk_records(manifest, 32) if manifest.layout != "windows" else 64
        block_chunks = regroup_block_chunks(manifest, "train", config)
        assert block_chunks >= 3 and manifest.splits["train"].shards[0].records >= 5 * block_chunks * chunk


@pytest.mark.parametrize("regroup_bytes", [SMALL_BLOCKS, 8 << 20])
def test_every_window_once_per_epoch(one_shard, regroup_bytes):
    expected = Counter(w for d in DOCUMENTS for w in document_windows(d, CONTEXT, 1))
    config = ReaderConfig(batch_size=1, objective="last", seed=2, shuffle_buffer=32, regroup_bytes=regroup_bytes)
    read = windows(make_epochs_dataset(one_shard, "train", config, range(0, 3)))
    assert Counter(read) == Counter({window: 3 * count for window, count in expected.items()})
    assert read[: len(read) // 3] != read[len(read) // 3: 2 * len(read) // 3]  # epochs differ


def test_every_window_once_per_epoch_across_blocks(small_blocks):
    data_dir, settings = small_blocks
    expected = Counter(map(tuple, dataset_windows(data_dir, "train")))
    read = windows(make_epochs_dataset(data_dir, "train", ReaderConfig(batch_size=1, objective="last", seed=2,
                                                                       **settings), range(0, 2)))
    assert Counter(read) == Counter({window: 2 * count for window, count in expected.items()})


def test_all_weights_every_token_once_per_epoch(one_shard):
    expected = Counter({(doc, position): 1 for doc, document in enumerate(DOCUMENTS) for position in range(1, len(document))})
    config = ReaderConfig(batch_size=1, objective="all", seed=2, shuffle_buffer=32, regroup_bytes=SMALL_BLOCKS)
    for epoch in (0, 1):
        found = Counter()
        for _, targets, weights in make_dataset(one_shard, "train", config, epoch=epoch):
            found.update(decode_position(t, MAX_LENGTH) for t in targets.numpy()[weights.numpy() > 0].tolist())
        assert found == expected


@pytest.mark.parametrize("objective", ["last", "all"])
def test_resume_reads_what_an_uninterrupted_run_reads(small_blocks, objective):
    data_dir, settings = small_blocks
    config = ReaderConfig(batch_size=4, objective=objective, seed=5, **settings)
    full = [*make_epochs_dataset(data_dir, "train", config, range(1, 3)).as_numpy_iterator()]
    first_epoch = epoch_plan(data_dir, load_manifest(data_dir), "train", config, 1).batches
    for skip in (1, 7, 13, 40, 48, first_epoch // 2, first_epoch - 1):  # windows: 16 batches a chunk, 48 a block
        resumed = [*make_epochs_dataset(data_dir, "train", config, range(1, 3), skip_batches=skip).as_numpy_iterator()]
        assert len(resumed) == len(full) - skip
        for mine, theirs in zip(resumed, full[skip:]):
            for part, expected in zip(mine, theirs):
                np.testing.assert_array_equal(part, expected)


@pytest.mark.parametrize("objective", ["last", "all"])
def test_two_replicas_of_b_read_what_one_replica_of_2b_reads(small_blocks, objective):
    """Step by step over two chained epochs: a step of 2 replicas takes 2 consecutive batches of b
    (windows layout: its chunks are whole batches, so this holds when shuffle_buffer is a multiple of 2b)."""
    data_dir, settings = small_blocks

    def steps(batch_size, replicas):
        config = ReaderConfig(batch_size=batch_size, objective=objective, seed=4, **settings)
        context = tf.distribute.InputContext(1, 0, replicas)
        batches = [*make_epochs_dataset(data_dir, "train", config, range(0, 2), input_context=context).as_numpy_iterator()]
        return [tuple(np.concatenate(parts) for parts in zip(*batches[i:i + replicas]))
                for i in range(0, len(batches), replicas)]

    one, two = steps(8, 1), steps(4, 2)
    assert len(one) == len(two) > 40
    for mine, theirs in zip(two, one):
        for part, expected in zip(mine, theirs):
            np.testing.assert_array_equal(part, expected)


def test_evaluation_reads_records_in_file_order(few_shards):
    config = ReaderConfig(batch_size=16, objective="last", training=False, regroup_bytes=SMALL_BLOCKS)
    assert windows(make_dataset(few_shards, "train", config)) == list(map(tuple, dataset_windows(few_shards, "train")))
