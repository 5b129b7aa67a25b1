"""Synthetic corpora for benchmarks: Zipf-distributed words, one document per line.

Deterministic for a seed, so every run measures the same text.
"""

from __future__ import annotations

import os

import numpy as np

_LETTERS = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))


def word_types(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.poisson(5, size=count) + 1, 1, 14)
    letters = _LETTERS[np.minimum(rng.zipf(1.4, size=int(lengths.sum())) - 1, 25)]
    words, start, seen = [], 0, set()
    for length in lengths:
        word = "".join(letters[start:start + length])
        start += length
        words.append(word if word not in seen else f"{word}{len(words)}")
        seen.add(words[-1])
    return words


def write_zipf_corpus(path: str, target_bytes: int, seed: int = 0, types: int = 50_000,
                      exponent: float = 1.1, mean_words: int = 120) -> dict:
    """Write ~target_bytes of text; returns {bytes, documents, words}."""
    if os.path.exists(path) and abs(os.path.getsize(path) - target_bytes) < 0.05 * target_bytes:
        return {"bytes": os.path.getsize(path), "documents": None, "words": None}
    rng = np.random.default_rng(seed)
    vocabulary = np.array(word_types(types, seed), dtype=object)
    ranks = np.arange(1, types + 1, dtype=np.float64)
    probabilities = ranks ** -exponent
    probabilities /= probabilities.sum()
    written = documents = words = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target_bytes:
            lengths = np.maximum(rng.lognormal(np.log(mean_words), 0.8, size=2000).astype(int), 1)
            ids = rng.choice(types, size=int(lengths.sum()), p=probabilities)
            tokens = vocabulary[ids]
            start = 0
            lines = []
            for length in lengths:
                lines.append(" ".join(tokens[start:start + length]))
                start += length
            block = "\n".join(lines) + "\n"
            handle.write(block)
            written += len(block.encode("utf-8"))
            documents += len(lengths)
            words += int(lengths.sum())
    return {"bytes": written, "documents": documents, "words": words}
