"""Synthetic corpora for benchmarks and `nextword gpu-check`: Zipf-distributed words, one document per line.

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


_BASE36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_RARE_DIGITS = 7  # 36**7 ~ 7.8e10 distinct rare words available
_SCRAMBLE = 1_000_000_007  # coprime to 36: i -> i * _SCRAMBLE mod 36**7 never repeats


def rare_words(first: int, count: int) -> np.ndarray:
    """`count` distinct words (bytes S8) numbered from `first`: a digit then 7 base-36 characters,
    so they never equal a `word_types` word (letters first) nor one another."""
    scrambled = (np.arange(first, first + count, dtype=np.int64) * _SCRAMBLE) % (36 ** _RARE_DIGITS)
    characters = np.empty((count, _RARE_DIGITS + 1), dtype=np.uint8)
    characters[:, 0] = ord("0") + (np.arange(first, first + count) % 10)
    for position in range(_RARE_DIGITS, 0, -1):
        scrambled, digit = np.divmod(scrambled, 36)
        characters[:, position] = _BASE36[digit]
    return characters.view(f"S{_RARE_DIGITS + 1}").ravel()


def write_many_words_corpus(path: str, distinct_rare: int, seed: int = 0, common_types: int = 50_000,
                            common_share: float = 0.5, words_per_line: int = 100, chunk: int = 1_000_000) -> dict:
    """A corpus of `distinct_rare` words that occur once each (how a vocabulary's memory grows
    with distinct words), mixed with Zipf-distributed common words (`common_share` of all words).

    Returns {bytes, documents, words, distinct_rare}. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    common = np.array([word.encode() for word in word_types(common_types, seed)], dtype=object)
    probabilities = np.arange(1, common_types + 1, dtype=np.float64) ** -1.1
    probabilities /= probabilities.sum()
    common_per_chunk = int(chunk * common_share / (1 - common_share))
    written = documents = words = 0
    with open(path, "wb") as handle:
        for first in range(0, distinct_rare, chunk):
            rare = rare_words(first, min(chunk, distinct_rare - first)).astype(object)
            tokens = np.concatenate([rare, common[rng.choice(common_types, size=common_per_chunk, p=probabilities)]])
            tokens = tokens[rng.permutation(len(tokens))]
            lines = [b" ".join(tokens[start:start + words_per_line]) for start in range(0, len(tokens), words_per_line)]
            block = b"\n".join(lines) + b"\n"
            handle.write(block)
            written, documents, words = written + len(block), documents + len(lines), words + len(tokens)
    return {"bytes": written, "documents": documents, "words": words, "distinct_rare": distinct_rare}
