"""Pass 1's sums per split: documents, tokens and windows of train and val, the refusal of a corpus
with nothing to train on, and the shard counts sized from them (both runners)."""

from __future__ import annotations

import collections
import math

import numpy as np

from nextword.errors import InputError
from nextword.ingest.lengths import counts_of, length_counts, profile
from nextword.ingest.sources import BUILTIN
from nextword.ingest.windows import windows_per_document
from nextword.tfrecords.manifest import SPLITS


TARGET_SHARD_BYTES = 128 << 20


def summary_from_totals(settings, specs, totals: dict, sizes: dict, vocabulary: list[str]) -> dict:
    """Pass 1's sums in flat keys (counters: as `split_counters` in words plus the readers' counters;
    sizes: `piece_sizes`, and for wordpiece or --vocab-from the splits in ids too) -> the summary's
    vocabulary, counters, splits, shard counts and extra (both runners; the Beam runner's sums come
    from its CountWords/CountPieces or CountWithVocabulary)."""
    per_split = _per_split(totals)  # in words
    counters = {key: value for key, value in totals.items() if "/" not in key}
    counters.setdefault("documents", 0)
    extra = {}
    if settings.tokenizer == "wordpiece":  # windows in pieces: counted per split with the vocabulary
        from nextword.ingest.wordpiece import counted_summary

        word_splits, per_split = per_split, _per_split(sizes)
        refuse_empty(settings, specs, counters, per_split)
        counters, extra = counted_summary(counters, word_splits, per_split, sizes)
    else:
        refuse_empty(settings, specs, counters, per_split)
        counters["tokens"] = sizes.get("total", 0)
        counters["oov_tokens"] = sizes.get("total", 0) - sizes.get("covered", 0)
    extra["document_words"] = profile(*counts_of(totals), settings.context_length)
    shard_counts = shard_counts_for_size(settings, sizes.get("varint_bytes", 0), counters["tokens"], per_split)
    return dict(vocabulary=vocabulary, counters=counters, splits=per_split, shard_counts=shard_counts, extra=extra)


def _per_split(totals: dict) -> dict:
    """Flat "train/tokens" keys (summed over document batches) -> {"train": {"tokens": ...}, ...}."""
    return {name: {key: totals.get(f"{name}/{key}", 0) for key in ("documents", "tokens", "windows")} for name in SPLITS}


def add_split_totals(per_split, lengths: np.ndarray, validation: np.ndarray, stride: int) -> None:
    for index, name in enumerate(SPLITS):
        chosen = lengths[validation == bool(index)]
        per_split[name].update(documents=len(chosen), tokens=int(chosen.sum()),
                               windows=int(windows_per_document(chosen, stride).sum()))


def split_counters(lengths: np.ndarray, validation: np.ndarray, stride: int) -> dict:
    """Documents, empty documents, documents by length and per-split documents/tokens/windows of
    one batch (`lengths` int[documents], `validation` bool[documents]), in flat keys ("train/tokens")."""
    per_split = {name: collections.Counter() for name in SPLITS}
    add_split_totals(per_split, lengths, validation, stride)
    counters = {"documents": len(lengths), "empty_documents": int((lengths == 0).sum()), **length_counts(lengths)}
    counters.update({f"{name}/{key}": value for name, totals in per_split.items() for key, value in totals.items()})
    return counters


def refuse_empty(settings, specs, counters, per_split) -> None:
    names = ", ".join("the embedded corpus" if spec.path == BUILTIN else spec.path for spec in specs)
    if per_split["train"]["windows"] == 0:
        if counters["documents"] == 0:
            raise InputError(f"the corpus ({names}) holds no documents", hint="check the inputs (and --column)")
        if per_split["val"]["windows"] > 0:
            raise InputError(
                f"every document of ({names}) fell into the validation split, none into train",
                hint="lower --val-fraction or add documents",
            )
        raise InputError(
            f"the corpus ({names}) has {counters['documents']} documents but none with two or more words, "
            "so there is no (context -> next word) window to write",
            hint="check --column and --format: is this the text you meant?",
        )


def size_shards(settings, kept_counts: list[int], total_tokens: int, per_split) -> list[int]:
    """Size shards to ~TARGET_SHARD_BYTES from the exact window counts and the ids' varint sizes
    (kept_counts: the corpus count of each vocabulary word, by id from 2, as select_vocabulary gives)."""
    from nextword.ingest.vocab import ids_varint_bytes

    return shard_counts_for_size(settings, ids_varint_bytes(kept_counts, total_tokens), total_tokens, per_split)


def shard_counts_for_size(settings, varint_bytes: int, total_tokens: int, per_split) -> list[int]:
    """(train, val) shard counts from the ids' total varint bytes (shared with the Beam ingest)."""
    average = varint_bytes / max(total_tokens, 1)
    if settings.layout == "windows":
        estimated = [per_split[name]["windows"] * (40 + (settings.context_length + 1) * average) for name in SPLITS]
    elif settings.layout == "packed":  # ~2 bytes a span in the file, but ordering a shard holds its ids
        # and ~50 bytes a span (RECORD_INFO row, order, offsets): sized by that, a dictionary line a span
        spans = [per_split[name]["documents"] + per_split[name]["windows"] / settings.windows_per_record for name in SPLITS]
        estimated = [per_split[name]["tokens"] * average + spans[index] * 50 for index, name in enumerate(SPLITS)]
    else:  # a record per run of windows_per_record windows of a document: ~30 bytes of framing + its
        # ids once. Records: at most one a document plus one per full run (a verse or a dictionary
        # line is a record of its own: counting full runs only made 228 MB shards of a 128 MB target)
        records = [per_split[name]["documents"] + per_split[name]["windows"] / settings.windows_per_record for name in SPLITS]
        estimated = [per_split[name]["tokens"] * average * (1 + settings.context_length / settings.windows_per_record)
                     + records[index] * 30 for index, name in enumerate(SPLITS)]
    train = settings.shards or max(1, math.ceil(estimated[0] / TARGET_SHARD_BYTES))
    validation = 0 if per_split["val"]["windows"] == 0 else min(train, max(1, math.ceil(estimated[1] / TARGET_SHARD_BYTES)))
    return [train, validation]
