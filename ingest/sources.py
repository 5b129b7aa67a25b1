"""Stream documents out of CSV/TSV/Parquet/JSONL/text files (optionally .gz), in batches.

Nothing here holds more than one batch: pyarrow reads CSV and Parquet in record batches
(ingest/table_sources.py), text and JSON lines are read line by line with a length cap. Every document comes out as its
raw bytes: repairing them (invalid UTF-8, NUL, controls) is part of the tokenizer definition
(`ingest.text.split_words`), so the export repairs a prompt exactly alike. What the tokenizer
will repair, and what was dropped here, is counted in `SourceCounters`.
One row (CSV/TSV/Parquet/JSONL) is one document; a text file's document is its `--text-unit`:
a line, a paragraph (lines up to a blank line) or the whole file (see `detect_text_unit`).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import gzip
import itertools
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Iterator

from nextword.errors import InputError

FORMATS = ("csv", "tsv", "parquet", "jsonl", "text")
TEXT_UNITS = ("line", "paragraph", "file")  # what one document of a text input is
LINE_BLOCK_BYTES = 4 << 20  # text and JSON lines are read in blocks of this size
UNIT_SAMPLE_BYTES = 1 << 20  # --text-unit auto decides from this much of each text input's start
PARAGRAPH_BLANK_SHARE = 0.02  # ... and picks paragraph when at least this share of its lines are blank
WRAPPED_LINE_BYTES = 120  # ... and 90% of the others are at most this long (hard-wrapped)
MAX_DOCUMENT_BYTES = 16 << 20  # a single line/row over this is malformed input
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text", ".text": "text", ".md": "text"}
BUILTIN = "builtin:pydoc-topics"


@dataclass(frozen=True)
class InputSpec:
    path: str
    format: str
    column: str | None
    unit: str | None = None  # text inputs: line, paragraph or file (auto already resolved)

    @property
    def compressed(self) -> bool:
        return self.path.endswith(".gz")


@dataclass
class SourceCounters:
    skipped_rows: int = 0
    replaced_bytes: int = 0
    nul_bytes: int = 0
    truncated_inputs: int = 0

    def minus(self, earlier: SourceCounters) -> SourceCounters:
        """What was counted since `earlier` (a copy of these counters taken before)."""
        return SourceCounters(*(getattr(self, name) - getattr(earlier, name) for name in _COUNTER_NAMES))


_COUNTER_NAMES = tuple(counter.name for counter in dataclasses.fields(SourceCounters))  # in declaration order


@dataclass
class DocumentBatch:
    texts: list[bytes]  # raw, as read: the tokenizer takes bytes
    first_index: int  # global index of texts[0] in the stream of all documents
    counters: SourceCounters = field(default_factory=SourceCounters)
    read: int = -1  # documents read for this batch, dropped ones included (-1: len(texts), none dropped)

    @property
    def documents_read(self) -> int:
        return len(self.texts) if self.read < 0 else self.read


# ---------------------------------------------------------------- resolving inputs

def detect_format(path: str) -> str:
    stem = path[:-3] if path.endswith(".gz") else path
    extension = os.path.splitext(stem)[1].lower()
    if extension not in _EXTENSIONS:
        raise InputError(
            f"{path}: cannot tell the format from the extension {extension or '(none)'!r}",
            hint=f"pass --format with one of {', '.join(FORMATS)}",
        )
    return _EXTENSIONS[extension]


def detect_text_unit(path: str) -> str:
    """--text-unit auto for one text input, from its first MiB: paragraph when it looks like
    wrapped text in blocks (at least 2% of the lines are blank, not counting those at the end,
    AND 90% of the others are at most 120 bytes: hard-wrapped prose, a book, a dictionary's
    entries, Markdown; a line there is a fragment of a sentence), else line (one item a line:
    verses, tweets, word lists, one article a line, where the odd empty item must not glue its
    neighbours together). A file of one paragraph a line with blank lines between comes out the
    same either way."""
    sample = b""
    with _open_binary(path) as handle:
        try:
            while len(sample) < UNIT_SAMPLE_BYTES and (piece := handle.read(1 << 16)):
                sample += piece
        except (EOFError, zlib.error, gzip.BadGzipFile):
            pass  # a damaged stream: judged on what precedes the damage; reading it reports the damage
    lines = sample[:UNIT_SAMPLE_BYTES].splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines count where they separate text, not at the end
    filled = sorted(len(line) for line in lines if line.strip())
    blank = len(lines) - len(filled)
    if not filled or blank < PARAGRAPH_BLANK_SHARE * len(lines):
        return "line"
    return "paragraph" if filled[int(0.9 * (len(filled) - 1))] <= WRAPPED_LINE_BYTES else "line"


def resolve_inputs(paths: list[str], format: str, column: str | None, text_unit: str = "auto") -> list[InputSpec]:
    """Check every input exists and is readable, and settle its format, text column and (text)
    unit."""
    if not paths:
        raise InputError("no input files given", hint="name one or more INPUT files, or pass --builtin")
    specs = []
    for path in paths:
        if path == BUILTIN:
            specs.append(InputSpec(BUILTIN, "text", None))
            continue
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file", hint="check the path")
        if os.path.isdir(path):
            raise InputError(f"{path} is a directory, expected a file", hint="name the files inside it")
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as error:
            raise InputError(f"{path}: cannot be read ({error.strerror})", hint="check its permissions") from None
        file_format = detect_format(path) if format == "auto" else format
        if file_format not in FORMATS:
            raise InputError(f"--format must be auto or one of {', '.join(FORMATS)}, got {format!r}")
        if file_format == "parquet" and path.endswith(".gz"):
            raise InputError(f"{path}: .gz applies to csv/tsv/jsonl/text; Parquet compresses itself")
        if file_format == "text":
            specs.append(InputSpec(path, file_format, None, detect_text_unit(path) if text_unit == "auto" else text_unit))
        else:
            from nextword.ingest.table_sources import pick_column  # pyarrow loads only for a table input

            specs.append(InputSpec(path, file_format, pick_column(path, file_format, column)))
    return specs


# ---------------------------------------------------------------- decoding

class _ReplacementCounter:
    """A codecs error handler that counts the bytes it replaces with U+FFFD."""

    def __init__(self) -> None:
        self.count = 0
        codecs.register_error("nextword-count", self)

    def __call__(self, error: UnicodeDecodeError) -> tuple[str, int]:
        self.count += error.end - error.start
        return "\ufffd", error.end


_REPLACEMENTS = _ReplacementCounter()


def count_batch_repairs(texts: list[bytes], counters: SourceCounters) -> None:
    """Count what the tokenizer will repair in a batch (it does the repairing, in the graph):
    bytes of ill-formed UTF-8 (each run becomes U+FFFD) and NUL bytes (become spaces). One check
    of the joined batch when it is clean (the usual case), per document otherwise. Joined by
    b"\n", which no multi-byte UTF-8 sequence contains, so the join is valid UTF-8 only when
    every document is."""
    joined = b"\n".join(texts)
    if b"\x00" in joined:
        counters.nul_bytes += joined.count(b"\x00")
    if joined.isascii():
        return
    try:
        joined.decode("utf-8")
    except UnicodeDecodeError:
        for raw in texts:
            if not raw.isascii():
                _count_replacements(raw, counters)


def _count_replacements(raw: bytes, counters: SourceCounters) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        before = _REPLACEMENTS.count
        raw.decode("utf-8", errors="nextword-count")
        counters.replaced_bytes += _REPLACEMENTS.count - before


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


# ---------------------------------------------------------------- readers (raw bytes per document)

def _bad_row(spec: InputSpec, where: str, problem: str, on_error: str, counters: SourceCounters) -> None:
    if on_error == "strict":
        raise InputError(
            f"{spec.path}, {where}: {problem}",
            hint="fix the input, or pass --on-error skip to drop such rows and count them",
        )
    counters.skipped_rows += 1


def _read_lines(spec: InputSpec, on_error: str, counters: SourceCounters, handle=None, start: bytes = b"",
                number: int = 0) -> Iterator[bytes | None]:
    """Yield each line's bytes (no line ending); None for a line dropped as too long.

    Read in LINE_BLOCK_BYTES blocks split at b"\n" (C speed; `readline` per line was the
    serial bottleneck on short lines), a line over the cap dropped without holding it.
    handle: an open input to go on reading, `start` (begun at a line's start) read from it
    already, `number` lines before `start` (ingest/text_blocks.py hands a file over mid-way)."""
    with _open_binary(spec.path) if handle is None else contextlib.nullcontext(handle) as handle:
        carry, skipping, first = b"", False, not start and number == 0
        # read1: one step of the decompressor at a time, so a cut .gz stream keeps what precedes the cut
        reads = iter(lambda: handle.read1(LINE_BLOCK_BYTES), b"")
        for block in itertools.chain([start] if start else [], reads):
            if first:
                first = False
                if block.startswith(codecs.BOM_UTF8):  # a file's encoding mark, not text (and json.loads
                    block = block[len(codecs.BOM_UTF8):]  # refuses it); the tokenizer drops U+FEFF anyway
            lines = (carry + block).split(b"\n") if carry else block.split(b"\n")
            carry = lines.pop()
            for line in lines:
                if skipping:  # the end of a line already dropped
                    skipping = False
                    continue
                number += 1
                if len(line) > MAX_DOCUMENT_BYTES:
                    _bad_row(spec, f"line {number}", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB", on_error, counters)
                    yield None
                    continue
                yield line.rstrip(b"\r")
            if len(carry) > MAX_DOCUMENT_BYTES:
                if not skipping:
                    number += 1
                    _bad_row(spec, f"line {number}", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB", on_error, counters)
                    yield None
                carry, skipping = b"", True
        if carry and not skipping:  # a last line without a line ending keeps its bytes as they are
            number += 1
            if len(carry) > MAX_DOCUMENT_BYTES:
                _bad_row(spec, f"line {number}", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB", on_error, counters)
                yield None
            else:
                yield carry


def _text_documents(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[bytes]:
    if spec.unit == "paragraph":
        yield from _paragraphs(spec, on_error, counters)
    elif spec.unit == "file":
        yield from _whole_file(spec, on_error, counters)
    else:
        yield from (line for line in _read_lines(spec, on_error, counters) if line is not None)


def _paragraphs(spec: InputSpec, on_error: str, counters: SourceCounters, handle=None, start: bytes = b"",
                number: int = 0) -> Iterator[bytes]:
    """Runs of non-blank lines, joined by "\n"; blank (whitespace-only) lines end them and are
    not documents. A paragraph over the document cap is dropped whole, read line by line.
    handle, start, number: as `_read_lines`'s, `start` begun at a paragraph's start."""
    lines: list[bytes] = []
    size, first, dropped = 0, 0, False
    for line in _read_lines(spec, on_error, counters, handle, start, number):
        number += 1
        if line is not None and not line.strip():
            if lines and not dropped:
                yield b"\n".join(lines)
            lines, size, dropped = [], 0, False
            continue
        first = first if lines or dropped else number
        if line is None:  # one line over the cap: _read_lines counted it; the paragraph goes with it
            lines, dropped = [], True
            continue
        size += len(line) + 1
        if dropped:
            continue
        if size > MAX_DOCUMENT_BYTES:
            _bad_row(spec, f"the paragraph from line {first}", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB "
                     "(does the file have blank lines between paragraphs? else pass --text-unit line)", on_error, counters)
            lines, dropped = [], True
            continue
        lines.append(line)
    if lines and not dropped:
        yield b"\n".join(lines)


def _whole_file(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[bytes]:
    with _open_binary(spec.path) as handle:
        data = handle.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        _bad_row(spec, "the whole file", f"longer than {MAX_DOCUMENT_BYTES >> 20} MB, the most one document holds "
                 "(pass --text-unit paragraph or line)", on_error, counters)
        return
    yield data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data


def _jsonl_documents(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[bytes]:
    for number, line in enumerate(_read_lines(spec, on_error, counters), start=1):
        if line is None:
            continue
        if not line.strip():
            continue  # blank separator lines are not documents
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            _bad_row(spec, f"line {number}", f"not valid JSON ({error})", on_error, counters)
            continue
        value = record.get(spec.column) if isinstance(record, dict) else None
        if not isinstance(value, str):
            problem = "is not a JSON object" if not isinstance(record, dict) else (
                f"has no field {spec.column!r}" if spec.column not in record else f"field {spec.column!r} is not a string")
            _bad_row(spec, f"line {number}", problem, on_error, counters)
            continue
        yield value.encode("utf-8", errors="surrogatepass")


def _builtin_documents() -> Iterator[bytes]:
    from pydoc_data.topics import topics  # ships inside every CPython: ~65K words of real prose

    for name in sorted(topics):
        yield topics[name].replace("\n", " ").encode("utf-8")


def _raw_documents(spec: InputSpec, on_error: str, counters: SourceCounters) -> Iterator[bytes]:
    if spec.path == BUILTIN:
        yield from _builtin_documents()
    elif spec.format == "text":
        yield from _text_documents(spec, on_error, counters)
    elif spec.format == "jsonl":
        yield from _jsonl_documents(spec, on_error, counters)
    else:
        from nextword.ingest.table_sources import table_documents  # pyarrow loads only for a table input

        yield from table_documents(spec, on_error, counters)


def _guarded(spec: InputSpec, on_error: str, counters: SourceCounters, reader=None) -> Iterator[bytes]:
    """Turn I/O and decompression failures into InputError naming the file. reader: what to read
    (_raw_documents: the documents; _line_blocks: blocks of whole lines)."""
    try:
        yield from (reader or _raw_documents)(spec, on_error, counters)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        if on_error == "strict":
            raise InputError(
                f"{spec.path}: the compressed stream is cut short or damaged ({error})",
                hint="re-download or re-compress the file, or pass --on-error skip to keep what precedes the damage",
            ) from None
        counters.truncated_inputs += 1
    except OSError as error:
        raise InputError(f"{spec.path}: read failed ({error})", hint="check the file and the disk") from None


def iter_documents(specs: list[InputSpec], on_error: str, batch_bytes: int = 4 << 20,
                   skip_documents: int = 0, keep=None) -> Iterator[DocumentBatch]:
    """Every document of every input, in order, as batches of about `batch_bytes` of text.

    Each batch's counters hold what was counted since the previous batch, so summing them over
    the batches gives exact totals for any batch size.
    skip_documents: documents to pass over first (resuming); they are not decoded.
    keep: None, or an object whose keep(first, count) gives bool[count] (ingest.dedup.Removed):
    a batch then holds only the documents kept, `first_index` and `read` still count them all.
    """
    # One running object for the whole stream: the readers keep the object they were handed
    # (and pyarrow's row handler counts whole blocks ahead), so it must never be swapped out.
    running = SourceCounters()
    reported = SourceCounters()
    texts: list[bytes] = []
    size = 0
    index = 0
    first = skip_documents
    for spec in specs:
        for raw in _guarded(spec, on_error, running):
            index += 1
            if index <= skip_documents:
                continue
            texts.append(raw)
            size += len(raw) + 64
            if size >= batch_bytes:
                count_batch_repairs(texts, running)
                yield _kept(DocumentBatch(texts, first, running.minus(reported)), keep)
                reported = dataclasses.replace(running)
                first += len(texts)
                texts, size = [], 0
    count_batch_repairs(texts, running)
    if texts or running != reported:
        yield _kept(DocumentBatch(texts, first, running.minus(reported)), keep)


def _kept(batch: DocumentBatch, keep) -> DocumentBatch:
    if keep is None:
        return batch
    mask = keep.keep(batch.first_index, len(batch.texts)).tolist()
    return DocumentBatch([text for text, kept in zip(batch.texts, mask) if kept], batch.first_index,
                         batch.counters, len(batch.texts))

