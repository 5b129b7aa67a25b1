"""Shared fixtures: tiny synthetic corpora and a real (tiny) ingested dataset."""

from __future__ import annotations

import itertools
import os
import random

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORDS = ("the a of to and in is it that was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him "
         "two has look more day could go come did number sound no most people my over know water than call "
         "first who may down side been now find any new work part take get place made live where after back").split()


def synthetic_documents(count: int, seed: int = 0, min_words: int = 0, max_words: int = 60) -> list[str]:
    """Zipf-ish documents over a fixed word list, with some punctuation and capitals."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(WORDS))]
    documents = []
    for _ in range(count):
        words = rng.choices(WORDS, weights, k=rng.randint(min_words, max_words))
        text = " ".join(word.capitalize() if rng.random() < 0.05 else word for word in words)
        documents.append(text.replace(" the ", ", the ", 1))
    return documents


def write_lines(path, documents: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for document in documents:
            handle.write(document + "\n")
    return str(path)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> str:
    """~300 documents of 0-60 words, one per line."""
    return write_lines(tmp_path_factory.mktemp("corpus") / "tiny.txt", synthetic_documents(300))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_corpus) -> str:
    """A DATA_DIR written by the real ingest: vocab 64, context 8, 2 train shards, 20% val."""
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    out = str(tmp_path_factory.mktemp("data") / "tiny")
    run_ingest(IngestSettings(inputs=(tiny_corpus,), out=out, vocab_size=64, context_length=8, shards=2,
                              val_fraction=0.2, seed=1, workers=1))
    return out


@pytest.fixture(scope="session")
def tiny_spans_dataset(tmp_path_factory, tiny_corpus) -> str:
    """tiny_dataset's corpus and settings in the format-2 "spans" layout (a record per span)."""
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    out = str(tmp_path_factory.mktemp("data") / "tiny-spans")
    run_ingest(IngestSettings(inputs=(tiny_corpus,), out=out, vocab_size=64, context_length=8, shards=2,
                              val_fraction=0.2, seed=1, workers=1, layout="spans"))
    return out


def decode_records(frames_or_paths, layout: str) -> list[tuple[int, list[int]]]:
    """TFRecord frames (bytes) or shard paths -> [(pad, ids)] per record ("packed": per span), in file order.
    "windows" records have pad 0 and their ids pre-padded (format 1)."""
    import tempfile

    import tensorflow as tf

    if isinstance(frames_or_paths, bytes):
        handle = tempfile.NamedTemporaryFile(suffix=".tfrecord", delete=False)
        handle.write(frames_or_paths)
        handle.close()
        paths = [handle.name]
    else:
        paths = [str(path) for path in frames_or_paths]
    records = []
    for record in tf.data.TFRecordDataset(paths) if paths else []:
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        tokens = list(feature["tokens"].int64_list.value)
        if layout == "packed":  # one (pad, ids) per span
            ends = list(itertools.accumulate(feature["lengths"].int64_list.value))
            records += [(int(pad), tokens[end - length:end]) for pad, length, end in
                        zip(feature["pad"].int64_list.value, feature["lengths"].int64_list.value, ends)]
            continue
        pad = feature["pad"].int64_list.value[0] if layout == "spans" else 0
        records.append((int(pad), tokens))
    return records


def expand_windows(records, context_length: int, stride: int) -> list[list[int]]:
    """[(pad, ids)] -> every window the records hold, [context ids..., target] each, in order."""
    width = context_length + 1
    windows = []
    for pad, ids in records:
        span = [0] * pad + ids
        windows.extend(span[start:start + width] for start in range(0, len(span) - width + 1, stride))
    return windows


def dataset_windows(data_dir: str, split: str) -> list[list[int]]:
    """Every window of a split of a DATA_DIR in either layout, shard by shard in file order."""
    from nextword.tfrecords.manifest import load_manifest

    manifest = load_manifest(data_dir)
    paths = [os.path.join(data_dir, shard.file) for shard in manifest.splits[split].shards]
    return expand_windows(decode_records(paths, manifest.layout), manifest.context_length, manifest.stride)
