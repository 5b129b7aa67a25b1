"""Shared fixtures for the export and gen tests: a tiny DATA_DIR and tiny exports.

`tiny_data_dir` writes a valid DATA_DIR by hand (vocab.txt, one shard, dataset.json) with
a known vocabulary. Models have random weights: no training is needed to test the
export's mechanics.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from nextword.model.builder import build_model
from nextword.model.config import ModelConfig
from nextword.tfrecords.manifest import Counters, Manifest, Shard, Split, load_manifest, shard_name

CONTEXT_LENGTH = 6
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "don't", "café", "a", "b", "c"]


def write_data_dir(path: str, context_length: int = CONTEXT_LENGTH, words: list[str] = WORDS) -> str:
    """A valid DATA_DIR: vocab.txt, one train shard of windows, dataset.json (last)."""
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
    shard_bytes = open(os.path.join(path, shard_file), "rb").read()
    shard = Shard(file=shard_file, records=8, bytes=len(shard_bytes), sha256=hashlib.sha256(shard_bytes).hexdigest())
    from nextword.ingest.text import TOKENIZER_CONFIG

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


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """Always this module's hand-made DATA_DIR: the tests assert on its known vocabulary
    ("the", "cat" known; "zzz" not). Parity with the real ingest is tested separately
    (tests/test_export.py runs `ingest.pipeline.run_ingest` on tricky text)."""
    return write_data_dir(str(tmp_path_factory.mktemp("data")))


def model_config_for(data_dir: str, **overrides) -> ModelConfig:
    manifest = load_manifest(data_dir)
    settings = dict(arch="lstm", layers=2, units=16, embedding_dim=8, dropout=0.0, bidirectional=False, objective="all")
    settings.update(overrides)
    return ModelConfig(vocab_size=manifest.vocab_size, context_length=manifest.context_length, **settings)


def random_model(config: ModelConfig, seed: int = 0):
    """A built Keras model with random (seeded) weights; biases random too so no gate is trivial."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(config)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def read_card(export_dir: str) -> dict:
    with open(os.path.join(export_dir, "card.json")) as handle:
        return json.load(handle)
