"""run_ingest: corpus -> vocabulary -> every sliding window in sharded TFRecords -> manifest.

Pass 1 streams the corpus once to count words, documents and windows per split (and finds
every malformed row before a single shard byte is written); with --tokenizer wordpiece it then
learns the pieces and streams the corpus once more to count them (ingest/wordpiece.py). Pass 2 streams it again:
the main process tokenizes with the TF Text definition, worker processes cut windows and
encode frames with numpy, and the main process appends them to the shards in document
order. Memory holds a few batches at a time, whatever the corpus size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import multiprocessing
import re
import signal
import time
from typing import Callable

import numpy as np

from nextword.ingest.settings import IngestSettings, fingerprint_of, identity_changes
from nextword.ingest.lengths import counts_of, length_counts, profile
from nextword.ingest.dedup import DuplicateFinder
from nextword.ingest.vocab_source import VocabSource, context_note, count_with_vocabulary, resolve
from nextword.ingest.sources import BUILTIN, iter_documents, resolve_inputs
from nextword.ingest.vocab import WordCounts, select_vocabulary, vocabulary_bytes
from nextword.ingest.windows import WindowPlan, document_keys, is_validation, windows_per_document
from nextword.ingest.writer import STATE_DIR, ShardSet, order_and_publish, ordered_shards, read_state, write_state
from nextword import __version__, faults, storage
from nextword.storage import local_path
from nextword.errors import ArtifactError, InputError
from nextword.tfrecords.manifest import MANIFEST_NAME, SPLITS, VOCAB_NAME, Counters, Manifest, Split, format_version_of

TARGET_SHARD_BYTES = 128 << 20
_OURS = (MANIFEST_NAME, VOCAB_NAME, STATE_DIR)
# storage.write_atomic's temporary siblings of our files, left behind when a kill cut the write
_LEFTOVER = re.compile("(" + "|".join(re.escape(name) for name in (MANIFEST_NAME, VOCAB_NAME)) + r")\.tmp-[0-9a-f]{8}")

# progress(stage, documents done, documents total or None, windows written)
Progress = Callable[[str, int, "int | None", int], None]


def no_progress(stage: str, done: int, total: int | None, windows: int) -> None:
    pass


def _say_nothing(message: str) -> None:
    pass


@dataclasses.dataclass
class IngestSession:
    """What one run_ingest call found and did, for the CLI to report. `note` hears each finding as
    it happens ("resuming from document N ..."); the fields are read at the end."""

    note: Callable[[str], None] = _say_nothing
    already_complete: bool = False  # DATA_DIR held this very dataset: nothing was done
    windows_before: int = 0  # windows earlier, interrupted sessions had written (not this session's work)


def run_ingest(settings: IngestSettings, progress: Progress = no_progress,
               session: IngestSession | None = None) -> Manifest:
    session = session or IngestSession()
    settings, specs, source, identity = prepare(settings, session)
    fingerprint = fingerprint_of(identity)
    finished = check_output_dir(settings, specs, identity, session)
    if finished is not None:
        return finished
    tokenizer = BatchTokenizer()
    summary = read_state(settings.out, "pass1.json")
    if summary is None or summary.get("fingerprint") != fingerprint:
        if storage.exists(storage.join(settings.out, STATE_DIR)):
            session.note("resuming: pass 1 of 3 (counting words) keeps no checkpoint, so it starts again")
        summary = _count_pass(settings, specs, fingerprint, tokenizer, progress, identity, source)
    elif read_state(settings.out, "pass2.json") is None:
        session.note("resuming at pass 2 of 3 (writing windows): pass 1 (counting words) was done before")
    plan = window_plan(settings, summary["shard_counts"])
    _window_pass(settings, specs, fingerprint, summary, plan, tokenizer, progress, session)
    leakage = (read_state(settings.out, "pass2.json") or {}).get("leakage_report")
    shards = order_shards(settings.out, plan, progress)
    if leakage is not None:
        summary = dict(summary, extra=dict(summary.get("extra", {}), leakage=leakage))
    manifest = build_manifest(settings, specs, fingerprint, summary, shards, identity, source)
    storage.write_atomic(storage.join(settings.out, MANIFEST_NAME), manifest.to_json())
    storage.remove(storage.join(settings.out, STATE_DIR))
    return manifest


def prepare(settings: IngestSettings, session: IngestSession | None = None):
    """What both runners start from: (settings with --vocab-from resolved, the inputs, the
    VocabSource or None, this command's identity)."""
    settings, source = resolve(settings)
    if source is not None and session is not None:
        session.note(f"reusing the {source.tokenizer} vocabulary of {settings.vocab_from} "
                     f"({len(source.tokens):,} ids, sha256 {source.vocab_sha256[:12]}…)")
        note = context_note(settings, source)
        if note:
            session.note(note)
    specs = resolve_inputs(list(settings.inputs), settings.format, settings.column, settings.text_unit)
    return settings, specs, source, settings.identity(specs, source.vocab_sha256 if source else None)


def window_plan(settings: IngestSettings, shard_counts) -> WindowPlan:
    return WindowPlan(settings.context_length, settings.stride, settings.seed, tuple(shard_counts),
                      settings.layout, settings.windows_per_record)


def order_shards(data_dir: str, plan: WindowPlan, progress: Progress = no_progress):
    """Every unordered shard of pass 2 -> its seeded random order, under its final name."""
    total, done = sum(plan.shard_counts), [0]

    def one_more() -> None:
        done[0] += 1
        progress("shuffling shards", done[0], total, 0)

    return order_and_publish(data_dir, plan, one_more)


# ------------------------------------------------------------------ the output directory

def check_output_dir(settings: IngestSettings, specs, identity: dict,
                     session: IngestSession | None = None) -> Manifest | None:
    """A finished identical dataset is returned (session.already_complete); a different or foreign
    one is refused, saying what differs (`identity` is IngestSettings.identity of this command)."""
    out, fingerprint = settings.out, fingerprint_of(identity)
    storage.prepare_out_dir(out)  # a file, under a file, or unwritable: said before any work
    names = storage.listdir(out) if storage.isdir(out) else []
    if not names:
        return None
    manifest_path = storage.join(out, MANIFEST_NAME)
    if storage.exists(manifest_path) and not settings.overwrite:
        try:
            existing = Manifest.from_json(storage.read_text(manifest_path), source=manifest_path)
        except ArtifactError:
            existing = None
        legacy = settings.legacy_fingerprint(specs)
        if existing is not None and (existing.fingerprint == fingerprint or (
                not existing.identity and legacy and existing.fingerprint == legacy)):
            if session is not None:
                session.already_complete = True
            return existing
        raise ArtifactError(f"{out} already holds a different dataset: {_what_differs(existing, identity)}",
                            hint="repeat the command that wrote it, choose another --out, or pass --overwrite to replace it")
    leftovers = [name for name in names if _LEFTOVER.fullmatch(name)]
    for name in leftovers:  # a write_atomic cut by a kill: never read, never needed
        storage.remove(storage.join(out, name))
    foreign = [name for name in names if not (name in _OURS or name in leftovers
                                              or name.endswith((".tfrecord", ".tfrecord.partial")))]
    if foreign:
        raise ArtifactError(
            f"{out} is not empty and is not a nextword dataset (it holds {foreign[:3]}{'…' if len(foreign) > 3 else ''})",
            hint="choose an empty or new --out directory",
        )
    state = read_state(out, "pass1.json")
    if state is not None and state.get("fingerprint") != fingerprint and not settings.overwrite:
        changes = identity_changes(state["identity"], identity, "unfinished ingest", "it began") \
            if state.get("identity") else []
        raise ArtifactError(
            f"{out} holds an unfinished ingest of other inputs or settings"
            + (f": {'; '.join(changes)}" if changes else " (an earlier nextword's, which records no details)"),
            hint="run that ingest's command again to finish it, choose another --out, or pass --overwrite",
        )
    if settings.overwrite or (state is not None and state.get("fingerprint") != fingerprint):
        for name in names:
            storage.remove(storage.join(out, name))
    return None


def _what_differs(existing: Manifest | None, identity: dict) -> str:
    if existing is None:
        return f"its {MANIFEST_NAME} cannot be read"
    from nextword.ingest.text import TOKENIZER_CONFIG

    if (existing.tokenizer or {}).get("version") != TOKENIZER_CONFIG["version"]:
        return (f"it was tokenized by tokenizer version {(existing.tokenizer or {}).get('version')}, this nextword's "
                f"is {TOKENIZER_CONFIG['version']} (see ingest/text.py): the same command now writes other ids")
    if not existing.identity:
        return (f"it was written by {existing.created_by or 'an earlier nextword'}, whose {MANIFEST_NAME} records "
                "no sizes or checksums of its inputs, and this command is not the one that wrote it")
    changes = identity_changes(existing.identity, identity, "dataset", "the dataset was written")
    return "; ".join(changes) or "other inputs or settings"


# ------------------------------------------------------------------ TensorFlow side

class BatchTokenizer:
    """The TF Text tokenizer as two compiled functions: count words, and map text to ids (by
    `ingest.text.TextToIds`, of either tokenizer)."""

    def __init__(self) -> None:
        import tensorflow as tf

        from nextword.ingest.text import split_words

        self._tf = tf

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def count(texts):
            words = split_words(texts)
            unique, _, counts = tf.unique_with_counts(words.flat_values)
            return words.row_lengths(), unique, counts

        self.count = count
        self.to_ids = None
        self._keyed: dict = {}

    def keyed_count(self, near: bool, counting: bool = True):
        """The function of `count` plus --dedup's inputs: string[batch] -> (lengths int64[batch],
        unique words, their counts (both empty unless `counting`), uint8[batch, 8] the fingerprint
        of each document's words joined by a space, uint8[words, 8] each word's fingerprint
        (near only, else empty))."""
        if (near, counting) not in self._keyed:
            tf = self._tf
            from nextword.ingest.text import split_words

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
            def keyed(texts):
                words = split_words(texts)
                if counting:
                    unique, _, counts = tf.unique_with_counts(words.flat_values)
                else:
                    unique, counts = tf.zeros([0], tf.string), tf.zeros([0], tf.int32)
                joined = tf.fingerprint(tf.strings.reduce_join(words, axis=1, separator=" "))
                prints = tf.fingerprint(words.flat_values) if near else tf.zeros([0, 8], tf.uint8)
                return words.row_lengths(), unique, counts, joined, prints

            self._keyed[(near, counting)] = keyed
        return self._keyed[(near, counting)]

    def use_vocabulary(self, tokens: list[str], tokenizer: str = "word") -> None:
        tf = self._tf
        from nextword.ingest.text import TextToIds

        text_to_ids = TextToIds(tokens, tokenizer)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def to_ids(texts):
            ids = text_to_ids(texts)
            return tf.cast(ids.flat_values, tf.int32), ids.row_lengths()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def lengths_and_ids(texts):  # --vocab-from's pass 1: words and ids of one tokenization
            words, ids, _ = text_to_ids.words_and_ids(texts)
            return words.row_lengths(), tf.cast(ids.flat_values, tf.int32), ids.row_lengths()

        self._text_to_ids = text_to_ids  # keep its table / model alive with the function
        self.to_ids = to_ids
        self.lengths_and_ids = lengths_and_ids


def encode_arguments(tokenizer: BatchTokenizer, plan: WindowPlan, texts: list[bytes], val_fraction: float) -> tuple:
    """A batch of texts -> the arguments of `ingest.windows.encode_block` (both runners use this):
    (plan, flat ids int32[tokens], lengths int64[documents], document keys uint64, validation bool)."""
    flat_ids, lengths = (tensor.numpy() for tensor in tokenizer.to_ids(texts))
    keys = document_keys(texts)
    return plan, flat_ids, lengths, keys, is_validation(keys, val_fraction)


# ------------------------------------------------------------------ pass 1: counting

def _in_order(executor, function, items, depth: int):
    """executor.map(function, items) in order, with at most `depth` items in flight
    (Executor.map would read the whole input ahead)."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(executor.submit(function, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _count_pass(settings, specs, fingerprint, tokenizer: BatchTokenizer, progress: Progress,
                identity: dict | None = None, source: VocabSource | None = None) -> dict:
    if source is not None:
        removed, dedup, _ = dedup_pass(settings, specs, tokenizer, progress) if settings.dedup != "none" else (None, {}, [])
        totals, sizes = count_with_vocabulary(settings, specs, tokenizer, source, progress, removed)
        if removed is not None:  # the counts of the kept documents; `documents` counts every one read
            totals["documents"] = totals.get("documents", 0) + removed.total
        summary = dict(fingerprint=fingerprint, identity=identity, **summary_from_totals(
            settings, specs, totals, sizes, list(source.tokens)))
        if dedup:
            summary["extra"]["dedup"] = dedup
        storage.makedirs(settings.out)
        storage.write_atomic(storage.join(settings.out, VOCAB_NAME), vocabulary_bytes(summary["vocabulary"])[0])
        write_state(settings.out, "pass1.json", summary)
        return summary
    local_out = local_path(settings.out)  # word-count runs spill beside a local output, else to the temp dir
    counts = WordCounts(spill_dir=None if local_out is None else storage.join(local_out, STATE_DIR))
    counters = collections.Counter()
    per_split = {name: collections.Counter() for name in SPLITS}
    document_lengths = collections.Counter()
    done = counted_batches = 0

    finder = DuplicateFinder(settings.dedup, _spill_dir(settings)) if settings.dedup != "none" else None

    def count(batch):  # in a thread: TensorFlow ops release the GIL
        keys = document_keys(batch.texts)
        if not batch.texts:
            return batch, keys, [], None
        if finder is None:
            return batch, keys, [tensor.numpy() for tensor in tokenizer.count(batch.texts)], None
        lengths, unique, counted, joined, prints = (tensor.numpy() for tensor in
                                                    tokenizer.keyed_count(finder.near)(batch.texts))
        return batch, keys, [lengths, unique, counted], finder.records(batch.first_index, lengths, joined, prints)

    batches = iter_documents(specs, settings.on_error, batch_bytes=1 << 20)
    with concurrent.futures.ThreadPoolExecutor(settings.workers) as threads:
        for batch, keys, results, records in _in_order(threads, count, batches, depth=settings.workers):
            if records is not None:
                finder.add(records)
            for name, value in dataclasses.asdict(batch.counters).items():
                counters[name] += value
            if not batch.texts:
                continue
            lengths, unique, word_counts = results
            counts.update(unique.tolist(), word_counts.tolist())
            add_split_totals(per_split, lengths, is_validation(keys, settings.val_fraction), settings.stride)
            document_lengths.update(length_counts(lengths))
            counters["documents"] += len(lengths)
            counters["empty_documents"] += int((lengths == 0).sum())
            done += len(lengths)
            counted_batches += 1
            faults.reached("counted_batch", counted_batches)
            progress("counting words", done, None, 0)
    removed, dedup = None, {}
    if finder is not None:  # drop the duplicates' counts: what follows sees the kept documents only
        removed = _decide(settings, finder, counters["documents"])
        dedup = _drop_removed(settings, specs, removed, tokenizer, counts, per_split, document_lengths)
    extra = {}
    if settings.tokenizer == "wordpiece":  # learn the pieces, then count them: windows are in pieces
        from nextword.ingest.wordpiece import wordpiece_count_pass

        vocabulary, per_split, counters, extra, shard_counts = wordpiece_count_pass(
            settings, specs, counts, counters, per_split, tokenizer, progress, removed)
    else:
        refuse_empty(settings, specs, counters, per_split)
        vocabulary, oov, kept_counts = select_vocabulary(counts, settings.vocab_size)
        counts.close()  # removes the spilled runs
        counters["tokens"] = counts.total
        counters["oov_tokens"] = oov
        shard_counts = _shard_counts(settings, kept_counts, counts.total, per_split)
    extra["document_words"] = profile(*counts_of(+document_lengths), settings.context_length)
    if dedup:
        extra["dedup"] = dedup
    summary = dict(fingerprint=fingerprint, identity=identity, vocabulary=vocabulary, counters=dict(counters),
                   splits={name: dict(value) for name, value in per_split.items()}, shard_counts=shard_counts,
                   extra=extra)
    storage.makedirs(settings.out)
    data, _ = vocabulary_bytes(vocabulary)
    storage.write_atomic(storage.join(settings.out, VOCAB_NAME), data)
    write_state(settings.out, "pass1.json", summary)
    return summary


REMOVED_STATE = "dedup-removed.bin"  # .partial/: the documents --dedup drops, one bit each (ingest.dedup.Removed)


def _spill_dir(settings) -> str:
    """Where pass 1's sorted runs and dedup buckets go: beside a local output, else the temp dir."""
    import tempfile

    local_out = local_path(settings.out)
    return storage.join(local_out, STATE_DIR) if local_out is not None else tempfile.gettempdir()


def _decide(settings, finder, documents: int):
    """The duplicates' bits, saved under the state dir for pass 2 (and a resume of it)."""
    try:
        removed = finder.removed(documents)
    finally:
        finder.close()
    storage.makedirs(storage.join(settings.out, STATE_DIR))
    storage.write_atomic(storage.join(settings.out, STATE_DIR, REMOVED_STATE), removed.to_bytes())
    return removed


def load_removed(data_dir: str):
    from nextword.ingest.dedup import Removed

    path = storage.join(data_dir, STATE_DIR, REMOVED_STATE)
    with storage.open_file(path, "rb") as handle:
        return Removed.from_bytes(handle.read())


def _drop_removed(settings, specs, removed, tokenizer: BatchTokenizer, counts=None, per_split=None,
                  document_lengths=None) -> dict:
    """Read the corpus once more for the dropped documents alone (skipped when there are none) and
    take their words out of pass 1's counts; -> the manifest's dedup report."""
    from nextword.ingest.dedup import dedup_report

    words = windows = 0
    batches = iter_documents(specs, settings.on_error, batch_bytes=1 << 20, keep=removed.inverted()) if removed.total else ()
    # the function pass 1 traced (the one of `dedup_pass` when there are no counts to fix): tracing
    # `count` as well cost ~0.3 s, a fifth of what exact dedup added to a 31 MB ingest
    keyed = tokenizer.keyed_count(settings.dedup == "near", counting=counts is not None)
    for batch in batches:
        if not batch.texts:
            continue
        lengths, unique, word_counts = (tensor.numpy() for tensor in keyed(batch.texts)[:3])
        words += int(lengths.sum())
        windows += int(windows_per_document(lengths, settings.stride).sum())
        if counts is not None:
            counts.update(unique.tolist(), (-word_counts.astype(np.int64)).tolist())
            dropped = {name: collections.Counter() for name in SPLITS}
            add_split_totals(dropped, lengths, is_validation(document_keys(batch.texts), settings.val_fraction), settings.stride)
            for name in SPLITS:
                per_split[name].subtract(dropped[name])
            document_lengths.subtract(length_counts(lengths))
    return dedup_report(settings.dedup, removed, words, windows)


def dedup_pass(settings, specs, tokenizer: BatchTokenizer, progress: Progress):
    """--vocab-from with --dedup: the duplicates found in a pass of their own (no words to count)."""
    from nextword.ingest.dedup import DuplicateFinder

    finder = DuplicateFinder(settings.dedup, _spill_dir(settings))
    documents = 0

    def keys(batch):  # in a thread: TensorFlow ops release the GIL
        if not batch.texts:
            return batch, None
        lengths, _, _, joined, prints = (tensor.numpy() for tensor in
                                         tokenizer.keyed_count(finder.near, counting=False)(batch.texts))
        return batch, finder.records(batch.first_index, lengths, joined, prints)

    offsets = []  # each input's first position: the Beam runner reads the inputs one by one

    def batches():
        position = 0
        for spec in specs:
            offsets.append(position)
            for batch in iter_documents([spec], settings.on_error, batch_bytes=1 << 20):
                yield dataclasses.replace(batch, first_index=offsets[-1] + batch.first_index)
                position += len(batch.texts)

    with concurrent.futures.ThreadPoolExecutor(settings.workers) as threads:
        for batch, records in _in_order(threads, keys, batches(), depth=settings.workers):
            documents += len(batch.texts)
            if records is not None:
                finder.add(records)
            progress("finding duplicates", documents, None, 0)
    removed = _decide(settings, finder, documents)
    return removed, _drop_removed(settings, specs, removed, tokenizer), offsets


def leakage_pass(settings, specs, vocabulary: list[str], tokenizer: BatchTokenizer, train_tokens: int, keep=None) -> dict:
    """The leakage report from a pass of its own over the kept documents (the Beam runner's; the
    local runner's pass 2 makes it on the way)."""
    from nextword.ingest.leakage import NgramSpill, ngram_hashes, sample_for

    tokenizer.use_vocabulary(vocabulary, settings.tokenizer)
    sample = sample_for(train_tokens)
    ngrams = NgramSpill(storage.join(_spill_dir(settings), "leakage-beam"))
    try:
        for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes, keep=keep):
            if batch.texts:
                _, flat_ids, lengths, _, validation = encode_arguments(tokenizer, None, batch.texts, settings.val_fraction)
                ngrams.add(*ngram_hashes(flat_ids, lengths, validation, settings.stride, sample))
        return ngrams.report(sample)
    finally:
        ngrams.close()


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


