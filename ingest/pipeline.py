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
import multiprocessing
import signal
import time
from typing import Callable

from nextword.ingest.settings import IngestSettings, fingerprint_of
from nextword.ingest.lengths import counts_of, length_counts, profile
from nextword.ingest.dedup import DuplicateFinder
from nextword.ingest.dedup_pass import decide, dedup_pass, drop_removed, load_removed, spill_dir
from nextword.ingest.output_dir import check_output_dir
from nextword.ingest.splits import add_split_totals, refuse_empty, size_shards, summary_from_totals
from nextword.ingest.tokenizing import BatchTokenizer, encode_arguments, in_order
from nextword.ingest.vocab_source import VocabSource, context_note, count_with_vocabulary, resolve
from nextword.ingest.sources import iter_documents, resolve_inputs
from nextword.ingest.vocab import WordCounts, select_vocabulary, vocabulary_bytes
from nextword.ingest.windows import WindowPlan, document_keys, is_validation
from nextword.ingest.writer import STATE_DIR, ShardSet, order_and_publish, ordered_shards, read_state, write_state
from nextword import __version__, faults, storage
from nextword.storage import local_path
from nextword.errors import ArtifactError, InputError
from nextword.tfrecords.manifest import MANIFEST_NAME, SPLITS, VOCAB_NAME, Counters, Manifest, Split, format_version_of


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


# ------------------------------------------------------------------ pass 1: counting
# (the output directory: ingest/output_dir.py; the tokenizer: ingest/tokenizing.py; per-split sums and
# shard sizes: ingest/splits.py; --dedup and leakage passes: ingest/dedup_pass.py)


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

    finder = DuplicateFinder(settings.dedup, spill_dir(settings)) if settings.dedup != "none" else None

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
        for batch, keys, results, records in in_order(threads, count, batches, depth=settings.workers):
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
        removed = decide(settings, finder, counters["documents"])
        dedup = drop_removed(settings, specs, removed, tokenizer, counts, per_split, document_lengths)
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
        shard_counts = size_shards(settings, kept_counts, counts.total, per_split)
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
    ngrams = NgramSpill(storage.join(spill_dir(settings), f"leakage-{fingerprint[:12]}"),
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
            tokenized = in_order(threads, tokenize, batches(), depth=settings.workers + 1)
            for block in in_order(pool, encode_kept, jobs(tokenized), depth=2 * settings.workers):
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
