"""The tf.data reader: shapes, weights, per-epoch order, resume skip, sharding, manifest checks."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from _train_data import write_data_dir
from nextword.errors import ArtifactError, SettingsError
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset

CONTEXT = 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Layout "windows" (one Example per window): these tests pin its behaviour, unchanged since
    format 1. Span datasets have their own tests in test_reader_spans.py."""
    return write_data_dir(str(tmp_path_factory.mktemp("data")), context_length=CONTEXT, layout="windows")


def rows(dataset) -> list[tuple]:
    """Every window as a tuple (context + target) in the order read."""
    out = []
    for context, targets, _ in dataset:
        last = targets.numpy() if targets.shape.rank == 1 else targets.numpy()[:, -1]
        out += [tuple(c) + (t,) for c, t in zip(context.numpy().tolist(), last.tolist())]
    return out


def test_last_objective_shapes_and_dtypes(data_dir):
    context, targets, weights = next(iter(make_dataset(data_dir, "train", ReaderConfig(batch_size=8, objective="last"))))
    assert context.dtype == tf.int32 and context.shape == (8, CONTEXT)
    assert targets.dtype == tf.int32 and targets.shape == (8,)
    assert weights.dtype == tf.float32 and weights.shape == (8,)
    assert np.all(targets.numpy() >= 2)  # a window's target is a word, never pad


def test_all_objective_targets_shift_and_pad_weights(data_dir):
    config = ReaderConfig(batch_size=16, objective="all", training=False)
    smallest_weight = 1.0
    for context, targets, weights in make_dataset(data_dir, "train", config):
        assert targets.shape == context.shape
        # targets are the context shifted by one word: tokens[1:] vs tokens[:-1]
        np.testing.assert_array_equal(context.numpy()[:, 1:], targets.numpy()[:, :-1])
        np.testing.assert_array_equal(weights.numpy(), (targets.numpy() != 0).astype(np.float32))
        smallest_weight = min(smallest_weight, weights.numpy().min())
    assert smallest_weight == 0.0  # windows at a document's start are pre-padded


def test_evaluation_reads_every_window_once(data_dir):
    manifest = load_manifest(data_dir)
    read = rows(make_dataset(data_dir, "train", ReaderConfig(batch_size=7, training=False, objective="last")))
    assert len(read) == manifest.splits["train"].windows


def test_training_order_depends_on_seed_and_epoch_only(data_dir):
    config = ReaderConfig(batch_size=8, seed=3, shuffle_buffer=64)
    first = rows(make_dataset(data_dir, "train", config, epoch=0))
    assert first == rows(make_dataset(data_dir, "train", config, epoch=0))
    assert first != rows(make_dataset(data_dir, "train", config, epoch=1))
    assert sorted(first) != first  # shuffled


def test_skip_batches_resumes_inside_an_epoch(data_dir):
    config = ReaderConfig(batch_size=8, seed=5, objective="last")
    full = rows(make_dataset(data_dir, "train", config, epoch=2))
    resumed = rows(make_dataset(data_dir, "train", config, epoch=2, skip_batches=3))
    assert resumed == full[3 * 8 :]


@pytest.mark.parametrize("skip", [1, 2, 3, 5])
def test_skip_batches_across_shuffle_chunks(data_dir, skip):
    config = ReaderConfig(batch_size=8, seed=5, objective="last", shuffle_buffer=16)  # 2 batches a chunk
    full = rows(make_dataset(data_dir, "train", config, epoch=1))
    assert rows(make_dataset(data_dir, "train", config, epoch=1, skip_batches=skip)) == full[skip * 8:]


def test_a_training_epoch_is_a_permutation_of_the_split(data_dir):
    every = sorted(rows(make_dataset(data_dir, "train", ReaderConfig(batch_size=8, training=False, objective="last"))))
    epoch = rows(make_dataset(data_dir, "train", ReaderConfig(batch_size=8, seed=2, objective="last", shuffle_buffer=40)))
    assert len(epoch) == len(every) // 8 * 8  # only the last partial batch is dropped
    remaining = list(every)
    for row in epoch:
        remaining.remove(row)  # each window at most once
    assert len(remaining) < 8


def test_files_split_across_input_pipelines(data_dir):
    config = ReaderConfig(batch_size=4, training=False, objective="last")
    parts = [
        rows(make_dataset(data_dir, "train", config, input_context=tf.distribute.InputContext(2, i, 2)))
        for i in range(2)
    ]
    whole = rows(make_dataset(data_dir, "train", config))
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    assert parts[0] and parts[1]