def _shard_counts(settings, kept_counts: list[int], total_tokens: int, per_split) -> list[int]:
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


# ------------------------------------------------------------------ pass 2: windows

def _window_pass(settings, specs, fingerprint, summary, plan, tokenizer: BatchTokenizer, progress: Progress,
                 session: IngestSession | None = None):
    """Tokenize (threads) -> cut and encode windows (worker processes) -> append to shards
    (here), each stage in document order, a few batches in flight."""
    from nextword.ingest.dedup import encode_kept
    from nextword.ingest.leakage import NgramSpill, ngram_hashes, sample_for

    session = session or IngestSession()
    tokenizer.use_vocabulary(summary["vocabulary"], settings.tokenizer)
    shard_set, done, windows, complete, state = _open_shards(settings, fingerprint, plan)
    total = summary["counters"]["documents"]
    session.windows_before = windows
    if complete:
        shuffled = ordered_shards(settings.out)
        session.note(f"resuming at pass 3 of 3 (shuffling shards): all {windows:,} windows were written before, "
                     f"{shuffled} of {sum(plan.shard_counts)} shards shuffled")
        return
    if done:
        session.note(f"resuming from document {done:,} of {total:,} (pass 2 of 3, writing windows; "
                     f"{windows:,} windows written before)")

    sample = sample_for(summary["splits"]["train"]["tokens"])
    ngrams = NgramSpill(storage.join(_spill_dir(settings), f"leakage-{fingerprint[:12]}"),
                        (state or {}).get("leakage") if done else None)
    keep = load_removed(settings.out) if settings.dedup != "none" else None
    reads: collections.deque = collections.deque()  # documents read per job, dropped ones included

    def tokenize(batch):  # in a thread: TensorFlow ops release the GIL
        if not batch.texts:
            return None, None
        arguments = encode_arguments(tokenizer, plan, batch.texts, settings.val_fraction)
        _, flat_ids, lengths, _, validation = arguments
        return arguments, ngram_hashes(flat_ids, lengths, validation, settings.stride, sample)

    hashed: collections.deque = collections.deque()  # each job's n-gram hashes, added once its block is

    def jobs(tokenized):
        for arguments, hashes in tokenized:
            hashed.append(hashes)
            yield arguments

    def batches():
        for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes,
                                    skip_documents=done, keep=keep):
            reads.append(batch.documents_read)
            yield batch

    last_checkpoint = time.monotonic()
    checkpoints = 0
    try:
        # Tokenizing batches in `workers` threads (TensorFlow releases the GIL, as in pass 1) keeps
        # the one-thread tokenizer from bounding the whole pass on a machine with many cores.
        with concurrent.futures.ThreadPoolExecutor(settings.workers) as threads, _encoder_pool(settings.workers) as pool:
            tokenized = _in_order(threads, tokenize, batches(), depth=settings.workers + 1)
            for block in _in_order(pool, encode_kept, jobs(tokenized), depth=2 * settings.workers):
                for split, shard, frames, info in block.pieces:
                    shard_set.append(split, shard, frames, info)
                windows = sum(map(sum, shard_set.windows))
                done += reads.popleft()
                hashes = hashed.popleft()  # with its block, not ahead of it: a checkpoint holds both or neither
                if hashes is not None:
                    ngrams.add(*hashes)
                progress("writing windows", done, total, windows)
                if time.monotonic() - last_checkpoint > settings.checkpoint_seconds:
                    write_state(settings.out, "pass2.json", dict(fingerprint=fingerprint, documents=done,
                                                                 leakage=ngrams.checkpoint(), **shard_set.checkpoint()))
                    last_checkpoint = time.monotonic()
                    checkpoints += 1
                    faults.reached("pass2_checkpoint", checkpoints)
        final = shard_set.checkpoint()
    finally:
        shard_set.close()
    leakage = ngrams.report(sample)
    ngrams.close()
    if done != total:
        raise InputError(f"the inputs changed while being read: {total} documents in pass 1, {done} in pass 2",
                         hint="do not modify the corpus during ingest; run the command again")
    write_state(settings.out, "pass2.json", dict(fingerprint=fingerprint, documents=done, complete=True,
                                                 leakage_report=leakage, **final))


