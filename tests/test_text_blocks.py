"""Blocks of whole lines or paragraphs (ingest/text_blocks.py: iter_text_blocks, split_block): the main
process cuts a text input at line ends (after blank lines) and the workers split the blocks into the
same documents `iter_documents` gives, whatever the block size; an ingest through blocks writes the
same bytes as one through documents."""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np
import pytest

from conftest import synthetic_documents, write_lines
from nextword.errors import InputError
from nextword.ingest import pipeline, sources, text_blocks
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.ingest.sources import InputSpec, SourceCounters, iter_documents
from nextword.ingest.text_blocks import iter_text_blocks, split_block


def spec_of(path, unit: str = "line") -> InputSpec:
    return InputSpec(str(path), "text", None, unit)


def through_blocks(specs, block_bytes: int, on_error: str = "skip") -> tuple[list[bytes], list[bytes], dict]:
    """(the documents the blocks split into, the blocks, the counters summed over blocks and splits)."""
    documents, blocks, counters = [], [], SourceCounters()
    for block in iter_text_blocks(specs, on_error, block_bytes=block_bytes):
        blocks.append(block.data)
        split = SourceCounters()
        documents += split_block(block.data, split, block.unit)
        for each in (block.counters, split):
            for name, value in dataclasses.asdict(each).items():
                setattr(counters, name, getattr(counters, name) + value)
    return documents, blocks, dataclasses.asdict(counters)


def through_documents(specs, on_error: str = "skip") -> tuple[list[bytes], dict]:
    documents, counters = [], SourceCounters()
    for batch in iter_documents(specs, on_error, batch_bytes=1 << 20):
        documents += batch.texts
        for name, value in dataclasses.asdict(batch.counters).items():
            setattr(counters, name, getattr(counters, name) + value)
    return documents, dataclasses.asdict(counters)


@pytest.mark.parametrize("unit", ["line", "paragraph"])
@pytest.mark.parametrize("seed", range(8))
def test_blocks_split_into_the_documents_line_by_line_reading_gives(tmp_path, monkeypatch, seed, unit):
    """Blocks smaller than one line and larger than many, CRLF, lines and paragraphs over the cap
    (inside a read and longer than one), blank lines of spaces, tabs and \\r, a BOM, a last line without a
    line ending (ending in \\r, kept), invalid UTF-8 and NULs, gzip: the same documents and counters as
    iter_documents, and every block the main process does not split ends at a line end."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 25)
    alphabet = np.frombuffer(b"ab \r\n\n\nxyz\xff\x00\xc3\xa9\t", dtype=np.uint8)
    segments = [rng.choice(alphabet, size=int(rng.integers(1, 60))).tobytes() + b"q" * int(rng.integers(0, 80))
                for _ in range(60)]  # runs of q: lines over the cap, some longer than a block
    data = (b"\xef\xbb\xbf" if seed % 2 else b"") + b"".join(segments)
    data += b"z" * int(rng.integers(0, 60)) * (seed % 3 == 0)  # maybe a long last line, maybe none
    data += b"\r" * (seed % 4 == 2)  # a last line ending in \r, without a line ending
    path = tmp_path / ("lines.txt.gz" if seed % 4 == 1 else "lines.txt")
    path.write_bytes(gzip.compress(data) if seed % 4 == 1 else data)
    specs = [spec_of(path, unit), spec_of(path, unit)]  # two inputs: blocks never cross a file
    expected, expected_counters = through_documents(specs)
    assert expected_counters["skipped_rows"] > 0 and (b"" in expected) == (unit == "line")
    for block_bytes in (1, int(rng.integers(2, 40)), 1 << 20):
        documents, blocks, counters = through_blocks(specs, block_bytes)
        assert documents == expected and counters == expected_counters
        assert all(block.endswith(b"\n") for block in blocks if block and isinstance(block, bytes))
        if block_bytes == 1 and unit == "line":  # a block smaller than one line still holds whole lines
            assert len([block for block in blocks if block]) > len(expected) // 4


def test_empty_files_and_a_file_without_a_final_line_ending(tmp_path):
    empty, last = tmp_path / "empty.txt", tmp_path / "last.txt"
    empty.write_bytes(b"")
    last.write_bytes(b"one\r\ntwo\n\nthree")
    documents, blocks, _ = through_blocks([spec_of(empty), spec_of(last), spec_of(empty)], 4)
    assert documents == [b"one", b"two", b"", b"three"]
    assert b"".join(blocks) == b"one\r\ntwo\n\nthree\n"
    assert through_blocks([spec_of(empty)], 4)[:2] == ([], [])
    carriage = tmp_path / "carriage.txt"  # a last line without a line ending keeps its \r, as line by line
    carriage.write_bytes(b"one\r\ntwo\r")
    for unit in ("line", "paragraph"):
        assert through_blocks([spec_of(carriage, unit)], 4)[0] == through_documents([spec_of(carriage, unit)])[0]
    assert through_blocks([spec_of(carriage)], 4)[0] == [b"one", b"two\r"]


def test_a_cut_gzip_keeps_the_lines_before_the_damage_or_is_refused(tmp_path):
    lines = [f"line {number} of the corpus".encode() for number in range(20000)]
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(packed[: len(packed) // 2])
    expected, counters = through_documents([spec_of(path)])
    documents, _, block_counters = through_blocks([spec_of(path)], 1 << 12)
    assert counters["truncated_inputs"] == 1 and 0 < len(expected) < len(lines)
    assert documents == expected and block_counters == counters
    with pytest.raises(InputError, match="cut short or damaged"):
        list(iter_text_blocks([spec_of(path)], "strict"))


def test_paragraph_blocks_of_prose_are_cut_after_blank_lines_and_split_as_read(tmp_path):
    """Prose with blank lines of nothing, spaces, tabs and CRLF, paragraphs of one to many lines, at the
    real cap: every block is cut right after a blank line and splits into iter_documents' paragraphs."""
    rng = np.random.default_rng(3)
    paragraphs = [b"\n".join(b" ".join(rng.choice([b"the", b"cat", b"sat\r", b"\xc3\xa9t\xc3\xa9"], 7).tolist())
                             for _ in range(int(rng.integers(1, 6)))) for _ in range(3000)]
    separators = [b"\n\n", b"\n  \n", b"\n\t\r\n\n", b"\r\n\r\n"]
    data = b"".join(paragraph + separators[index % 4] for index, paragraph in enumerate(paragraphs))
    path = tmp_path / "prose.txt"
    path.write_bytes(data + b"a last paragraph\nwithout a line ending")
    expected, expected_counters = through_documents([spec_of(path, "paragraph")])
    assert len(expected) == len(paragraphs) + 1
    for block_bytes in (1, 1000, 1 << 20):
        documents, blocks, counters = through_blocks([spec_of(path, "paragraph")], block_bytes)
        assert documents == expected and counters == expected_counters
        assert all(isinstance(block, bytes) for block in blocks)  # no paragraph near the cap: all raw
        assert all(text_blocks._BLANK_LINE.search(block[-12:]) for block in blocks[:-1])


