"""A tiny but valid DATA_DIR for the reader and training tests.

Written the way ingest writes one (vocab.txt, sharded records in either layout, dataset.json
from the Manifest dataclass), from a synthetic corpus with a learnable pattern: every document
walks the word list with a fixed stride, so the next word follows from the last one.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import tensorflow as tf

from nextword.tfrecords.manifest import FEATURE_NAME, Counters, Manifest, Shard, Split, shard_name


def synthetic_documents(count: int, vocab_words: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(count):
        length = int(rng.integers(3, 20))
        start = int(rng.integers(0, vocab_words))
        step = int(rng.integers(1, 3))
        documents.append([2 + (start + step * i) % vocab_words for i in range(length)])
    return documents


def windows_of(document: list[int], context_length: int) -> list[list[int]]:
    """Every (context -> next word) window, pre-padded with 0, the last id is the target."""
    padded = [0] * context_length + document
    return [padded[end - context_length : end + 1] for end in range(context_length, len(padded))]


def example_bytes(window: list[int]) -> bytes:
    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=window))
    return tf.train.Example(features=tf.train.Features(feature={FEATURE_NAME: feature})).SerializeToString()


def write_split(data_dir: str, name: str, documents, context_length: int, shards: int) -> Split:
    windows = [w for document in documents for w in windows_of(document, context_length)]
    written = []
    for index in range(shards):
        file = shard_name(name, index, shards)
        path = os.path.join(data_dir, file)
        part = windows[index::shards]
        with tf.io.TFRecordWriter(path) as writer:
            for window in part:
                writer.write(example_bytes(window))
        with open(path, "rb") as handle:
            data = handle.read()
        written.append(Shard(file=file, records=len(part), bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    tokens = sum(len(d) for d in documents)
    return Split(documents=len(documents), tokens=tokens, windows=len(windows), shards=tuple(written))


def write_span_split(data_dir: str, name: str, documents, context_length: int, shards: int,
                     windows_per_record: int) -> Split:
    """The same windows as span records, through the ingest's own encoder and shard order."""
    from nextword.ingest.windows import WindowPlan, encode_block, iter_ordered
    from nextword.ingest.writer import write_shard_file

    plan = WindowPlan(context_length, 1, 0, (shards, 1), "spans", windows_per_record)
    lengths = np.array([len(document) for document in documents])
    flat = np.array([token for document in documents for token in document], dtype=np.int32)
    keys = np.arange(1, len(documents) + 1, dtype=np.uint64)
    block = encode_block(plan, flat, lengths, keys, np.zeros(len(documents), bool))
    pieces = {shard: (frames, info) for _, shard, frames, info in block.pieces}
    written = []
    for index in range(shards):
        frames, info = pieces.get(index, (b"", np.zeros(0, dtype=block.pieces[0][3].dtype)))
        file = shard_name(name, index, shards)
        entry = write_shard_file(os.path.join(data_dir, file), file, *iter_ordered(frames, info))
        written.append(Shard(**{**entry, "record_windows": tuple(map(tuple, entry["record_windows"]))}))
    tokens = sum(len(d) for d in documents)
    windows = sum(shard.windows for shard in written)
    return Split(documents=len(documents), tokens=tokens, windows=windows, shards=tuple(written))


def write_data_dir(
    data_dir: str,
    context_length: int = 6,
    vocab_words: int = 20,
    train_documents: int = 120,
    val_documents: int = 20,
    train_shards: int = 3,
    val_shards: int = 1,
    layout: str = "spans",
    windows_per_record: int = 4,
) -> str:
    """layout "spans" (the default format) or "windows" (one Example per window, as format 1)."""
    os.makedirs(data_dir, exist_ok=True)
    vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(vocab_words)]
    vocab_data = ("\n".join(vocab) + "\n").encode()
    with open(os.path.join(data_dir, "vocab.txt"), "wb") as handle:
        handle.write(vocab_data)
    if layout == "spans":
        def write(name, documents, shards):
            return write_span_split(data_dir, name, documents, context_length, shards, windows_per_record)
    else:
        def write(name, documents, shards):
            return write_split(data_dir, name, documents, context_length, shards)
    splits = {
        "train": write("train", synthetic_documents(train_documents, vocab_words, 1), train_shards),
        "val": write("val", synthetic_documents(val_documents, vocab_words, 2), val_shards),
    }
    manifest = Manifest(
        fingerprint=hashlib.sha256(repr((context_length, vocab_words, train_documents)).encode()).hexdigest()[:16],
        tokenizer={},
        vocab_file="vocab.txt",
        vocab_size=len(vocab),
        vocab_sha256=hashlib.sha256(vocab_data).hexdigest(),
        context_length=context_length,
        stride=1,
        seed=0,
        val_fraction=0.1,
        splits=splits,
        counters=Counters(documents=train_documents + val_documents),
        layout=layout,
        windows_per_record=windows_per_record if layout == "spans" else 1,
    )
    with open(os.path.join(data_dir, "dataset.json"), "w") as handle:
        handle.write(manifest.to_json())
    return data_dir


# The model stage's typer commands in a subprocess (the `nextword` entry point also mounts
# ingest, which these tests do not need).
CLI_SCRIPT = (
    "import typer; from nextword.runner import run_app; from model.cli import register; "
    "app = typer.Typer(pretty_exceptions_enable=False); register(app); run_app(app, 'nextword')"
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_command(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-c", CLI_SCRIPT, *args]


def cli_env(**extra: str) -> dict:
    return dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def checkpoint_weights(run_dir: str, step: int | None = None) -> dict:
    """Model variables of RUN_DIR's latest checkpoint (or the one of `step`), by checkpoint key."""
    directory = os.path.join(run_dir, "checkpoints")
    path = tf.train.latest_checkpoint(directory) if step is None else os.path.join(directory, f"ckpt-{step}")
    reader = tf.train.load_checkpoint(path)
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.startswith("model_variables/")
    }
