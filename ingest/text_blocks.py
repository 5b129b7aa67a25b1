"""Blocks of whole lines or paragraphs for the worker processes to split (text inputs by line or paragraph).

On short lines, cutting each line into a Python bytes object in the main process (and pickling the
list to a worker) was most of the main process's CPU. For text inputs of one line a document the
main process instead cuts raw blocks at a line end (`iter_text_blocks`: read1, rfind and count, in
C), for a paragraph a document right after a blank line (a regular expression over each read),
and the worker splits them (`split_block`): the same documents, counters and order as
`sources.iter_documents`, whatever the blocks; the output does not depend on batches anyway.
Where a run without a blank line nears the paragraph cap (MAX_DOCUMENT_BYTES), the rest of that
file is read here as `iter_documents` reads it (a list of documents: its cap, its error naming the
paragraph's first line); a last line without a line ending that ends in b"\r" (kept, unlike a
line ending's) comes as a list too.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import itertools
import re
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from nextword.ingest import sources
from nextword.ingest.sources import BUILTIN, InputSpec, SourceCounters, count_batch_repairs


# a blank line: whitespace alone (what bytes.strip() removes) between two line ends
_BLANK_LINE = re.compile(rb"\n[ \t\r\x0b\x0c]*\n")


@dataclass
class TextBlock:
    # whole lines, each ending in b"\n" (a last line without one gets it), BOM removed; by paragraph cut
    # after a blank line; or, where the main process split them itself, the documents (a list)
    data: bytes | list
    counters: SourceCounters  # what the main process counted since the previous block (dropped lines, cut .gz)
    unit: str = "line"
    documents: int | None = None  # by line: the block's documents (its lines); by paragraph only its split knows


def keep_bits(keep, first: int, count: int) -> tuple[int, bytes] | None:
    """--dedup's keep-bits of documents first .. first + count - 1 (ingest.dedup.Removed), packed for a
    block job (`kept_of`), with the count the block must split into; None: no --dedup."""
    return None if keep is None else (count, np.packbits(keep.keep(first, count)).tobytes())


def kept_of(texts: list[bytes], bits: tuple[int, bytes] | None) -> list[bytes]:
    """The documents of a block that `keep_bits` keeps (all when None)."""
    if bits is None:
        return texts
    count, packed = bits
    if count != len(texts):  # the count came from the cut or from pass 1: the file changed since
        from nextword.errors import InputError

        raise InputError(f"the inputs changed while being read: a block of {count} documents in pass 1 now holds "
                         f"{len(texts)}", hint="do not modify the corpus during ingest; run the command again")
    return list(itertools.compress(texts, np.unpackbits(np.frombuffer(packed, np.uint8), count=count).tolist()))


def needs_counts(specs: list[InputSpec]) -> bool:
    """Whether a block's document count is known only after its split (an input read by paragraph)."""
    return any(spec.unit == "paragraph" for spec in specs)


def counted_blocks(blocks: Iterator[TextBlock], block_documents: list[int] | None = None) -> Iterator[TextBlock]:
    """`iter_text_blocks`' blocks, each with its document count: from `block_documents` (what pass 1 counted
    in blocks of the same size, in order) when given, else from the cut (by line)."""
    recorded = iter(block_documents) if block_documents is not None else None
    for block in blocks:
        if recorded is not None:
            documents = next(recorded, None)
            if documents is None:
                from nextword.errors import InputError

                raise InputError("the inputs changed while being read: more blocks than in pass 1",
                                 hint="do not modify the corpus during ingest; run the command again")
            block = dataclasses.replace(block, documents=documents)
        yield block


def splits_in_workers(specs: list[InputSpec], skip_documents: int = 0, keep=None, counted: bool = False) -> bool:
    """Whether `iter_text_blocks` can stand in for `iter_documents`: every input a text file of one
    line or one paragraph a document (not --builtin), and nothing to skip (resuming). Documents to
    drop (--dedup's, `keep`) need each block's document count before its split: by line from the
    cut, by paragraph only when pass 1 `counted` its blocks (`counted_blocks`)."""
    units = ("line",) if keep is not None and not counted else ("line", "paragraph")
    return (skip_documents == 0 and bool(specs)
            and all(spec.format == "text" and spec.unit in units and spec.path != BUILTIN for spec in specs))


