"""One epoch is one pass, on a dataset written by the real ingest (documents span several records):
objective last reads the multiset of windows ingest wrote; objective all weights every target token once.
Epochs chained through one iterator (what training reads) are those epochs one after another."""

import collections
import dataclasses

import numpy as np
import pytest

from conftest import dataset_windows
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
import tensorflow as tf

from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, make_dataset, make_epochs_dataset


@pytest.fixture(scope="module")
def multi_record_dataset(tmp_path_factory, tiny_corpus) -> str:
    out = str(tmp_path_factory.mktemp("epochs") / "data")
    run_ingest(IngestSettings(inputs=(tiny_corpus,), out=out, vocab_size=64, context_length=8, shards=2,
                              val_fraction=0.0, seed=4, workers=1, windows_per_record=5))
    return out


def test_a_last_epoch_reads_every_window_ingest_wrote_once(multi_record_dataset):
    config = ReaderConfig(batch_size=1, objective="last", seed=2, shuffle_buffer=64)
    read = collections.Counter(tuple(context[0]) + (int(targets[0]),)
                               for context, targets, _ in make_dataset(multi_record_dataset, "train", config).as_numpy_iterator())
    assert read == collections.Counter(map(tuple, dataset_windows(multi_record_dataset, "train")))


@pytest.mark.parametrize("epoch", [0, 1])
def test_an_all_epoch_weights_each_target_token_once(multi_record_dataset, epoch):
    config = ReaderConfig(batch_size=1, objective="all", seed=2, shuffle_buffer=64)
    weighted, batches = collections.Counter(), 0
    for _, targets, weights in make_dataset(multi_record_dataset, "train", config, epoch=epoch).as_numpy_iterator():
        batches += 1
        for target, weight in zip(targets[0].tolist(), weights[0].tolist()):
            assert weight in (0.0, 1.0)
            if weight:
                weighted[target] += 1
    # every window's target is one token of the corpus (position >= 1): the same multiset, each once
    expected = collections.Counter(window[-1] for window in dataset_windows(multi_record_dataset, "train"))
    assert weighted == expected
    assert batches < 0.6 * len(dataset_windows(multi_record_dataset, "train"))  # non-overlapping windows, not all of them


@pytest.mark.parametrize("objective", ["last", "all"])
def test_chained_epochs_are_the_epochs_one_after_another(multi_record_dataset, objective):
    config = ReaderConfig(batch_size=2, objective=objective, seed=3, shuffle_buffer=16)
    separate = [*make_dataset(multi_record_dataset, "train", config, epoch=1, skip_batches=2).as_numpy_iterator()]
    for epoch in (2, 3):
        separate += make_dataset(multi_record_dataset, "train", config, epoch=epoch).as_numpy_iterator()
    chained = [*make_epochs_dataset(multi_record_dataset, "train", config, range(1, 4), skip_batches=2).as_numpy_iterator()]
    assert len(chained) == len(separate) > 0
    for mine, theirs in zip(chained, separate):
        for part, expected in zip(mine, theirs):
            np.testing.assert_array_equal(part, expected)


def test_an_epoch_shorter_than_its_plan_fails_at_its_end_instead_of_shifting_the_next(multi_record_dataset):
    """A manifest that claims more windows than the shards hold (a dataset changed after ingest)."""
    manifest = load_manifest(multi_record_dataset)
    train = manifest.splits["train"]
    inflated = tuple(dataclasses.replace(shard, record_windows=tuple((windows, count * 3) for windows, count in shard.record_windows))
                     for shard in train.shards)
    manifest = dataclasses.replace(manifest, splits={**manifest.splits, "train": dataclasses.replace(train, shards=inflated)})
    config = ReaderConfig(batch_size=2, objective="last", seed=3, shuffle_buffer=16)
    real_batches = sum(1 for _ in make_dataset(multi_record_dataset, "train", config))
    iterator = iter(make_epochs_dataset(multi_record_dataset, "train", config, range(0, 2), manifest=manifest))
    for _ in range(real_batches):
        next(iterator)
    with pytest.raises(tf.errors.FailedPreconditionError, match="expected to contain"):
        next(iterator)
