"""run_ingest: corpus -> vocabulary -> every sliding window in sharded TFRecords -> manifest.

Pass 1 streams the corpus once to count words, documents and windows per split (and finds
every malformed row before a single shard byte is written); with --tokenizer wordpiece it then
learns the pieces and streams the corpus once more to count them (ingest/wordpiece.py). Pass 2 streams it again.
In both passes the main process only reads batches of documents (text read by line: raw blocks of whole
lines the workers split, ingest/text_blocks.py), hands them to the worker processes
(ingest/worker_pool.py: the TF Text tokenizer, document keys, counts, --dedup keys, windows' frames,
leakage hashes) and takes their results back in document order: it sums pass 1's counts and appends
pass 2's frames to the shards. Memory holds a few batches at a time, whatever the corpus size.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import tempfile
import time
from typing import Callable

from nextword.ingest.settings import IngestSettings, fingerprint_of
from nextword.ingest.lengths import counts_of, profile
from nextword.ingest.dedup import DuplicateFinder, shifted_records
from nextword.ingest.heap import release_free_heap
from nextword.ingest.dedup_pass import decide, dedup_pass, drop_removed, load_removed, spill_dir
from nextword.ingest.output_dir import check_output_dir
from nextword.ingest.splits import refuse_empty, size_shards, summary_from_totals
from nextword.ingest.tokenizing import BatchTokenizer
from nextword.ingest.worker_pool import (VocabularyFile, add_counted, count_block_job, count_job, map_in_order,
                                        window_block_job, window_job, worker_pool)
from nextword.ingest.vocab_source import VocabSource, context_note, count_with_vocabulary, resolve
from nextword.ingest.sources import iter_documents, resolve_inputs
from nextword.ingest.text_blocks import counted_blocks, iter_text_blocks, keep_bits, needs_counts, splits_in_workers
from nextword.ingest.count_partitions import PARTITIONS, PartitionedCounts
from nextword.ingest.vocab import WordCounts, select_vocabulary, vocabulary_bytes, vocabulary_of
from nextword.ingest.text_spec import RESERVED_TOKENS
from nextword.ingest.windows import WindowPlan
from nextword.ingest.writer import STATE_DIR, ShardSet, order_and_publish, ordered_shards, read_state, write_state
from nextword import __version__, faults, storage
from nextword.storage import local_path
from nextword.errors import ArtifactError, InputError
from nextword.tfrecords.manifest import MANIFEST_NAME, SPLITS, VOCAB_NAME, Counters, Manifest, Split, format_version_of


COUNT_BATCH_BYTES = 1 << 20  # pass 1's batches and blocks (pass 2's: --batch-bytes)

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
    # this process tokenizes only what stays here (--vocab-from's and wordpiece's own passes); else
    # the workers do, and with --workers > 1 this process never loads TensorFlow (~0.3 GB, ~3 CPU s)
    tokenizer = BatchTokenizer() if source is not None or settings.tokenizer == "wordpiece" else None
    # TensorFlow's ram:// lives in this process's memory, out of the workers' sight: its jobs stay in this one
    workers = 1 if settings.out.startswith("ram://") else settings.workers
    with worker_pool(workers) as pool:  # one pool (and one tokenizer a worker) for both passes
        summary = read_state(settings.out, "pass1.json")
        if summary is None or summary.get("fingerprint") != fingerprint:
            if storage.exists(storage.join(settings.out, STATE_DIR)):
                session.note("resuming: pass 1 of 3 (counting words) keeps no checkpoint, so it starts again")
            summary = _count_pass(settings, specs, fingerprint, tokenizer, progress, identity, source, pool)
        elif read_state(settings.out, "pass2.json") is None:
            session.note("resuming at pass 2 of 3 (writing windows): pass 1 (counting words) was done before")
        release_free_heap()  # pass 1's word counts
        plan = window_plan(settings, summary["shard_counts"])
        _window_pass(settings, specs, fingerprint, summary, plan, progress, session, pool)
    release_free_heap()
    # pass 3 in new worker processes (forked from the same forkserver, so quick to start): the
    # tokenizing workers hold TensorFlow's runtime and their tokenizer (~0.07-0.1 GB each), which
    # ordering does not use
    with (worker_pool(workers) if workers > 1 else contextlib.nullcontext()) as pool:
        shards = order_shards(settings.out, plan, progress, pool)
    leakage = (read_state(settings.out, "pass2.json") or {}).get("leakage_report")
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


def order_shards(data_dir: str, plan: WindowPlan, progress: Progress = no_progress, pool=None):
    """Every unordered shard of pass 2 -> its seeded random order, under its final name (in `pool`'s
    worker processes, a shard each, when given)."""
    total, done = sum(plan.shard_counts), [0]

    def one_more() -> None:
        done[0] += 1
        progress("shuffling shards", done[0], total, 0)

    return order_and_publish(data_dir, plan, one_more, pool)


# ------------------------------------------------------------------ pass 1: counting
# (the output directory: ingest/output_dir.py; the tokenizer: ingest/tokenizing.py; per-split sums and
# shard sizes: ingest/splits.py; --dedup and leakage passes: ingest/dedup_pass.py)


def _count_pass(settings, specs, fingerprint, tokenizer: BatchTokenizer, progress: Progress,
                identity: dict | None = None, source: VocabSource | None = None, pool=None) -> dict:
    """Pass 1: the batches' per-document work in `pool` (ingest/worker_pool.py), the sums here."""
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
    # words are summed by the workers (ingest/count_partitions.py); wordpiece learns from every word's count here
    partitions = PARTITIONS if settings.tokenizer == "word" else 0
    if partitions:
        counts = PartitionedCounts(storage.join(local_out, STATE_DIR, "word-counts") if local_out is not None
                                   else tempfile.mkdtemp(prefix="nextword-word-counts-"))
    else:
        counts = WordCounts(spill_dir=None if local_out is None else storage.join(local_out, STATE_DIR))
    counters = collections.Counter()
    per_split = {name: collections.Counter() for name in SPLITS}
    document_lengths = collections.Counter()
    done = counted_batches = 0

    finder = DuplicateFinder(settings.dedup, spill_dir(settings)) if settings.dedup != "none" else None
    read_counters: collections.deque = collections.deque()  # each batch's reader counters, kept here

    blocks = splits_in_workers(specs)  # the workers split the lines or paragraphs
    # each block's documents, for --dedup's re-read and pass 2 to cut the same blocks with their keep-bits
    block_documents: list[int] = []

    def jobs():
        if blocks:
            for block in iter_text_blocks(specs, settings.on_error, block_bytes=COUNT_BATCH_BYTES):
                read_counters.append(block.counters)
                yield block.data, block.unit, None, settings.dedup, settings.val_fraction, settings.stride, True, partitions
            return
        for batch in iter_documents(specs, settings.on_error, batch_bytes=COUNT_BATCH_BYTES):
            read_counters.append(batch.counters)
            yield batch.texts, batch.first_index, settings.dedup, settings.val_fraction, settings.stride, True, partitions

    for counted in map_in_order(pool, count_block_job if blocks else count_job, jobs(), depth=2 * settings.workers):
        block_documents.append(counted.documents)
        if counted.dedup_records is not None:  # a block's are numbered from its first document
            finder.add(shifted_records(counted.dedup_records, done) if blocks else counted.dedup_records)
        for read in (read_counters.popleft(), counted.counters):  # the reader's, and what a worker counted in its split
            for name, value in (dataclasses.asdict(read) if read is not None else {}).items():
                counters[name] += value
        if not counted.documents:
            continue
        if counted.partitions is not None:
            counts.add(*counted.partitions)
        else:
            counts.update_packed(counted.words, counted.word_ends, counted.word_counts)
        add_counted(counted, per_split, document_lengths)
        counters["documents"] += counted.documents
        counters["empty_documents"] += counted.empty_documents
        done += counted.documents
        counted_batches += 1
        faults.reached("counted_batch", counted_batches)
        progress("counting words", done, None, 0)
    removed, dedup = None, {}
    if finder is not None:  # drop the duplicates' counts: what follows sees the kept documents only
        removed = decide(settings, finder, counters["documents"])
        dedup = drop_removed(settings, specs, removed, None, counts, per_split, document_lengths, pool,
                             block_documents if blocks and needs_counts(specs) else None, COUNT_BATCH_BYTES)
    extra = {}
    if settings.tokenizer == "wordpiece":  # learn the pieces, then count them: windows are in pieces
        from nextword.ingest.wordpiece import wordpiece_count_pass

        vocabulary, per_split, counters, extra, shard_counts = wordpiece_count_pass(
            settings, specs, counts, counters, per_split, tokenizer, progress, removed)
    else:
        refuse_empty(settings, specs, counters, per_split)
        if partitions:
            vocabulary, oov, kept_counts = vocabulary_of(*counts.most_frequent(settings.vocab_size - len(RESERVED_TOKENS), pool))
            total = sum(kept_counts) + oov
        else:
            vocabulary, oov, kept_counts = select_vocabulary(counts, settings.vocab_size)
            total = counts.total
        counts.close()  # removes the spilled runs
        counters["tokens"] = total
        counters["oov_tokens"] = oov
        shard_counts = size_shards(settings, kept_counts, total, per_split)
    extra["document_words"] = profile(*counts_of(+document_lengths), settings.context_length)
    if dedup:
        extra["dedup"] = dedup
    summary = dict(fingerprint=fingerprint, identity=identity, vocabulary=vocabulary, counters=dict(counters),
                   splits={name: dict(value) for name, value in per_split.items()}, shard_counts=shard_counts,
                   extra=extra)
    if blocks and finder is not None and needs_counts(specs):
        summary["block_documents"] = block_documents
    storage.makedirs(settings.out)
    data, _ = vocabulary_bytes(vocabulary)
    storage.write_atomic(storage.join(settings.out, VOCAB_NAME), data)
    write_state(settings.out, "pass1.json", summary)
    return summary


