"""--dedup and the leakage report as passes over the corpus: the duplicates' keep-bits saved for
pass 2 (and its resume), their words taken out of pass 1's counts, and the Beam runner's own passes."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import TYPE_CHECKING

from nextword import storage
from nextword.ingest.sources import iter_documents
from nextword.ingest.tokenizing import BatchTokenizer, encode_arguments, in_order
from nextword.ingest.writer import STATE_DIR
from nextword.storage import local_path
from nextword.tfrecords.manifest import SPLITS

if TYPE_CHECKING:
    from nextword.ingest.pipeline import Progress


REMOVED_STATE = "dedup-removed.bin"  # .partial/: the documents --dedup drops, one bit each (ingest.dedup.Removed)


def spill_dir(settings) -> str:
    """Where pass 1's sorted runs and dedup buckets go: beside a local output, else the temp dir."""
    import tempfile

    local_out = local_path(settings.out)
    return storage.join(local_out, STATE_DIR) if local_out is not None else tempfile.gettempdir()


def decide(settings, finder, documents: int):
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


def drop_removed(settings, specs, removed, tokenizer: BatchTokenizer | None, counts=None, per_split=None,
                 document_lengths=None, pool=None, block_documents: list[int] | None = None,
                 block_bytes: int = 1 << 20) -> dict:
    """Read the corpus once more for the dropped documents alone (skipped when there are none) and
    take their words out of pass 1's counts; -> the manifest's dedup report. The batches go to
    `pool`'s workers (ingest/worker_pool.py), or to `tokenizer` here when there is no pool."""
    from nextword.ingest.count_partitions import PARTITIONS, PartitionedCounts
    from nextword.ingest.dedup import dedup_report
    from nextword.ingest.text_blocks import splits_in_workers
    from nextword.ingest.worker_pool import add_counted, count_block_job, count_job, map_in_order

    words = windows = 0
    # the function pass 1 used (the one of `dedup_pass` when there are no counts to fix)
    counting = counts is not None
    partitions = PARTITIONS if isinstance(counts, PartitionedCounts) else 0
    dropped = removed.inverted()
    if not removed.total:
        results = ()
    elif pool is not None and splits_in_workers(specs, keep=dropped, counted=block_documents is not None):
        # raw blocks, the workers split them (by paragraph: the blocks pass 1 counted, cut again)
        results = map_in_order(pool, count_block_job, _dropped_blocks(settings, specs, dropped, counting, partitions,
                                                                      block_documents, block_bytes),
                               depth=2 * settings.workers)
    else:
        batches = iter_documents(specs, settings.on_error, batch_bytes=1 << 20, keep=dropped)
        jobs = ((batch.texts, batch.first_index, settings.dedup, settings.val_fraction, settings.stride, counting,
                 partitions) for batch in batches)
        if pool is None:
            results = (count_job(*job, tokenizer=tokenizer) for job in jobs)
        else:
            results = map_in_order(pool, count_job, jobs, depth=2 * settings.workers)
    for counted in results:
        if not counted.documents:
            continue
        words += sum(counted.per_split[name]["tokens"] for name in SPLITS)
        windows += sum(counted.per_split[name]["windows"] for name in SPLITS)
        if counting:
            if partitions:
                counts.add(*counted.partitions, sign=-1)
            else:
                counts.update_packed(counted.words, counted.word_ends, -counted.word_counts)
            add_counted(counted, per_split, document_lengths, sign=-1)
    return dedup_report(settings.dedup, removed, words, windows)


def _dropped_blocks(settings, specs, dropped, counting: bool, partitions: int, block_documents, block_bytes: int):
    """count_block_job's arguments for the blocks that hold a document --dedup drops."""
    from nextword.ingest.text_blocks import counted_blocks, iter_text_blocks, keep_bits

    first = 0
    for block in counted_blocks(iter_text_blocks(specs, settings.on_error, block_bytes), block_documents):
        bits = keep_bits(dropped, first, block.documents)
        first += block.documents
        if any(bits[1]):
            yield block.data, block.unit, bits, settings.dedup, settings.val_fraction, settings.stride, counting, partitions


def dedup_pass(settings, specs, tokenizer: BatchTokenizer, progress: Progress):
    """--vocab-from with --dedup: the duplicates found in a pass of their own (no words to count)."""
    from nextword.ingest.dedup import DuplicateFinder

    finder = DuplicateFinder(settings.dedup, spill_dir(settings))
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
        for batch, records in in_order(threads, keys, batches(), depth=settings.workers):
            documents += len(batch.texts)
            if records is not None:
                finder.add(records)
            progress("finding duplicates", documents, None, 0)
    removed = decide(settings, finder, documents)
    return removed, drop_removed(settings, specs, removed, tokenizer), offsets


def leakage_pass(settings, specs, vocabulary: list[str], tokenizer: BatchTokenizer, train_tokens: int, keep=None) -> dict:
    """The leakage report from a pass of its own over the kept documents (the Beam runner's; the
    local runner's pass 2 makes it on the way)."""
    from nextword.ingest.leakage import NgramSpill, ngram_hashes, sample_for

    tokenizer.use_vocabulary(vocabulary, settings.tokenizer)
    sample = sample_for(train_tokens)
    ngrams = NgramSpill(storage.join(spill_dir(settings), "leakage-beam"))
    try:
        for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes, keep=keep):
            if batch.texts:
                _, flat_ids, lengths, _, validation = encode_arguments(tokenizer, None, batch.texts, settings.val_fraction)
                ngrams.add(*ngram_hashes(flat_ids, lengths, validation, settings.stride, sample))
        return ngrams.report(sample)
    finally:
        ngrams.close()
