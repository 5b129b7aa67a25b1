"""Blocks of whole lines (ingest/text_blocks.py: iter_text_blocks, split_block): the main process cuts a
text input at line ends and the workers split the blocks into the same documents `iter_documents`
gives, whatever the block size; an ingest through blocks writes the same bytes as one through
documents."""

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


def spec_of(path) -> InputSpec:
    return InputSpec(str(path), "text", None, "line")


def through_blocks(specs, block_bytes: int, on_error: str = "skip") -> tuple[list[bytes], list[bytes], dict]:
    """(the documents the blocks split into, the blocks, the counters summed over blocks and splits)."""
    documents, blocks, counters = [], [], SourceCounters()
    for block in iter_text_blocks(specs, on_error, block_bytes=block_bytes):
        blocks.append(block.data)
        split = SourceCounters()
        documents += split_block(block.data, split)
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


@pytest.mark.parametrize("seed", range(8))
def test_blocks_split_into_the_documents_line_by_line_reading_gives(tmp_path, monkeypatch, seed):
    """Blocks smaller than one line and larger than many, CRLF, lines over the cap (inside a read and
    longer than one), a BOM, a last line without a line ending, invalid UTF-8 and NULs, gzip: the same
    documents and counters as iter_documents, and every block ends at a line end."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 25)
    alphabet = np.frombuffer(b"ab \r\n\n\nxyz\xff\x00\xc3\xa9", dtype=np.uint8)
    segments = [rng.choice(alphabet, size=int(rng.integers(1, 60))).tobytes() + b"q" * int(rng.integers(0, 80))
                for _ in range(60)]  # runs of q: lines over the cap, some longer than a block
    data = (b"\xef\xbb\xbf" if seed % 2 else b"") + b"".join(segments)
    data += b"z" * int(rng.integers(0, 60)) * (seed % 3 == 0)  # maybe a long last line, maybe none
    path = tmp_path / ("lines.txt.gz" if seed % 4 == 1 else "lines.txt")
    path.write_bytes(gzip.compress(data) if seed % 4 == 1 else data)
    specs = [spec_of(path), spec_of(path)]  # two inputs: blocks never cross a file
    expected, expected_counters = through_documents(specs)
    assert expected_counters["skipped_rows"] > 0 and b"" in expected
    for block_bytes in (1, int(rng.integers(2, 40)), 1 << 20):
        documents, blocks, counters = through_blocks(specs, block_bytes)
        assert documents == expected and counters == expected_counters
        assert all(block.endswith(b"\n") for block in blocks if block)
        if block_bytes == 1:  # a block smaller than one line still holds whole lines: one block a line or run
            assert len([block for block in blocks if block]) > len(expected) // 4


def test_empty_files_and_a_file_without_a_final_line_ending(tmp_path):
    empty, last = tmp_path / "empty.txt", tmp_path / "last.txt"
    empty.write_bytes(b"")
    last.write_bytes(b"one\r\ntwo\n\nthree")
    documents, blocks, _ = through_blocks([spec_of(empty), spec_of(last), spec_of(empty)], 4)
    assert documents == [b"one", b"two", b"", b"three"]
    assert b"".join(blocks) == b"one\r\ntwo\n\nthree\n"
    assert through_blocks([spec_of(empty)], 4)[:2] == ([], [])


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


def test_a_line_over_the_cap_is_refused_by_number_under_strict(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 25)
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" * 3 + b"x" * 40 + b"\nafter\n")
    with pytest.raises(InputError, match="line 4: longer than"):
        list(iter_text_blocks([spec_of(path)], "strict", block_bytes=8))


def test_only_text_by_line_without_skip_or_dedup_goes_through_blocks(tmp_path):
    line = spec_of(tmp_path / "a.txt")
    assert text_blocks.splits_in_workers([line, line])
    assert not text_blocks.splits_in_workers([line], skip_documents=5)
    assert not text_blocks.splits_in_workers([line], keep=object())
    assert not text_blocks.splits_in_workers([dataclasses.replace(line, unit="paragraph")])
    assert not text_blocks.splits_in_workers([line, InputSpec(str(tmp_path / "a.jsonl"), "jsonl", "text")])
    assert not text_blocks.splits_in_workers([InputSpec(sources.BUILTIN, "text", None, "line")])
    assert not text_blocks.splits_in_workers([])


def directory_bytes(path) -> dict:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


@pytest.mark.parametrize("workers", [1, 2])
def test_an_ingest_through_blocks_writes_the_bytes_of_one_through_documents(tmp_path, monkeypatch, workers):
    documents = synthetic_documents(400, seed=9, min_words=0)
    corpus = write_lines(tmp_path / "c.txt", documents)
    with open(corpus, "ab") as handle:
        handle.write(b"caf\xc3\xa9 \xff broken\r\nlast line without an ending")
    with open(corpus, "rb") as handle:
        compressed = tmp_path / "c2.txt.gz"
        compressed.write_bytes(gzip.compress(handle.read()))
    inputs = (corpus, str(compressed))

    def ingest(out, **overrides):
        return run_ingest(IngestSettings(inputs=inputs, out=str(out), vocab_size=64, context_length=8, shards=3,
                                         val_fraction=0.2, workers=workers, dedup="none", text_unit="line",
                                         **overrides))

    cut = []  # the blocks pass 1 and pass 2 handed out: proof that the first ingest went through blocks
    monkeypatch.setattr(pipeline, "iter_text_blocks", lambda *arguments, **keywords: (
        cut.append(block) or block for block in text_blocks.iter_text_blocks(*arguments, **keywords)))
    blocks = ingest(tmp_path / "blocks", batch_bytes=700)
    assert len(cut) > 4 and all(block.data.endswith(b"\n") for block in cut if block.data)
    monkeypatch.setattr(pipeline, "splits_in_workers", lambda *arguments: False)
    lines = ingest(tmp_path / "lines")
    assert directory_bytes(tmp_path / "blocks") == directory_bytes(tmp_path / "lines")
    assert blocks.counters.documents == lines.counters.documents == 2 * (len(documents) + 2)
    assert blocks.counters.replaced_bytes == 2
