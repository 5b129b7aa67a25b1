"""How long the corpus's documents are, in words, and whether the context fits them.

Pass 1 counts documents by length: exactly below EXACT_BELOW words, by power-of-two bucket
above (a bucket is keyed by its lower bound). The counts are flat "length/N" keys, so both
runners sum them like every other counter (Beam: `sum_dicts`), and the profile made from them
is the same for any batch size, worker count or runner.
"""

from __future__ import annotations

import numpy as np

from nextword.ingest.windows import windows_per_document

EXACT_BELOW = 1024
PREFIX = "length/"


def length_counts(lengths: np.ndarray) -> dict[str, int]:
    """One batch's documents by length key (the length below EXACT_BELOW, else its power-of-two
    bucket's lower bound), as flat counter keys {"length/12": 3, ...}, and their words."""
    lengths = np.asarray(lengths, dtype=np.int64)
    keys = np.where(lengths < EXACT_BELOW, lengths,
                    np.left_shift(1, np.floor(np.log2(np.maximum(lengths, 1))).astype(np.int64)))
    values, counts = np.unique(keys, return_counts=True)
    return {f"{PREFIX}{value}": int(count) for value, count in zip(values.tolist(), counts.tolist())} | {
        f"{PREFIX}words": int(lengths.sum())}


def counts_of(counters: dict) -> tuple[dict[int, int], int]:
    """(documents by length key, total words) from flat counter keys."""
    counts = {int(key[len(PREFIX):]): value for key, value in counters.items()
              if key.startswith(PREFIX) and key[len(PREFIX):].isdigit() and value}
    return counts, counters.get(f"{PREFIX}words", 0)


def _bucket_label(low: int) -> str:
    high = 2 * low - 1 if low > 1 else low
    return str(low) if high == low else f"{low}-{high}"


def profile(counts: dict[int, int], words: int, context_length: int) -> dict:
    """The dataset.json "document_words" entry: documents, mean, quantiles (a quantile at or
    above EXACT_BELOW is its bucket's lower bound), a power-of-two histogram ("4-7": documents
    of 4 to 7 words), and the share of context positions that are padding over every stride-1
    window (each window of a document's first words is padded up to the context)."""
    if not counts:
        return {}
    keys = np.array(sorted(counts), dtype=np.int64)
    numbers = np.array([counts[int(key)] for key in keys], dtype=np.int64)
    documents = int(numbers.sum())
    cumulative = np.cumsum(numbers)

    def quantile(share: float) -> int:
        return int(keys[np.searchsorted(cumulative, share * documents, side="left")])

    histogram: dict[str, int] = {}
    for key, number in zip(keys.tolist(), numbers.tolist()):
        low = 0 if key == 0 else 1 << (key.bit_length() - 1)
        histogram[_bucket_label(low)] = histogram.get(_bucket_label(low), 0) + number
    # Targets 1 .. n-1 of a document of n words have min(t, C) real words of context before them.
    windows = windows_per_document(keys, 1) * numbers
    padded = np.minimum(np.maximum(keys - 1, 0), context_length)  # m = min(n - 1, C): targets with padding
    padding = (padded * context_length - padded * (padded + 1) // 2) * numbers  # sum of C - t over t = 1..m
    total_positions = int(windows.sum()) * context_length
    return {
        "documents": documents,
        "mean": round(words / documents, 2),
        "quantiles": {"p10": quantile(0.1), "p50": quantile(0.5), "p90": quantile(0.9), "p99": quantile(0.99),
                      "max": int(keys[-1])},
        "histogram": histogram,
        "padding_share": round(int(padding.sum()) / total_positions, 4) if total_positions else None,
    }


def short_document_warning(document_words: dict, context_length: int, inputs: list[dict]) -> str | None:
    """The warning ingest and inspect print when the median document is shorter than the
    context (most of each window would be padding), with what to do about it; else None."""
    if not document_words or document_words["quantiles"]["p50"] >= context_length:
        return None
    by_line = [entry for entry in inputs if entry.get("format") == "text" and entry.get("text_unit", "line") == "line"]
    shorter = "a shorter --context fits these documents (windows never cross documents)"
    hint = (f"if a text input's lines are wrapped prose, read it by --text-unit paragraph (or file); if each line is "
            f"one document, {shorter}" if by_line else shorter)
    padding = document_words.get("padding_share")
    padded = f", so {padding:.0%} of the context positions are padding" if padding is not None else ""
    return (f"documents are short for the context: the median document has {document_words['quantiles']['p50']} "
            f"words (mean {document_words['mean']}), the context {context_length}{padded}; {hint}")