def _open_shards(settings, fingerprint, plan) -> tuple[ShardSet, int, int, bool, dict | None]:
    """(shards, documents already written, windows already written, pass 2 complete), resuming
    from the last checkpoint of the same command when there is a usable one."""
    state = read_state(settings.out, "pass2.json")
    if state is not None and state.get("fingerprint") == fingerprint and local_path(settings.out) is not None:
        try:
            shard_set = ShardSet(settings.out, plan.shard_counts, state)
            windows = sum(shard["windows"] for split in state["shards"] for shard in split)
            if state.get("complete"):
                shard_set.close()
            return shard_set, state["documents"], windows, bool(state.get("complete")), state
        except ArtifactError:
            pass  # a temporary shard shorter than its checkpoint: start pass 2 over
    return ShardSet(settings.out, plan.shard_counts, None), 0, 0, False, None


class _InlineExecutor(concurrent.futures.Executor):
    """--workers 1: encode in this process, no pool to start."""

    def submit(self, function, *arguments):
        future = concurrent.futures.Future()
        future.set_result(function(*arguments))
        return future


class _DeafPool(concurrent.futures.ProcessPoolExecutor):
    """Worker processes that never see SIGINT. Ctrl-C reaches the whole process group; only this
    process may act on it (stop, keep the last checkpoint, say how to resume), and a worker's
    KeyboardInterrupt would print a traceback. A worker starts inside submit(), from this thread:
    SIGINT is blocked here meanwhile, and the child keeps that mask through exec for its whole
    life. The block is not a loss: a SIGINT that comes then is delivered when it is lifted."""

    def submit(self, *arguments, **keywords):
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().submit(*arguments, **keywords)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _encoder_pool(workers: int) -> concurrent.futures.Executor:
    if workers == 1:
        return _InlineExecutor()
    # spawn, not fork: this process runs TensorFlow threads; the workers need numpy only.
    return _DeafPool(workers, mp_context=multiprocessing.get_context("spawn"))


