"""A small reference writer of "spans" datasets (format 2), independent of the real ingest.

Written straight from the contract in tfrecords/manifest.py: documents of ids -> their windows
(targets at positions 1, 1 + stride, ... like format 1) cut into records of at most
`windows_per_record` consecutive windows, each record a tf.train.Example {"pad": [zeros before],
"tokens": ids}; records spread over shards and ordered inside them by a seeded shuffle (as the
ingest does) or, with shuffle=False, kept in document order; then vocab.txt and dataset.json.

`document_windows` frames a document the format-1 way (context_length zeros before it), not
through records, so tests can compare what the reader expands with windows made another way.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter

import numpy as np
import tensorflow as tf

from nextword.tfrecords.manifest import Counters, Manifest, Shard, Split, shard_name


def document_windows(document, context_length: int, stride: int) -> list[tuple[int, ...]]:
    """Every window of a document as a tuple (context ids..., target), targets at 1, 1 + stride, ..."""
    padded = [0] * context_length + list(document)
    return [tuple(padded[p : p + context_length + 1]) for p in range(1, len(document), stride)]


def span_records(document, context_length: int, stride: int, windows_per_record: int) -> list[tuple[int, list[int]]]:
    """(pad, tokens) records covering a document's windows, `windows_per_record` at most each.

    The document is laid out with context_length - 1 zeros before it, so its window k starts at
    k * stride in that layout (window 0 predicts the word at position 1)."""
    lead = context_length - 1
    windows = (len(document) - 2) // stride + 1 if len(document) >= 2 else 0
    records = []
    for first in range(0, windows, windows_per_record):
        last = min(windows, first + windows_per_record) - 1
        start, end = first * stride, last * stride + context_length + 1  # [start, end) of the layout
        records.append((max(0, lead - start), list(document[max(0, start - lead) : end - lead])))
    return records


def example_bytes(pad: int, tokens: list[int]) -> bytes:
    features = {
        "pad": tf.train.Feature(int64_list=tf.train.Int64List(value=[pad])),
        "tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=tokens)),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def record_window_count(pad: int, tokens: list[int], context_length: int, stride: int) -> int:
    return (pad + len(tokens) - context_length - 1) // stride + 1


def write_span_split(data_dir: str, name: str, documents, context_length: int, stride: int,
                     windows_per_record: int, shards: int, rng: np.random.Generator | None) -> Split:
    """Write one split's shards; rng=None keeps records in document order, split into
    contiguous runs (the layout a bounded shuffle buffer cannot mix)."""
    records = [record for document in documents
               for record in span_records(document, context_length, stride, windows_per_record)]
    if rng is None:
        owner = np.repeat(np.arange(shards), -(-len(records) // shards))[: len(records)]
        order = np.arange(len(records))
    else:
        owner = rng.integers(0, shards, size=len(records))
        order = rng.permutation(len(records))
    written = []
    for index in range(shards):
        file = shard_name(name, index, shards)
        mine = [records[i] for i in order if owner[i] == index]
        counts = [record_window_count(pad, tokens, context_length, stride) for pad, tokens in mine]
        with tf.io.TFRecordWriter(os.path.join(data_dir, file)) as writer:
            for pad, tokens in mine:
                writer.write(example_bytes(pad, tokens))
        with open(os.path.join(data_dir, file), "rb") as handle:
            data = handle.read()
        written.append(Shard(file=file, records=len(mine), bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                             windows=sum(counts), record_windows=tuple(sorted(Counter(counts).items()))))
    windows = sum((len(d) - 2) // stride + 1 for d in documents if len(d) >= 2)
    return Split(documents=len(documents), tokens=sum(map(len, documents)), windows=windows, shards=tuple(written))


def write_span_data_dir(data_dir: str, splits: dict, vocab_size: int, context_length: int = 6, stride: int = 1,
                        windows_per_record: int = 8, shards: dict | None = None, seed: int = 0,
                        shuffle: bool = True) -> str:
    """splits: {"train": [document ids, ...], "val": [...]} (ids in [2, vocab_size)) -> data_dir.
    shards: shards per split (default 3 train, 1 val)."""
    os.makedirs(data_dir, exist_ok=True)
    shards = {"train": 3, "val": 1, **(shards or {})}
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(2, vocab_size)]
    vocab_data = "".join(token + "\n" for token in vocab).encode("utf-8")  # as ingest.vocab.vocabulary_bytes
    with open(os.path.join(data_dir, "vocab.txt"), "wb") as handle:
        handle.write(vocab_data)
    rng = np.random.default_rng(seed) if shuffle else None
    written = {name: write_span_split(data_dir, name, documents, context_length, stride, windows_per_record,
                                      shards[name], rng)
               for name, documents in splits.items()}
    manifest = Manifest(
        fingerprint=hashlib.sha256(repr((sorted(splits), context_length, stride, seed, shuffle)).encode()).hexdigest()[:16],
        tokenizer={}, vocab_file="vocab.txt", vocab_size=len(vocab), vocab_sha256=hashlib.sha256(vocab_data).hexdigest(),
        context_length=context_length, stride=stride, seed=seed, val_fraction=0.1, splits=written,
        counters=Counters(documents=sum(map(len, splits.values()))),
        layout="spans", windows_per_record=windows_per_record,
    )
    with open(os.path.join(data_dir, "dataset.json"), "w") as handle:
        handle.write(manifest.to_json())
    return data_dir


def position_documents(count: int, min_length: int, max_length: int, seed: int = 0) -> list[list[int]]:
    """Documents whose ids encode (document, position): id = 2 + document * max_length + position,
    so a target id tells which token of which document it is."""
    rng = np.random.default_rng(seed)
    return [[2 + document * max_length + position for position in range(int(rng.integers(min_length, max_length + 1)))]
            for document in range(count)]


def decode_position(token_id: int, max_length: int) -> tuple[int, int]:
    return divmod(token_id - 2, max_length)
