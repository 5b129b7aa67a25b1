"""`nextword ingest --vocab-from DATA_DIR`: reuse a finished dataset's tokenizer and vocabulary.

Two datasets with one vocabulary share ids (the same `vocab_sha256`), so a model trained on one
reads the other. The source must be a finished dataset (its dataset.json written last) whose
vocab.txt still matches the sha256 in its manifest, tokenized by this nextword's tokenizer
definition. What shapes a vocabulary is taken from it: `--tokenizer` and `--vocab-size`, refused
when given with another value. The rest is free, `--context` included: the vocabulary does not
depend on it (pass 1 counts words over whole documents, whatever the windows).

Pass 1 then learns nothing: it tokenizes each batch with the reused vocabulary, as pass 2 will,
and counts documents, windows and ids (`count_batch`, which both runners call).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from nextword.ingest.settings import IngestSettings
from nextword import faults
from nextword.errors import ArtifactError, SettingsError


@dataclass(frozen=True)
class VocabSource:
    """A finished dataset whose vocabulary an ingest reuses."""

    path: str  # the source DATA_DIR: absolute for a local one, as given for a URL
    fingerprint: str  # its dataset.json fingerprint (which dataset it was; not part of the new identity)
    vocab_sha256: str  # of its vocab.txt, checked against its dataset.json
    tokenizer: str  # its --tokenizer, word or wordpiece
    vocab_size: int  # the --vocab-size its ingest asked for (wordpiece: the learner's target)
    tokens: tuple[str, ...]  # vocab.txt, line number = id
    context_length: int  # its --context: not reused, only compared (see `context_note`)

    def record(self) -> dict:
        """dataset.json's `vocab_source`."""
        return {"path": self.path, "fingerprint": self.fingerprint, "vocab_sha256": self.vocab_sha256}


def load_vocab_source(data_dir: str) -> VocabSource:
    """DATA_DIR -> its tokenizer and vocabulary, or an ArtifactError saying why they cannot be reused."""
    from nextword import storage
    from nextword.ingest.text_spec import tokenizer_config
    from nextword.tfrecords.manifest import MANIFEST_NAME, load_manifest, load_vocabulary

    if not storage.isdir(data_dir):
        raise ArtifactError(f"--vocab-from {data_dir}: expected a dataset directory, found no directory there",
                            hint="pass the --out directory of a finished `nextword ingest`")
    try:
        manifest = load_manifest(data_dir)
    except ArtifactError as error:  # not finished (no dataset.json yet) or not a dataset
        raise ArtifactError(f"--vocab-from {data_dir}: expected a finished dataset: {error.message}",
                            hint=error.hint) from None
    try:
        tokens = load_vocabulary(data_dir, manifest)
    except ArtifactError as error:  # missing or edited: its ids are not the ones its shards hold
        raise ArtifactError(f"--vocab-from {data_dir}: its vocabulary cannot be reused: {error.message}",
                            hint=f"restore {manifest.vocab_file} from a copy of that dataset, or reuse another "
                                 "dataset's vocabulary (or leave out --vocab-from to learn one)") from None
    expected = _applied_config(tokenizer_config(manifest.tokenizer_choice))
    if _applied_config(manifest.tokenizer) != expected:
        raise ArtifactError(
            f"--vocab-from {data_dir}: its {MANIFEST_NAME} was tokenized by tokenizer version "
            f"{(manifest.tokenizer or {}).get('version')}, this nextword's is {expected.get('version')} "
            "(ingest/text.py): its words would not be the words this nextword splits",
            hint="re-ingest the source with this nextword, then reuse that dataset's vocabulary")
    requested = (manifest.identity or {}).get("vocab_size", manifest.vocab_size)  # manifests before 0.2: the real size
    path = data_dir if storage.local_path(data_dir) is None else os.path.realpath(storage.local_path(data_dir))
    return VocabSource(path=path, fingerprint=manifest.fingerprint, vocab_sha256=manifest.vocab_sha256,
                       tokenizer=manifest.tokenizer_choice, vocab_size=requested, tokens=tuple(tokens),
                       context_length=manifest.context_length)


def _applied_config(config: dict | None) -> dict:
    """A tokenizer config without what only learning a vocabulary used (the WordPiece learner's
    words and parameters): the rest says how text becomes ids with a given vocabulary."""
    return {key: value for key, value in (config or {}).items() if not key.startswith("learner")}