# ------------------------------------------------------------------ manifest

def build_manifest(settings, specs, fingerprint, summary, shards, identity: dict | None = None,
                   source: VocabSource | None = None) -> Manifest:
    from nextword.ingest.text import tokenizer_config

    _, vocab_sha256 = vocabulary_bytes(summary["vocabulary"])
    if source is not None and vocab_sha256 != source.vocab_sha256:
        raise ArtifactError(f"the vocabulary written ({vocab_sha256[:12]}…) is not the one --vocab-from reuses "
                            f"({source.vocab_sha256[:12]}…)", hint="this is a bug in nextword; please report it")
    splits = {}
    for index, name in enumerate(SPLITS):
        recorded = summary["splits"][name]
        written = sum(shard.windows for shard in shards[index])
        if written != recorded["windows"]:
            raise ArtifactError(f"{name}: wrote {written} windows, pass 1 counted {recorded['windows']}",
                                hint="this is a bug in nextword; please report it with the command you ran")
        splits[name] = Split(documents=recorded["documents"], tokens=recorded["tokens"],
                             windows=written, shards=tuple(shards[index]))
    known = {field.name for field in dataclasses.fields(Counters)}
    counters = Counters(**{key: value for key, value in summary["counters"].items() if key in known})
    return Manifest(
        fingerprint=fingerprint, tokenizer=tokenizer_config(settings.tokenizer), vocab_file=VOCAB_NAME,
        vocab_size=len(summary["vocabulary"]), vocab_sha256=vocab_sha256,
        context_length=settings.context_length, stride=settings.stride, seed=settings.seed,
        val_fraction=settings.val_fraction, splits=splits, counters=counters,
        inputs=tuple({"path": spec.path, "format": spec.format, "column": spec.column,
                      **({"text_unit": spec.unit} if spec.unit else {})} for spec in specs),
        created_by=f"nextword {__version__}", layout=settings.layout,
        windows_per_record=settings.windows_per_record if settings.layout != "windows" else 1,
        format_version=format_version_of(settings.layout),
        identity=identity or {}, extra=summary.get("extra", {}),
        vocab_source=source.record() if source is not None else {},
    )
