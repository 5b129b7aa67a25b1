"""The per-document work of both local passes, as jobs for worker processes.

A job takes one batch of raw documents and does everything that is per document: the TF Text
tokenizer (words, vocabulary ids), document keys and the split, the counts pass 1 sums, the
--dedup keys, the windows' frames and the leakage n-gram hashes. The main process only reads
batches, hands them out and takes the results back in order (writing them, summing them), so
the serial part of the ingest is the reading and the writing, not the tokenizing.

Workers hold one tokenizer each for the whole ingest (`_tokenizer`), with the vocabulary of
pass 2 loaded once from DATA_DIR's vocab.txt (`VocabularyFile`: a path and its sha256, not the
tokens, travels with each job). `--workers 1` runs the same jobs in one thread of the main
process, so the output is the same function of the batches for any --workers.

Memory: a worker that imports TensorFlow costs ~0.27 GB of private memory (its Python objects)
on top of the ~0.5 GB of shared libraries. The workers are forked from a forkserver that has
imported TensorFlow and TF Text once (before any op ran, so no runtime threads to lose in a
fork) and frozen its objects out of the garbage collector, so a worker shares those pages with
it and owns only what its tokenizer builds (~60 MB measured).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import signal
from dataclasses import dataclass

import numpy as np

from nextword.ingest.lengths import length_counts
from nextword.ingest.splits import add_split_totals
from nextword.ingest.windows import EncodedBlock, WindowPlan, document_keys, encode_block, is_validation
from nextword.tfrecords.manifest import SPLITS

PRELOAD_MODULE = "nextword.ingest.worker_preload"

_state: dict = {}  # this process's tokenizer and the vocabulary it holds


@dataclass(frozen=True)
class VocabularyFile:
    """Pass 2's vocabulary as the workers load it: DATA_DIR/vocab.txt, its sha256, the tokenizer."""
    path: str
    sha256: str
    tokenizer: str = "word"


def _tokenizer():
    if "tokenizer" not in _state:
        from nextword.ingest.tokenizing import BatchTokenizer
        from nextword.quiet import quiet_native_stderr

        with quiet_native_stderr(always=True):  # the device probe's lines (no GPU) stay off the terminal
            import tensorflow as tf

            tf.config.list_physical_devices()
        _state["tokenizer"] = BatchTokenizer()
    return _state["tokenizer"]


def _tokenizer_with(vocabulary: VocabularyFile):
    tokenizer = _tokenizer()
    if _state.get("vocabulary") != vocabulary:
        from nextword import storage
        from nextword.errors import ArtifactError

        with storage.open_file(vocabulary.path, "rb") as handle:
            data = handle.read()
        found = hashlib.sha256(data).hexdigest()
        if found != vocabulary.sha256:
            raise ArtifactError(f"{vocabulary.path} changed during the ingest (sha256 {found[:12]}…, expected "
                                f"{vocabulary.sha256[:12]}…)", hint="run the same ingest command again")
        tokenizer.use_vocabulary(data.decode("utf-8").split("\n")[:-1], vocabulary.tokenizer)
        _state["vocabulary"] = vocabulary
    return tokenizer


# ------------------------------------------------------------------ pass 1: counting


@dataclass(frozen=True)
class CountedBatch:
    """What pass 1 sums from one batch: its distinct words end to end in `words` (each ending at
    `word_ends`) with their counts (none unless counting), per-split documents/tokens/windows,
    documents by length, empty documents, and the --dedup records (None without --dedup)."""
    documents: int
    empty_documents: int
    words: bytes
    word_ends: np.ndarray
    word_counts: np.ndarray
    per_split: dict
    document_lengths: collections.Counter
    dedup_records: dict | None
    counters: object = None  # SourceCounters of the repairs a worker counted in a block it split (count_block_job)
    partitions: tuple | None = None  # with `partitions`: the words as (entries, blobs) a partition, not in `words`


def count_job(texts: list[bytes], first_index: int, dedup: str, val_fraction: float, stride: int,
              counting: bool = True, partitions: int = 0, tokenizer=None) -> CountedBatch:
    """One batch of pass 1 (and of the re-read of the documents --dedup drops). partitions: 0, or
    the words sorted into that many partitions here (ingest/count_partitions.py) for the main
    process to append, not sum. tokenizer: this process's (None) or one given (the main process's,
    whose vocabulary table is built already)."""
    if not texts:
        nothing = np.zeros(0, np.int64)
        return CountedBatch(0, 0, b"", nothing, nothing, {name: collections.Counter() for name in SPLITS},
                            collections.Counter(), None)
    tokenizer = tokenizer or _tokenizer()
    records = None
    if dedup == "none":
        lengths, unique, counts = (tensor.numpy() for tensor in tokenizer.count(texts))
    else:
        lengths, unique, counts, joined, prints = (tensor.numpy() for tensor in
                                                   tokenizer.keyed_count(dedup == "near", counting)(texts))
        from nextword.ingest.dedup import dedup_records

        records = dedup_records(dedup, first_index, lengths, joined, prints)
    validation = is_validation(document_keys(texts), val_fraction)
    per_split = {name: collections.Counter() for name in SPLITS}
    add_split_totals(per_split, lengths, validation, stride)
    words = unique.tolist()
    lengths_counted = collections.Counter(length_counts(lengths))
    if partitions:
        from nextword.ingest.count_partitions import partition_words

        nothing = np.zeros(0, np.int64)
        return CountedBatch(len(lengths), int((lengths == 0).sum()), b"", nothing, nothing, per_split, lengths_counted,
                            records, partitions=partition_words(words, counts, partitions))
    ends = np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)))
    return CountedBatch(len(lengths), int((lengths == 0).sum()), b"".join(words), ends, counts.astype(np.int64), per_split,
                        lengths_counted, records)