def test_a_paragraph_over_the_cap_is_refused_from_its_first_line_or_dropped(tmp_path, monkeypatch):
    """A paragraph over the cap far into a file cut into raw blocks: the same error as line by line
    (naming its first line) under strict; dropped and counted under skip, the rest kept."""
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 4000)
    short = b"".join(b"paragraph %d\nof two lines\n\n" % number for number in range(300))
    path = tmp_path / "long.txt"
    path.write_bytes(short + b"a line of a long paragraph\n" * 200 + b"\n" + short)
    first_line = short.count(b"\n") + 1
    for reader in (lambda: through_documents([spec_of(path, "paragraph")], "strict"),
                   lambda: through_blocks([spec_of(path, "paragraph")], 256, "strict")):
        with pytest.raises(InputError, match=f"the paragraph from line {first_line}: longer than"):
            reader()
    expected, expected_counters = through_documents([spec_of(path, "paragraph")])
    documents, blocks, counters = through_blocks([spec_of(path, "paragraph")], 256)
    assert documents == expected and counters == expected_counters and counters["skipped_rows"] == 1
    assert len(documents) == 600 and any(isinstance(block, list) for block in blocks)


def test_keep_bits_refuse_a_block_that_no_longer_splits_into_the_documents_counted(tmp_path):
    """A block's keep-bits carry the document count they were cut for (from the cut or from pass 1): a
    file changed since pass 1 is refused, not given other documents' bits."""
    class KeepEven:
        def keep(self, first, count):
            return (np.arange(first, first + count) % 2) == 0

    texts = [b"a", b"b", b"c"]
    assert text_blocks.kept_of(texts, text_blocks.keep_bits(KeepEven(), 1, 3)) == [b"b"]
    with pytest.raises(InputError, match="changed while being read"):
        text_blocks.kept_of(texts, text_blocks.keep_bits(KeepEven(), 0, 4))
    path = tmp_path / "p.txt"
    path.write_bytes(b"one\n\ntwo\n")
    with pytest.raises(InputError, match="more blocks than in pass 1"):
        list(text_blocks.counted_blocks(iter_text_blocks([spec_of(path, "paragraph")], "strict"), []))


def test_a_line_over_the_cap_is_refused_by_number_under_strict(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 25)
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" * 3 + b"x" * 40 + b"\nafter\n")
    with pytest.raises(InputError, match="line 4: longer than"):
        list(iter_text_blocks([spec_of(path)], "strict", block_bytes=8))


def test_only_text_by_line_or_paragraph_without_skip_goes_through_blocks_and_dropping_documents_by_line(tmp_path):
    line = spec_of(tmp_path / "a.txt")
    assert text_blocks.splits_in_workers([line, line])
    assert not text_blocks.splits_in_workers([line], skip_documents=5)
    assert text_blocks.splits_in_workers([line], keep=object())
    assert text_blocks.splits_in_workers([dataclasses.replace(line, unit="paragraph"), line])
    assert not text_blocks.splits_in_workers([dataclasses.replace(line, unit="paragraph")], keep=object())
    assert not text_blocks.splits_in_workers([dataclasses.replace(line, unit="file")])
    assert not text_blocks.splits_in_workers([line, InputSpec(str(tmp_path / "a.jsonl"), "jsonl", "text")])
    assert not text_blocks.splits_in_workers([InputSpec(sources.BUILTIN, "text", None, "line")])
    assert not text_blocks.splits_in_workers([])


