"""Tiny datasets for blend tests: one vocabulary (w0..w19, the same vocab.txt bytes, so the same
sha256), each source writing documents from its own range of words, so every window says which
source it came from (its target id)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from _train_data import write_span_split, write_split
from nextword.tfrecords.manifest import Counters, Manifest

VOCAB_WORDS = 20


def source_documents(count: int, words: range, seed: int) -> list[list[int]]:
    """Documents of 4..14 ids walking `words` (ids 2 + word), a learnable pattern per source."""
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(count):
        length, start = int(rng.integers(4, 15)), int(rng.integers(0, len(words)))
        documents.append([2 + words[(start + i) % len(words)] for i in range(length)])
    return documents


def write_source(data_dir: str, words: range, train_documents: int, val_documents: int = 10, seed: int = 0,
                 context_length: int = 6, shards: int = 2, tokenizer: dict | None = None,
                 vocab_words: int = VOCAB_WORDS, word_prefix: str = "w", layout: str = "spans") -> str:
    os.makedirs(data_dir, exist_ok=True)
    vocab = ["<pad>", "<unk>"] + [f"{word_prefix}{i}" for i in range(vocab_words)]
    vocab_data = ("\n".join(vocab) + "\n").encode()
    with open(os.path.join(data_dir, "vocab.txt"), "wb") as handle:
        handle.write(vocab_data)
    def write(name, documents, count):
        if layout == "windows":
            return write_split(data_dir, name, documents, context_length, count)
        return write_span_split(data_dir, name, documents, context_length, count, 4)

    splits = {"train": write("train", source_documents(train_documents, words, seed), shards),
              "val": write("val", source_documents(val_documents, words, seed + 100), 1)}
    manifest = Manifest(
        fingerprint=hashlib.sha256(repr((data_dir, words, train_documents, seed)).encode()).hexdigest()[:16],
        tokenizer=tokenizer or {}, vocab_file="vocab.txt", vocab_size=len(vocab),
        vocab_sha256=hashlib.sha256(vocab_data).hexdigest(), context_length=context_length, stride=1, seed=0,
        val_fraction=0.1, splits=splits, counters=Counters(documents=train_documents + val_documents),
        layout=layout, windows_per_record=4 if layout == "spans" else 1,
    )
    with open(os.path.join(data_dir, "dataset.json"), "w") as handle:
        handle.write(manifest.to_json())
    return data_dir


def source_of_target(target: int) -> int:
    """0 for words w0..w9 (ids 2..11), 1 for w10..w19: the two sources of `two_sources`."""
    return 0 if target < 12 else 1