def resolve(settings: IngestSettings) -> tuple[IngestSettings, VocabSource | None]:
    """(settings with --tokenizer and --vocab-size taken from --vocab-from's dataset, that source);
    settings without --vocab-from are returned as they are, with None. A value given that differs
    from the source's is a SettingsError."""
    if settings.vocab_from is None:
        return settings, None
    from nextword import storage

    out, source_dir = (storage.local_path(path) for path in (settings.out, settings.vocab_from))
    if (out and source_dir and os.path.realpath(out) == os.path.realpath(source_dir)) or settings.out == settings.vocab_from:
        raise SettingsError(f"--vocab-from and --out name the same directory ({settings.out})",
                            hint="write the new dataset to another --out; the source must stay as it is")
    source = load_vocab_source(settings.vocab_from)
    real_size = len(source.tokens)
    conflicts = []
    if settings.tokenizer is not None and settings.tokenizer != source.tokenizer:
        conflicts.append(f"--tokenizer {settings.tokenizer} (its tokenizer is {source.tokenizer})")
    if settings.vocab_size is not None and settings.vocab_size not in (source.vocab_size, real_size):
        its = f"{source.vocab_size:,}" + (f", {real_size:,} in fact" if real_size != source.vocab_size else "")
        conflicts.append(f"--vocab-size {settings.vocab_size:,} (its vocabulary was made with --vocab-size {its})")
    if conflicts:
        raise SettingsError(
            f"--vocab-from {settings.vocab_from} reuses that dataset's tokenizer and vocabulary, which this command "
            f"contradicts: {'; '.join(conflicts)}",
            hint="leave those options out (they are taken from the source), or drop --vocab-from to learn a new vocabulary")
    return dataclasses.replace(settings, tokenizer=source.tokenizer, vocab_size=source.vocab_size), source


def context_note(settings: IngestSettings, source: VocabSource) -> str | None:
    """Another --context than the source's is allowed (the ids are shared all the same), but a model
    reads one window length: say so, since an export of one then does not evaluate the other."""
    if settings.context_length == source.context_length:
        return None
    return (f"note: --context {settings.context_length} differs from {settings.vocab_from}'s {source.context_length}: "
            "the ids are shared, but a model trained on one dataset cannot be evaluated on the other "
            f"(pass --context {source.context_length} to match it)")


def count_batch(tokenizer, texts: list[bytes], stride: int, val_fraction: float) -> tuple[dict, dict]:
    """Pass 1 of one document batch with a reused vocabulary (the BatchTokenizer's), in flat keys
    that sum over batches (both runners add them up key by key):

        counters  documents, empty_documents, documents by length ("length/N") and per split
                  "train/documents" ... in words: what counting words gives
        sizes     per split "train/tokens" ... in ids (pieces for wordpiece), and `piece_sizes`:
                  total, covered (not <unk>) and the ids' varint bytes (shard sizing)
    """
    from nextword.ingest.splits import split_counters
    from nextword.ingest.windows import document_keys, is_validation
    from nextword.ingest.wordpiece import piece_sizes
    from nextword.tfrecords.manifest import SPLITS

    word_lengths, flat_ids, token_lengths = (tensor.numpy() for tensor in tokenizer.lengths_and_ids(texts))
    validation = is_validation(document_keys(texts), val_fraction)
    counters = split_counters(word_lengths, validation, stride)
    sizes = {key: value for key, value in split_counters(token_lengths, validation, stride).items()
             if key.partition("/")[0] in SPLITS}
    sizes.update(piece_sizes(np.asarray(flat_ids)))
    return counters, sizes


def count_with_vocabulary(settings, specs, tokenizer, source: VocabSource, progress, keep=None) -> tuple[dict, dict]:
    """--vocab-from's pass 1: the corpus tokenized with the reused vocabulary, batch by batch
    (`count_batch`, as the Beam runner's CountWithVocabulary) -> summed (counters, sizes)."""
    from nextword.ingest.tokenizing import in_order
    from nextword.ingest.sources import iter_documents

    tokenizer.use_vocabulary(list(source.tokens), settings.tokenizer)
    totals: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    done = counted_batches = 0

    def count(batch):  # in a thread: TensorFlow ops release the GIL
        counted = count_batch(tokenizer, batch.texts, settings.stride, settings.val_fraction) if batch.texts else ({}, {})
        return batch, counted

    batches = iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes, keep=keep)  # keep: --dedup
    with concurrent.futures.ThreadPoolExecutor(settings.workers) as threads:
        for batch, (counters, batch_sizes) in in_order(threads, count, batches, depth=settings.workers):
            totals.update(dataclasses.asdict(batch.counters))
            totals.update(counters)
            sizes.update(batch_sizes)
            done += counters.get("documents", 0)
            counted_batches += 1
            faults.reached("counted_batch", counted_batches)  # as pass 1 of a learned vocabulary
            progress("counting words", done, None, 0)
    return dict(totals), dict(sizes)
