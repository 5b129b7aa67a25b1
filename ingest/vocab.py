"""Word counts -> vocabulary: 0 <pad>, 1 <unk>, then the most frequent words (ties by word)."""

from __future__ import annotations

import hashlib
import heapq

from ingest.text import RESERVED_TOKENS


class WordCounts:
    """Corpus-wide word frequencies, fed one batch of (unique words, counts) at a time."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.total = 0

    def update(self, words: list[bytes], counts: list[int]) -> None:
        table = self.counts
        for word, count in zip(words, counts):
            table[word] = table.get(word, 0) + count
            self.total += count

    def __len__(self) -> int:
        return len(self.counts)


def select_vocabulary(counts: WordCounts, vocab_size: int) -> tuple[list[str], int]:
    """(tokens with line number = id, how many corpus tokens fall outside it)."""
    keep = heapq.nsmallest(vocab_size - len(RESERVED_TOKENS), counts.counts.items(), key=lambda item: (-item[1], item[0]))
    covered = sum(count for _, count in keep)
    return list(RESERVED_TOKENS) + [word.decode("utf-8") for word, _ in keep], counts.total - covered


def vocabulary_bytes(tokens: list[str]) -> tuple[bytes, str]:
    data = "".join(token + "\n" for token in tokens).encode("utf-8")
    return data, hashlib.sha256(data).hexdigest()
