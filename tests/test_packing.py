"""The "packed" layout: a record holds spans of several documents, packed in each shard's final order.

Checked against the format-2 "spans" layout written from the same corpus (one span a record, the
same seeded order): the packed shards hold exactly its spans in its order, so no window crosses a
document and the windows, their order and every epoch's counts are those of the unpacked layout."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import decode_records, synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset

WINDOWS_PER_RECORD = 16


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory) -> dict[str, str]:
    """Short documents (a dictionary's lines, many empty) and a few long ones, in both layouts."""
    root = tmp_path_factory.mktemp("packing")
    lines = synthetic_documents(400, seed=3, min_words=0, max_words=6) + synthetic_documents(6, seed=4, min_words=60, max_words=90)
    corpus = write_lines(root / "lines.txt", lines)
    out = {}
    for layout in ("packed", "spans"):
        out[layout] = str(root / layout)
        run_ingest(IngestSettings(inputs=(corpus,), out=out[layout], vocab_size=64, context_length=8, shards=2,
                                  val_fraction=0.2, seed=2, workers=1, layout=layout, windows_per_record=WINDOWS_PER_RECORD,
                                  text_unit="line", dedup="none"))  # short synthetic lines repeat: keep them all
    return out


def record_windows(path: str) -> list[list[int]]:
    """Windows of each span, record by record, of a packed shard."""
    records = []
    for record in tf.data.TFRecordDataset(path):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        pads, lengths = feature["pad"].int64_list.value, feature["lengths"].int64_list.value
        records.append([(pad + length - 8 - 1) // 1 + 1 for pad, length in zip(pads, lengths)])
    return records


def test_packed_shards_hold_the_unpacked_spans_in_their_order(both_layouts):
    packed, spans = (load_manifest(both_layouts[layout]) for layout in ("packed", "spans"))
    assert (packed.layout, packed.format_version, spans.format_version) == ("packed", 3, 2)
    for split in ("train", "val"):
        for mine, theirs in zip(packed.splits[split].shards, spans.splits[split].shards):
            assert decode_records([f"{both_layouts['packed']}/{mine.file}"], "packed") == \
                decode_records([f"{both_layouts['spans']}/{theirs.file}"], "spans")
            assert (mine.windows, mine.record_windows) == (theirs.windows, theirs.record_windows)  # per span
            assert mine.records < theirs.records / 3 and mine.bytes < theirs.bytes / 2


def test_records_are_packed_greedily_up_to_the_limit(both_layouts):
    manifest = load_manifest(both_layouts["packed"])
    for shard in manifest.splits["train"].shards:
        records = record_windows(f"{both_layouts['packed']}/{shard.file}")
        assert len(records) == shard.records
        assert all(1 <= sum(spans) <= WINDOWS_PER_RECORD and min(spans) >= 1 for spans in records)
        # a record ends only where its next span would not fit
        assert all(sum(spans) + following[0] > WINDOWS_PER_RECORD for spans, following in zip(records, records[1:]))


@pytest.mark.parametrize("objective", ["last", "all"])
def test_the_reader_reads_the_unpacked_layout_s_windows_in_its_order(both_layouts, objective):
    def batches(layout, training):
        config = ReaderConfig(batch_size=64, objective=objective, training=training, seed=5)
        return [tuple(part.numpy() for part in batch) for batch in make_dataset(both_layouts[layout], "train", config, epoch=1)]

    evaluation = [batches(layout, training=False) for layout in ("packed", "spans")]
    assert len(evaluation[0]) == len(evaluation[1]) > 1
    for mine, theirs in zip(*evaluation):
        assert all(np.array_equal(a, b) for a, b in zip(mine, theirs))
    packed, spans = (load_manifest(both_layouts[layout]) for layout in ("packed", "spans"))
    config = ReaderConfig(batch_size=64, objective=objective, seed=5)
    plan = epoch_plan(both_layouts["packed"], packed, "train", config, epoch=1)
    assert plan.windows == epoch_plan(both_layouts["spans"], spans, "train", config, epoch=1).windows
    assert len(batches("packed", training=True)) == plan.batches


def test_fewer_shards_than_pipelines_counts_each_pipeline_s_windows(both_layouts, tmp_path):
    """Every n-th packed record per pipeline: the plan counts the windows of those records' spans."""
    data_dir = str(tmp_path / "one-shard")
    shutil.copytree(both_layouts["packed"], data_dir)
    manifest = load_manifest(data_dir)
    config = ReaderConfig(batch_size=8, objective="all", training=False)
    total = 0
    for pipeline in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=pipeline, num_replicas_in_sync=3)
        plan = epoch_plan(data_dir, manifest, "train", config, 0, 3, pipeline)
        read = sum(int(batch[0].shape[0]) for batch in make_dataset(data_dir, "train", config, input_context=context))
        assert read == plan.windows > 0
        total += read
    assert total == epoch_plan(data_dir, manifest, "train", config).windows


def test_verify_refuses_a_packed_record_whose_lengths_do_not_add_up(both_layouts, tmp_path):
    from nextword.tfrecords.verify import verify_dataset

    data_dir = str(tmp_path / "damaged")
    shutil.copytree(both_layouts["packed"], data_dir)
    shard = f"{data_dir}/{load_manifest(data_dir).splits['train'].shards[0].file}"
    records = [record.numpy() for record in tf.data.TFRecordDataset(shard)]
    example = tf.train.Example.FromString(records[1])
    example.features.feature["lengths"].int64_list.value[0] += 1  # a span that would take its neighbour's first id
    with tf.io.TFRecordWriter(shard) as writer:
        for record in [records[0], example.SerializeToString(), *records[2:]]:
            writer.write(record)
    _, reports = verify_dataset(data_dir)
    (problems,) = [report.problems for report in reports if not report.ok]
    assert any(problem.startswith(f"record 2 at byte {16 + len(records[0])} is not a 'packed' record of this dataset")
               for problem in problems), problems