def _too_long(spec: InputSpec, number: int, on_error: str, counters: SourceCounters) -> None:
    sources._bad_row(spec, f"line {number}", f"longer than {sources.MAX_DOCUMENT_BYTES >> 20} MB", on_error, counters)


def _reads(handle, read_size: int) -> Iterator[bytes]:
    """The input's bytes in reads of at most read_size, a UTF-8 BOM dropped from the first (read_size holds
    it whole). read1: one step of the decompressor at a time, so a cut .gz stream keeps what precedes the cut."""
    first = True
    while chunk := handle.read1(read_size):
        if first:
            first = False
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8):]
        yield chunk  # may be b"" (a read that held the BOM alone): the callers handle an empty read


def _line_blocks(spec: InputSpec, on_error: str, counters: SourceCounters, block_bytes: int = sources.LINE_BLOCK_BYTES
                 ) -> Iterator[tuple[bytes | list, int]]:
    """A text input's whole lines in blocks of about `block_bytes` (counting 64 bytes a line, as
    `iter_documents` counts a document: a worker's tensors grow with the lines), each ending in b"\n"; a
    line over MAX_DOCUMENT_BYTES is dropped (and counted) as `sources._read_lines` drops it. Reads at most
    MAX_DOCUMENT_BYTES at a time, so only a line begun in an earlier read can be over the cap.
    Yields (block, its number of lines)."""
    read_size = min(max(block_bytes, 1 << 16), sources.MAX_DOCUMENT_BYTES)  # a first read that holds a BOM whole
    pending: list[bytes] = []
    size = pending_lines = 0
    with sources._open_binary(spec.path) as handle:
        number, carry, skipping = 0, b"", False
        try:
            for chunk in _reads(handle, read_size):
                if skipping:  # the rest of a line already dropped
                    end = chunk.find(b"\n")
                    if end < 0:
                        continue
                    chunk, skipping = chunk[end + 1:], False
                data = carry + chunk if carry else chunk
                cut = data.rfind(b"\n") + 1
                if carry and cut:  # the line begun in an earlier read ends here: the only one that can be too long
                    end = data.find(b"\n")
                    if end > sources.MAX_DOCUMENT_BYTES:
                        number += 1
                        _too_long(spec, number, on_error, counters)
                        data, cut = data[end + 1:], cut - end - 1
                block, carry = data[:cut], data[cut:]
                if block:
                    lines = block.count(b"\n")
                    number += lines
                    pending.append(block)
                    pending_lines += lines
                    size += len(block) + 64 * lines  # as iter_documents sizes a batch: as many documents a job
                    if size >= block_bytes:
                        yield b"".join(pending), pending_lines
                        pending, size, pending_lines = [], 0, 0
                if len(carry) > sources.MAX_DOCUMENT_BYTES:
                    number += 1
                    _too_long(spec, number, on_error, counters)
                    carry, skipping = b"", True
        except (EOFError, zlib.error, gzip.BadGzipFile):
            if pending:  # what precedes the damage is kept, as line by line
                yield b"".join(pending), pending_lines
            raise
        if pending:
            yield b"".join(pending), pending_lines
        if carry and not skipping:  # a last line without a line ending keeps its bytes as they are
            yield ([carry] if carry.endswith(b"\r") else carry + b"\n"), 1


def _blank_line_end(data: bytes, start: int) -> int:
    """Where the last blank line of data[start:] (begun at a line end) ends, after its b"\n"; 0: none.
    The last empty line by rfind (C), then the regular expression over what follows it alone (a
    Match object for every blank line of the corpus was ~0.3 CPU s a 200 MB here)."""
    last = data.rfind(b"\n\n", start)
    end = last + 2 if last >= 0 else 0
    for end in map(re.Match.end, _BLANK_LINE.finditer(data, last + 1 if last >= 0 else start)):
        pass
    return end