def test_fewer_files_than_pipelines_shards_by_record(data_dir, caplog):
    config = ReaderConfig(batch_size=2, training=False, objective="last")
    with caplog.at_level(logging.WARNING):
        parts = [
            rows(make_dataset(data_dir, "val", config, input_context=tf.distribute.InputContext(2, i, 1)))
            for i in range(2)
        ]
    assert "sharding by record" not in caplog.text  # evaluation splits are small: reading every file is fine
    whole = rows(make_dataset(data_dir, "val", config))
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    assert abs(len(parts[0]) - len(parts[1])) <= 1


def test_training_pipelines_take_the_same_number_of_batches(data_dir):
    manifest = load_manifest(data_dir)
    config = ReaderConfig(batch_size=5)
    plans = [epoch_plan(data_dir, manifest, "train", config, 0, 2, i) for i in range(2)]
    assert plans[0].batches == plans[1].batches > 0
    got = [sum(1 for _ in make_dataset(data_dir, "train", config, input_context=tf.distribute.InputContext(2, i, 1))) for i in range(2)]
    assert got == [plans[0].batches] * 2


def test_truncated_shard_is_refused_before_reading(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"), context_length=CONTEXT, layout="windows")
    path = os.path.join(data_dir, load_manifest(data_dir).splits["train"].shards[1].file)
    data = open(path, "rb").read()
    record = len(data) // load_manifest(data_dir).splits["train"].shards[1].records
    with open(path, "wb") as handle:  # cut at a record boundary: TF itself would read it cleanly
        handle.write(data[: len(data) - record])
    with pytest.raises(ArtifactError, match="bytes, the manifest says"):
        make_dataset(data_dir, "train", ReaderConfig())


def test_not_a_dataset_and_bad_settings(tmp_path):
    with pytest.raises(ArtifactError, match="not a nextword dataset"):
        make_dataset(str(tmp_path), "train", ReaderConfig())
    with pytest.raises(SettingsError):
        ReaderConfig(batch_size=0)


def test_reads_a_dataset_written_by_the_real_ingest(tiny_dataset):
    manifest = load_manifest(tiny_dataset)
    for split in ("train", "val"):
        config = ReaderConfig(batch_size=32, training=False, objective="last")
        read = rows(make_dataset(tiny_dataset, split, config))
        assert len(read) == manifest.splits[split].windows > 0
        assert all(len(row) == manifest.context_length + 1 and 1 <= row[-1] < manifest.vocab_size for row in read)  # <unk> targets are real words
    context, targets, _ = next(iter(make_dataset(tiny_dataset, "train", ReaderConfig(batch_size=4))))
    assert context.shape == (4, manifest.context_length) and targets.shape == (4, manifest.context_length)


def test_a_format_1_manifest_reads_as_windows(data_dir, tmp_path):
    """A 0.1.0 dataset.json has no layout, windows_per_record or per-shard window counts."""
    import json
    import shutil

    old = tmp_path / "format1"
    shutil.copytree(data_dir, old)
    raw = json.loads((old / "dataset.json").read_text())
    raw["format_version"] = 1
    for key in ("layout", "windows_per_record"):
        raw.pop(key)
    for split in raw["splits"].values():
        for shard in split["shards"]:
            shard.pop("windows"), shard.pop("record_windows")
    (old / "dataset.json").write_text(json.dumps(raw))
    manifest = load_manifest(str(old))
    assert manifest.layout == "windows" and manifest.splits["train"].shards[0].record_windows[0][0] == 1
    config = ReaderConfig(batch_size=8, seed=1, objective="last", shuffle_buffer=32)
    assert rows(make_dataset(str(old), "train", config)) == rows(make_dataset(data_dir, "train", config))
    plans = [epoch_plan(path, load_manifest(path), "train", config, 1) for path in (str(old), data_dir)]
    assert (plans[0].windows, plans[0].batches) == (plans[1].windows, plans[1].batches)


def test_spans_from_the_ingest_encoder_hold_the_same_windows(data_dir, tmp_path):
    """The same corpus written as span records by the ingest's own encoder (tests/_train_data.py)
    reads back as exactly the windows of the "windows" layout (whose helper also writes a window
    with an all-pad context for each document's first word; the ingest never did)."""
    spans = write_data_dir(str(tmp_path / "spans"), context_length=CONTEXT, layout="spans")
    assert load_manifest(spans).layout == "spans"
    for split in ("train", "val"):
        config = ReaderConfig(batch_size=16, training=False, objective="last")
        expected = [row for row in rows(make_dataset(data_dir, split, config)) if any(row[:CONTEXT])]
        assert sorted(rows(make_dataset(spans, split, config))) == sorted(expected)