# ------------------------------------------------------------------ pass 2: windows

def _window_pass(settings, specs, fingerprint, summary, plan, progress: Progress,
                 session: IngestSession | None = None, pool=None):
    """Tokenize, cut and encode windows (`pool`'s workers, ingest/worker_pool.py) -> append to
    shards (here), in document order, a few batches in flight."""
    from nextword.ingest.leakage import NgramSpill, sample_for

    session = session or IngestSession()
    vocabulary = VocabularyFile(storage.join(settings.out, VOCAB_NAME), vocabulary_bytes(summary["vocabulary"])[1],
                                settings.tokenizer)
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

    # the workers split the lines or paragraphs (a block's count comes back; with --dedup it is known before:
    # by line from the cut, by paragraph from pass 1, whose blocks of COUNT_BATCH_BYTES are cut again)
    recorded = summary.get("block_documents") if keep is not None and needs_counts(specs) else None
    blocks = splits_in_workers(specs, done, keep, counted=recorded is not None)

    def jobs():
        if blocks:
            first = 0  # the block's first document (where --dedup drops documents, their bits go along)
            size = COUNT_BATCH_BYTES if recorded is not None else settings.batch_bytes
            for block in counted_blocks(iter_text_blocks(specs, settings.on_error, block_bytes=size), recorded):
                reads.append(block.documents if keep is not None else None)
                bits = keep_bits(keep, first, block.documents) if keep is not None else None
                first += block.documents or 0
                yield plan, block.data, block.unit, bits, settings.val_fraction, vocabulary, sample
            return
        for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes,
                                    skip_documents=done, keep=keep):
            reads.append(batch.documents_read)
            yield plan, batch.texts, settings.val_fraction, vocabulary, sample

    last_checkpoint = time.monotonic()
    checkpoints = 0
    try:
        for block, hashes in map_in_order(pool, window_block_job if blocks else window_job, jobs(),
                                          depth=2 * settings.workers):
            for split, shard, frames, info in block.pieces:
                shard_set.append(split, shard, frames, info)
            windows = sum(map(sum, shard_set.windows))
            read = reads.popleft()
            done += block.documents if read is None else read
            if hashes is not None:  # with its block: a checkpoint holds both or neither
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
    leakage = ngrams.report(sample, pool)  # its spreading and matching in the workers
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


# ------------------------------------------------------------------ manifest

def build_manifest(settings, specs, fingerprint, summary, shards, identity: dict | None = None,
                   source: VocabSource | None = None) -> Manifest:
    from nextword.ingest.text_spec import tokenizer_config

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