def directory_bytes(path) -> dict:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


@pytest.mark.parametrize("workers, unit", [(1, "line"), (2, "line"), (1, "paragraph"), (2, "paragraph")])
def test_an_ingest_through_blocks_writes_the_bytes_of_one_through_documents(tmp_path, monkeypatch, workers, unit):
    documents = synthetic_documents(400, seed=9, min_words=0)
    corpus = write_lines(tmp_path / "c.txt", documents)  # by paragraph: its empty documents are blank lines
    with open(corpus, "ab") as handle:
        handle.write(b"caf\xc3\xa9 \xff broken\r\nlast line without an ending")
    with open(corpus, "rb") as handle:
        compressed = tmp_path / "c2.txt.gz"
        compressed.write_bytes(gzip.compress(handle.read()))
    inputs = (corpus, str(compressed))

    def ingest(out, **overrides):
        return run_ingest(IngestSettings(inputs=inputs, out=str(out), vocab_size=64, context_length=8, shards=3,
                                         val_fraction=0.2, workers=workers, dedup="none", text_unit=unit,
                                         **overrides))

    cut = []  # the blocks pass 1 and pass 2 handed out: proof that the first ingest went through blocks
    monkeypatch.setattr(pipeline, "iter_text_blocks", lambda *arguments, **keywords: (
        cut.append(block) or block for block in text_blocks.iter_text_blocks(*arguments, **keywords)))
    blocks = ingest(tmp_path / "blocks", batch_bytes=700)
    assert len(cut) > 4 and all(block.data.endswith(b"\n") for block in cut if isinstance(block.data, bytes))
    monkeypatch.setattr(pipeline, "splits_in_workers", lambda *arguments, **keywords: False)
    lines = ingest(tmp_path / "lines")
    assert directory_bytes(tmp_path / "blocks") == directory_bytes(tmp_path / "lines")
    assert blocks.counters.documents == lines.counters.documents
    if unit == "line":
        assert blocks.counters.documents == 2 * (len(documents) + 2)
    assert blocks.counters.replaced_bytes == 2


@pytest.mark.parametrize("dedup, unit, workers", [("exact", "line", 2), ("near", "line", 1), ("exact", "paragraph", 2),
                                                  ("near", "paragraph", 2)])
def test_an_ingest_with_dedup_through_blocks_writes_the_bytes_of_one_through_documents(tmp_path, monkeypatch, dedup,
                                                                                       unit, workers):
    """--dedup through blocks: pass 1's records numbered from each block's start and shifted here, the
    dropped documents' re-read and pass 2 through blocks with their keep-bits (by paragraph: pass 1's
    blocks cut again, with the document counts pass 1 saw). The same bytes as through documents,
    duplicates dropped."""
    monkeypatch.setattr(pipeline, "COUNT_BATCH_BYTES", 20000)  # pass 1 in several blocks (a read: 64 KB)
    documents = synthetic_documents(3000, seed=4, min_words=0)
    repeated = documents + documents[:600] + [document + " extra" for document in documents[1000:1400]]
    corpus = tmp_path / "c.txt"
    corpus.write_text(("\n\n" if unit == "paragraph" else "\n").join(repeated) + "\n")

    def ingest(out):
        return run_ingest(IngestSettings(inputs=(str(corpus),), out=str(out), vocab_size=64, context_length=8, shards=3,
                                         val_fraction=0.2, workers=workers, dedup=dedup, text_unit=unit,
                                         batch_bytes=900))

    cut = []
    monkeypatch.setattr(pipeline, "iter_text_blocks", lambda *arguments, **keywords: (
        cut.append(block) or block for block in text_blocks.iter_text_blocks(*arguments, **keywords)))
    counted = []  # pass 2's block counts: pass 1's by paragraph, the cut's (None) by line
    monkeypatch.setattr(pipeline, "counted_blocks", lambda blocks, recorded=None: (
        counted.append(recorded) or text_blocks.counted_blocks(blocks, recorded)))
    blocks = ingest(tmp_path / "blocks")
    assert len(cut) > 8 and blocks.extra["dedup"]["documents_removed"] >= 600
    assert len(counted) == 1 and (counted[0] is not None) == (unit == "paragraph")
    monkeypatch.setattr(pipeline, "splits_in_workers", lambda *arguments, **keywords: False)
    monkeypatch.setattr(text_blocks, "splits_in_workers", lambda *arguments, **keywords: False)
    lines = ingest(tmp_path / "lines")
    assert directory_bytes(tmp_path / "blocks") == directory_bytes(tmp_path / "lines")
    assert blocks.extra["dedup"] == lines.extra["dedup"]
