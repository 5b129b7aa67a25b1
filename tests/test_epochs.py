"""One epoch is one pass, on a dataset written by the real ingest (documents span several records):
objective last reads the multiset of windows ingest wrote; objective all weights every target token once."""

import collections

import numpy as np
import pytest

from conftest import dataset_windows
from ingest.pipeline import run_ingest
from ingest.settings import IngestSettings
from tfrecords.reader import ReaderConfig, make_dataset


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