def _paragraph_blocks(spec: InputSpec, on_error: str, counters: SourceCounters, block_bytes: int
                      ) -> Iterator[bytes | list]:
    """A text input's paragraphs in blocks of about `block_bytes`, each cut right after a blank line
    (the last block at the end of the input, given a last line end); where data without a blank line
    passes MAX_DOCUMENT_BYTES, the rest of the input as `sources._paragraphs` reads it (lists of
    documents), the only place a paragraph or a line can pass the cap."""
    # reads of a quarter block: a block passes block_bytes by at most that (the cap: rarely reached)
    read_size = min(max(block_bytes // 4, 1 << 16), sources.MAX_DOCUMENT_BYTES // 4)
    pending: list[bytes] = []
    size = 0
    with sources._open_binary(spec.path) as handle:
        number, carry = 0, b""
        try:
            for chunk in _reads(handle, read_size):
                data = carry + chunk if carry else chunk
                if len(data) > sources.MAX_DOCUMENT_BYTES:  # a paragraph that may pass the cap: line by line
                    if pending:
                        yield b"".join(pending)
                        pending = []
                    batch, size = [], 0
                    for document in sources._paragraphs(spec, on_error, counters, handle, data, number):
                        batch.append(document)
                        size += len(document) + 64
                        if size >= block_bytes:
                            yield batch
                            batch, size = [], 0
                    if batch:
                        yield batch
                    return
                # carry holds no blank line: one that ends in the new chunk begins at carry's last line end
                cut = _blank_line_end(data, max(carry.rfind(b"\n"), 0))
                block, carry = data[:cut], data[cut:]
                if block:
                    number += block.count(b"\n")
                    pending.append(block)
                    # as iter_documents sizes a batch, 64 bytes a document (here: a blank line) on top of its
                    # bytes: a worker's tensors grow with the documents (blocks of raw bytes alone held ~2x more)
                    size += len(block) + 64 * (block.count(b"\n\n") + block.count(b"\n\r\n"))
                    if size >= block_bytes:
                        yield b"".join(pending)
                        pending, size = [], 0
        except (EOFError, zlib.error, gzip.BadGzipFile):
            if pending:  # what precedes the damage is kept, as line by line
                yield b"".join(pending)
            raise
        if pending:
            yield b"".join(pending)
        if carry and not carry.endswith(b"\n") and carry.endswith(b"\r"):  # a last line's b"\r" stays
            yield list(sources._paragraphs(spec, on_error, counters, handle, carry, number))
        elif carry:
            yield carry if carry.endswith(b"\n") else carry + b"\n"


def iter_text_blocks(specs: list[InputSpec], on_error: str, block_bytes: int = 1 << 20) -> Iterator[TextBlock]:
    """Every line or paragraph of every (text, unit line or paragraph) input, in order, in blocks of
    about `block_bytes` (a block never crosses a document or a file); `split_block` gives a block's
    documents. Each block's counters hold what was counted here since the previous block; a last
    empty block carries what was counted after the last line (a damaged .gz, a dropped last line)."""
    running, reported = SourceCounters(), SourceCounters()
    for spec in specs:
        blocks = _paragraph_blocks if spec.unit == "paragraph" else _line_blocks
        for data in sources._guarded(spec, on_error, running, lambda *arguments: blocks(*arguments, block_bytes)):
            data, documents = data if blocks is _line_blocks else (data, None)  # line blocks come with their count
            yield TextBlock(data, running.minus(reported), spec.unit, documents)
            reported = dataclasses.replace(running)
    if running != reported:
        yield TextBlock(b"", running.minus(reported), documents=0)


def split_block(data: bytes | list, counters: SourceCounters, unit: str = "line") -> list[bytes]:
    """A TextBlock's data -> its documents (the lines without their line endings, or the paragraphs:
    runs of non-blank lines joined by b"\n"), as `iter_documents` gives them; counts the repairs the
    tokenizer will make into `counters`."""
    if isinstance(data, list):  # split by the main process already
        count_batch_repairs(data, counters)
        return data
    lines = data.split(b"\n")
    lines.pop()  # after the last b"\n"
    if b"\r" in data:
        lines = [line.rstrip(b"\r") for line in lines]
    if unit == "paragraph":
        lines = _paragraphs_of(lines)
    count_batch_repairs(lines, counters)
    return lines


def _paragraphs_of(lines: list[bytes]) -> list[bytes]:
    """Runs of non-blank lines joined by b"\n" (a blank line: whitespace alone), as sources._paragraphs."""
    paragraphs, current = [], []
    for line in lines:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(b"\n".join(current))
            current = []
    if current:
        paragraphs.append(b"\n".join(current))
    return paragraphs
