"""Random-weight models and a hand-made DATA_DIR: what speed benchmarks (bench/gen_bench.py) and tests export and
generate from when the weights' values do not matter. No training, no ingest; deterministic for a seed."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from nextword.model.config import ModelConfig

CONTEXT_LENGTH = 6
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "don't", "café", "a", "b", "c"]


def write_data_dir(path: str, context_length: int = CONTEXT_LENGTH, words: list[str] = WORDS) -> str:
    """A valid DATA_DIR of the `windows` layout: vocab.txt (<pad>, <unk>, then `words`), one train shard of 8
    random windows, dataset.json (written last, fingerprint "test-fingerprint")."""
    import tensorflow as tf

    from nextword.ingest.text import TOKENIZER_CONFIG
    from nextword.tfrecords.manifest import Counters, Manifest, Shard, Split, shard_name

    os.makedirs(path, exist_ok=True)
    vocabulary = ["<pad>", "<unk>", *words]
    vocab_bytes = "".join(f"{token}\n" for token in vocabulary).encode("utf-8")
    with open(os.path.join(path, "vocab.txt"), "wb") as handle:
        handle.write(vocab_bytes)
    rng = np.random.default_rng(0)
    shard_file = shard_name("train", 0, 1)
    with tf.io.TFRecordWriter(os.path.join(path, shard_file)) as writer:
        for _ in range(8):
            tokens = rng.integers(2, len(vocabulary), size=context_length + 1)
            feature = {"tokens": tf.train.Feature(int64_list=tf.train.Int64List(value=tokens))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    with open(os.path.join(path, shard_file), "rb") as handle:
        shard_bytes = handle.read()
    shard = Shard(file=shard_file, records=8, bytes=len(shard_bytes), sha256=hashlib.sha256(shard_bytes).hexdigest())
    manifest = Manifest(
        fingerprint="test-fingerprint",
        tokenizer=TOKENIZER_CONFIG,
        vocab_file="vocab.txt",
        vocab_size=len(vocabulary),
        vocab_sha256=hashlib.sha256(vocab_bytes).hexdigest(),
        context_length=context_length,
        stride=1,
        seed=0,
        val_fraction=0.0,
        splits={"train": Split(documents=8, tokens=8 * (context_length + 1), windows=8, shards=(shard,))},
        counters=Counters(documents=8),
    )
    with open(os.path.join(path, "dataset.json"), "w") as handle:
        handle.write(manifest.to_json())
    return path


def random_model(config: ModelConfig, seed: int = 0):
    """A built Keras model with random (seeded) weights; biases random too so no gate is trivial."""
    import keras

    from nextword.model.builder import build_model

    keras.utils.set_random_seed(seed)
    model = build_model(config)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    return model
