"""The Beam side of `ingest.beam`: transforms and DoFns that run on Beam workers.

Imports apache_beam at module level (the DoFns subclass `beam.DoFn`); `ingest.beam` imports
this module only once it knows Beam is installed. Elements are plain tuples, dicts, str and
bytes: a document batch is (input index, first document index, texts list[bytes] (raw), source
counters dict); a piece of a shard is (input index, first document index, frames bytes, records).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import apache_beam as beam
import numpy as np

from nextword.quiet import load_tensorflow

# A Beam worker process imports this module first (to unpickle the DoFns): TensorFlow loads
# here, without its C++ start-up lines on the worker's stderr.
load_tensorflow()

from nextword.ingest.splits import split_counters  # noqa: E402
from nextword.ingest.tokenizing import BatchTokenizer, encode_arguments  # noqa: E402
from nextword.ingest.sources import InputSpec, iter_documents  # noqa: E402
from nextword.ingest.text import RESERVED_TOKENS  # noqa: E402
from nextword.ingest.vocab import varint_length  # noqa: E402
from nextword.ingest.vocab_source import count_batch  # noqa: E402
from nextword.ingest.wordpiece import piece_sizes  # noqa: E402
from nextword.ingest.windows import RECORD_INFO, WindowPlan, document_keys, encode_block, is_validation, iter_shard  # noqa: E402
from nextword.ingest.writer import PARTIAL_SUFFIX, write_shard_file, write_state  # noqa: E402
from nextword import storage  # noqa: E402
from nextword.tfrecords.manifest import SPLITS, VOCAB_NAME, shard_name  # noqa: E402


def read_batches(indexed_spec: tuple[int, InputSpec], on_error: str, batch_bytes: int,
                 removed_path: str | None = None, offsets: list[int] | None = None) -> Iterable[tuple]:
    """(input index, spec) -> (input index, first document index, texts, source counters); with
    --dedup only the documents kept (`removed_path`: the driver's ingest.dedup.Removed, `offsets`:
    each input's first position in it)."""
    index, spec = indexed_spec
    keep = None
    if removed_path is not None:
        from nextword.ingest.dedup import Removed

        with storage.open_file(removed_path, "rb") as handle:
            keep = Removed.from_bytes(handle.read()).shifted(offsets[index])
    for batch in iter_documents([spec], on_error, batch_bytes=batch_bytes, keep=keep):
        yield index, batch.first_index, batch.texts, dataclasses.asdict(batch.counters)


def sum_dicts(dicts: Iterable[dict]) -> dict:
    """Key-wise sum (a commutative, associative Beam combine)."""
    total: dict = {}
    for values in dicts:
        for key, value in values.items():
            total[key] = total.get(key, 0) + value
    return total


class CountWords(beam.DoFn):
    """A document batch -> tagged "words" (word bytes, count) pairs + one counters dict."""

    def __init__(self, stride: int, val_fraction: float):
        self.stride, self.val_fraction = stride, val_fraction

    def setup(self):
        self.tokenizer = BatchTokenizer()  # TensorFlow loads once per worker, not per bundle

    def process(self, batch):
        _, _, texts, source_counters = batch
        counters = dict(source_counters)
        if texts:
            lengths, unique, counts = (tensor.numpy() for tensor in self.tokenizer.count(texts))
            for word, count in zip(unique.tolist(), counts.tolist()):
                yield beam.pvalue.TaggedOutput("words", (word, count))
            counters.update(split_counters(lengths, is_validation(document_keys(texts), self.val_fraction), self.stride))
        yield counters


class CountPieces(beam.DoFn):
    """--tokenizer wordpiece: a document batch and the learned vocabulary (a side input) -> per-split
    documents/tokens/windows in pieces (flat keys "train/tokens") and the batch's `piece_sizes`."""

    def __init__(self, stride: int, val_fraction: float):
        self.stride, self.val_fraction = stride, val_fraction

    def setup(self):
        self.tokenizer, self.vocabulary = BatchTokenizer(), None

    def process(self, batch, vocabulary: list[str]):
        _, _, texts, _ = batch
        if not texts:
            return
        if vocabulary != self.vocabulary:  # once per worker: the side input is one vocabulary
            self.tokenizer.use_vocabulary(vocabulary, "wordpiece")
            self.vocabulary = vocabulary
        _, flat_ids, lengths, _, validation = encode_arguments(self.tokenizer, None, texts, self.val_fraction)
        per_split = {key: value for key, value in split_counters(lengths, validation, self.stride).items()
                     if key.partition("/")[0] in SPLITS}  # in pieces: the lengths in words are pass 1's
        yield {**per_split, **piece_sizes(flat_ids)}


class CountWithVocabulary(beam.DoFn):
    """--vocab-from: a document batch and the reused vocabulary (a side input) -> its counters (as
    CountWords', without words: nothing is learned) + tagged "sizes" (as CountPieces', in ids of
    either tokenizer), by the local runner's own `count_batch`."""

    def __init__(self, stride: int, val_fraction: float, tokenizer: str):
        self.stride, self.val_fraction, self.tokenizer_name = stride, val_fraction, tokenizer

    def setup(self):
        self.tokenizer, self.vocabulary = BatchTokenizer(), None

    def process(self, batch, vocabulary: list[str]):
        _, _, texts, source_counters = batch
        counters = dict(source_counters)
        if texts:
            if vocabulary != self.vocabulary:  # once per worker: the side input is one vocabulary
                self.tokenizer.use_vocabulary(vocabulary, self.tokenizer_name)
                self.vocabulary = vocabulary
            counted, sizes = count_batch(self.tokenizer, texts, self.stride, self.val_fraction)
            counters = sum_dicts([counters, counted])
            yield beam.pvalue.TaggedOutput("sizes", sizes)
        yield counters


def vocabulary_of(top_words: list[tuple[bytes, int]]) -> list[str]:
    return list(RESERVED_TOKENS) + [word.decode("utf-8") for word, _ in top_words]


def coverage(word_count: tuple[bytes, int], vocabulary: list[str]) -> dict:
    """One word's share of: all tokens, tokens inside the vocabulary, and the ids' varint bytes."""
    word, count = word_count
    position = _vocabulary_index(vocabulary).get(word, 1)
    return {"total": count, "covered": count if position > 1 else 0,
            "varint_bytes": count * varint_length(position)}


_INDEX_CACHE: list = [None, {}]  # [the vocabulary list itself, its index]


def _vocabulary_index(vocabulary: list[str]) -> dict[bytes, int]:
    """The side input is one list object per worker: its index is built once. The cache holds the
    list itself, so its id cannot be reused by another list while cached (keyed by id() alone, a
    freed vocabulary's index was served for the next list that got its address)."""
    if _INDEX_CACHE[0] is not vocabulary:
        _INDEX_CACHE[:] = [vocabulary, {word.encode("utf-8"): position for position, word in enumerate(vocabulary)}]
    return _INDEX_CACHE[1]


class EncodeWindows(beam.DoFn):
    """A document batch -> ((split, shard), (input, first document, frames bytes, RECORD_INFO bytes)) per piece."""

    def __init__(self, data_dir: str, plan: WindowPlan, val_fraction: float, tokenizer: str = "word"):
        self.data_dir, self.plan, self.val_fraction, self.tokenizer_name = data_dir, plan, val_fraction, tokenizer

    def setup(self):
        self.tokenizer = BatchTokenizer()
        vocabulary = storage.read_text(storage.join(self.data_dir, VOCAB_NAME)).split("\n")[:-1]
        self.tokenizer.use_vocabulary(vocabulary, self.tokenizer_name)

    def process(self, batch):
        input_index, first, texts, _ = batch
        if not texts:
            return
        block = encode_block(*encode_arguments(self.tokenizer, self.plan, texts, self.val_fraction))
        for split, shard, frames, info in block.pieces:
            yield (split, shard), (input_index, first, frames, info.tobytes())


def write_shard(keyed_pieces, data_dir: str, plan: WindowPlan) -> dict:
    """All pieces of one shard, in document order (as the local runner appends them), put in the
    shard's seeded order (and packed) by the local runner's own `iter_shard`, into its temporary file."""
    (split, shard), pieces = keyed_pieces
    ordered_pieces = sorted(pieces, key=lambda piece: (piece[0], piece[1]))  # (input, first document)
    frames = b"".join(piece[2] for piece in ordered_pieces)
    info = np.frombuffer(b"".join(piece[3] for piece in ordered_pieces), dtype=RECORD_INFO)
    pieces, info, records = iter_shard(plan, frames, info)
    name = shard_name(SPLITS[split], shard, plan.shard_counts[split])
    entry = write_shard_file(storage.join(data_dir, name + PARTIAL_SUFFIX), name, pieces, info, records=records)
    return {"split": split, "index": shard, **entry}


def save_state(value, data_dir: str, name: str) -> None:
    write_state(data_dir, name, value)
