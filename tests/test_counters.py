"""Source counters are exact whatever the batch size: each batch carries what was counted since the last one."""

from __future__ import annotations

import dataclasses
import gzip
import json
import zlib

import pytest

from conftest import synthetic_documents
from nextword.ingest import table_sources
from nextword.ingest.sources import InputSpec, iter_documents

SMALL_BATCH = 256  # a few documents per batch: every file spans many batches
LARGE_BATCH = 64 << 20  # the whole corpus in one batch


@dataclasses.dataclass
class DirtyCorpus:
    specs: list[InputSpec]
    expected: dict  # counter name -> the exact total the inputs must produce


def ragged_csv(path) -> dict:
    """Every 7th row has an extra field; every 5th good row carries one invalid UTF-8 byte."""
    lines, skipped, documents, replaced = ["id,text"], 0, 0, 0
    for row, text in enumerate(synthetic_documents(600, seed=11, min_words=1)):
        if row % 7 == 3:
            lines.append(f'{row},"{text}",EXTRA')
            skipped += 1
            continue
        documents += 1
        if row % 5 == 0:
            text += " caf\udcff"  # becomes the byte 0xff on write
            replaced += 1
        lines.append(f'{row},"{text}"')
    path.write_bytes("\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n")
    return dict(skipped_rows=skipped, replaced_bytes=replaced, documents=documents)


def cut_gzip(path) -> dict:
    """A gzip stream cut in the middle: the complete lines before the cut are kept."""
    data = gzip.compress("".join(doc + "\n" for doc in synthetic_documents(500, seed=12, min_words=3)).encode())
    cut = data[: len(data) * 2 // 3]
    path.write_bytes(cut)
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    return dict(truncated_inputs=1, documents=readable.count(b"\n"))


def dirty_text(path) -> dict:
    """Lines with k NUL bytes (k = line % 4) and every 3rd line with two invalid UTF-8 bytes."""
    lines, nul, replaced = [], 0, 0
    for number, text in enumerate(synthetic_documents(400, seed=13)):
        raw = text.encode() + b" nul\x00here" * (number % 4)
        nul += number % 4
        if number % 3 == 0:
            raw += b" bad\xff\xffbytes"
            replaced += 2
        lines.append(raw)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return dict(nul_bytes=nul, replaced_bytes=replaced, documents=len(lines))


def broken_jsonl(path) -> dict:
    """Every 9th line is not JSON, every 10th has no "body" field."""
    lines, skipped = [], 0
    for number, text in enumerate(synthetic_documents(300, seed=14)):
        if number % 9 == 4:
            lines.append('{"body": "unterminated')
        elif number % 10 == 5:
            lines.append(json.dumps({"other": text}))
        else:
            lines.append(json.dumps({"body": text}))
            continue
        skipped += 1
    path.write_text("\n".join(lines) + "\n")
    return dict(skipped_rows=skipped, documents=len(lines) - skipped)


@pytest.fixture
def dirty_corpus(tmp_path, monkeypatch) -> DirtyCorpus:
    # pyarrow counts a CSV block's bad rows when it parses the block: small blocks make the
    # bad rows turn up while later batches are being filled, as in a CSV of gigabytes.
    monkeypatch.setattr(table_sources, "_CSV_BLOCK_BYTES", 4096)
    builders = [("ragged.csv", "csv", "text", ragged_csv), ("cut.txt.gz", "text", None, cut_gzip),
                ("dirty.txt", "text", None, dirty_text), ("broken.jsonl", "jsonl", "body", broken_jsonl)]
    specs, expected = [], dict(skipped_rows=0, replaced_bytes=0, nul_bytes=0, truncated_inputs=0, documents=0)
    for name, file_format, column, build in builders:
        for key, value in build(tmp_path / name).items():
            expected[key] += value
        specs.append(InputSpec(str(tmp_path / name), file_format, column))
    return DirtyCorpus(specs, expected)


def summed_counters(batches) -> tuple[dict, int]:
    """(source counters summed over the batches, number of batches), reading each batch as it comes."""
    totals, count = dict(documents=0), 0
    for batch in batches:
        count += 1
        totals["documents"] += len(batch.texts)
        for key, value in dataclasses.asdict(batch.counters).items():
            totals[key] = totals.get(key, 0) + value
    return totals, count


@pytest.mark.parametrize("batch_bytes", [SMALL_BATCH, LARGE_BATCH])
def test_counters_are_exact_for_any_batch_size(dirty_corpus, batch_bytes):
    totals, batches = summed_counters(iter_documents(dirty_corpus.specs, "skip", batch_bytes=batch_bytes))
    assert totals == dirty_corpus.expected
    assert (batches > 50) if batch_bytes == SMALL_BATCH else (batches == 1)


def test_per_file_streams_add_up_to_the_whole(dirty_corpus):
    """One file per stream, as each Beam worker reads it: the per-file counts sum to the exact totals."""
    alone = [summed_counters(iter_documents([spec], "skip", batch_bytes=SMALL_BATCH))[0] for spec in dirty_corpus.specs]
    assert {key: sum(counts.get(key, 0) for counts in alone) for key in dirty_corpus.expected} == dirty_corpus.expected
    assert alone[1]["truncated_inputs"] == 1 and alone[0]["skipped_rows"] > 50


def test_beam_read_batches_sum_to_the_exact_counters(dirty_corpus):
    pytest.importorskip("apache_beam")
    from nextword.ingest.beam_transforms import read_batches, sum_dicts

    elements = [element for indexed_spec in enumerate(dirty_corpus.specs)
                for element in read_batches(indexed_spec, "skip", SMALL_BATCH)]
    totals = sum_dicts(element[3] for element in elements)
    totals["documents"] = sum(len(element[2]) for element in elements)
    assert totals == dirty_corpus.expected
    assert len(elements) > 50