def count_block_job(data: bytes | list, unit: str, keep: bytes | None, dedup: str, val_fraction: float, stride: int,
                    counting: bool = True, partitions: int = 0) -> CountedBatch:
    """count_job of a TextBlock's documents (ingest/text_blocks.py: iter_text_blocks), split here, those
    `keep` keeps (text_blocks.keep_bits; None: all). The --dedup records are numbered from the block's
    first document: the main process adds the documents before it (known once the earlier blocks are back)."""
    from nextword.ingest.sources import SourceCounters
    from nextword.ingest.text_blocks import kept_of, split_block

    counters = SourceCounters()
    texts = kept_of(split_block(data, counters, unit), keep)
    return dataclasses.replace(count_job(texts, 0, dedup, val_fraction, stride, counting, partitions),
                               counters=counters)


# ------------------------------------------------------------------ pass 2: windows


def window_job(plan: WindowPlan, texts: list[bytes], val_fraction: float, vocabulary: VocabularyFile,
               leakage_sample: int) -> tuple[EncodedBlock, tuple | None]:
    """One batch of pass 2: (its windows' frames per shard, its leakage n-gram hashes or None)."""
    from nextword.ingest.leakage import ngram_hashes
    from nextword.ingest.tokenizing import encode_arguments

    if not texts:
        return EncodedBlock(0, ()), None
    arguments = encode_arguments(_tokenizer_with(vocabulary), plan, texts, val_fraction)
    _, flat_ids, lengths, _, validation = arguments
    return encode_block(*arguments), ngram_hashes(flat_ids, lengths, validation, plan.stride, leakage_sample)


def window_block_job(plan: WindowPlan, data: bytes | list, unit: str, keep: bytes | None, val_fraction: float,
                     vocabulary: VocabularyFile, leakage_sample: int) -> tuple[EncodedBlock, tuple | None]:
    """window_job of a TextBlock's documents, split here, those `keep` keeps (None: all; the number
    kept: the EncodedBlock's documents)."""
    from nextword.ingest.sources import SourceCounters
    from nextword.ingest.text_blocks import kept_of, split_block

    texts = kept_of(split_block(data, SourceCounters(), unit), keep)  # the repairs were counted in pass 1
    return window_job(plan, texts, val_fraction, vocabulary, leakage_sample)


# ------------------------------------------------------------------ the pool


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing).

    A worker waits on a queue whose write end it holds itself, and the forkserver waits for its
    workers: a `kill -9` of the main process would leave both running forever (holding the
    terminal's or a test's pipes open). The forkserver calls this at its start (its parent: the
    main process), each worker as its pool's initializer (its parent: the forkserver)."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request: nobody is left to wait for us
        os._exit(1)


class _DeafPool(concurrent.futures.ProcessPoolExecutor):
    """Worker processes that never see SIGINT. Ctrl-C reaches the whole process group; only the
    main process may act on it (stop, keep the last checkpoint, say how to resume), and a worker's
    KeyboardInterrupt would print a traceback. The forkserver and every worker start inside
    submit(), from this thread: SIGINT is blocked here meanwhile, and a child keeps that mask
    through exec and fork for its whole life. The block is not a loss: a SIGINT that comes then
    is delivered when it is lifted."""

    def submit(self, *arguments, **keywords):
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().submit(*arguments, **keywords)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def worker_pool(workers: int) -> concurrent.futures.Executor:
    """`workers` processes for the jobs above; --workers 1: one thread of this process (it
    overlaps reading with tokenizing, as the pool does, and needs no second TensorFlow)."""
    if workers == 1:
        return concurrent.futures.ThreadPoolExecutor(1)
    # forkserver, not fork: this process runs TensorFlow threads; not spawn: each spawned worker
    # imported TensorFlow on its own (~0.27 GB private memory each, and its CPU seconds).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD_MODULE])
    return _DeafPool(workers, mp_context=context, initializer=die_with_parent)


def map_in_order(executor, function, arguments, depth: int):
    """function(*each) over `arguments` (tuples), in order, at most `depth` in flight
    (Executor.map would read the whole input ahead)."""
    pending: collections.deque = collections.deque()
    for each in arguments:
        pending.append(executor.submit(function, *each))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def add_counted(counted: CountedBatch, per_split: dict, document_lengths: collections.Counter, sign: int = 1) -> None:
    """Sum (sign 1) or take out (sign -1) a batch's per-split totals and document lengths."""
    for name in SPLITS:
        totals = counted.per_split[name]
        (per_split[name].update if sign > 0 else per_split[name].subtract)(totals)
    (document_lengths.update if sign > 0 else document_lengths.subtract)(counted.document_lengths)


