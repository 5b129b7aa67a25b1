"""--text-unit: what one document of a text input is, how auto picks it, and the short-document warning."""

from __future__ import annotations

import dataclasses
import gzip
import json

import numpy as np
import pytest

from _cli import run_cli
from conftest import synthetic_documents, write_lines
from nextword.ingest import sources
from nextword.ingest.lengths import counts_of, length_counts, profile, short_document_warning
from nextword.ingest.sources import detect_text_unit, iter_documents, resolve_inputs
from nextword.errors import InputError

# Three paragraphs of hard-wrapped prose (~70 characters a line), a blank line between each; the
# last ends without a newline, the second is followed by a line of spaces and a CRLF blank line.
PROSE = (
    "It was the best of times, it was the worst of times, it was the age of\n"
    "wisdom, it was the age of foolishness, it was the epoch of belief, it was\n"
    "the epoch of incredulity.\n"
    "\n"
    "It was the season of Light, it was the season of Darkness, it was the\n"
    "spring of hope, it was the winter of despair.\n"
    "   \n"
    "\r\n"
    "We had everything before us, we had nothing before us, we were all going\n"
    "direct to Heaven, we were all going direct the other way."
)
PARAGRAPHS = [
    b"It was the best of times, it was the worst of times, it was the age of\n"
    b"wisdom, it was the age of foolishness, it was the epoch of belief, it was\n"
    b"the epoch of incredulity.",
    b"It was the season of Light, it was the season of Darkness, it was the\nspring of hope, it was the winter of despair.",
    b"We had everything before us, we had nothing before us, we were all going\n"
    b"direct to Heaven, we were all going direct the other way.",
]


@pytest.fixture
def prose(tmp_path) -> str:
    path = tmp_path / "book.txt"
    path.write_text(PROSE, encoding="utf-8")
    return str(path)


def documents(path: str, unit: str, on_error: str = "strict") -> tuple[list[bytes], int]:
    specs = resolve_inputs([path], "auto", None, unit)
    texts, skipped = [], 0
    for batch in iter_documents(specs, on_error):
        texts += batch.texts
        skipped += batch.counters.skipped_rows
    return texts, skipped


def test_each_unit_cuts_wrapped_prose_as_documented(prose):
    assert documents(prose, "paragraph") == (PARAGRAPHS, 0)
    assert documents(prose, "file") == ([PROSE.encode()], 0)
    lines, _ = documents(prose, "line")
    assert len(lines) == 10 and lines[3] == b"" and lines[0] == PROSE.encode().split(b"\n")[0]


def test_auto_reads_wrapped_prose_by_paragraph_and_one_item_a_line_by_line(prose, tmp_path):
    assert detect_text_unit(prose) == "paragraph"
    compressed = tmp_path / "book.txt.gz"
    compressed.write_bytes(gzip.compress(PROSE.encode()))
    assert resolve_inputs([str(compressed)], "auto", None)[0].unit == "paragraph"
    # one document a line, some of them empty (5%): long lines, so the empties glue nothing together
    items = synthetic_documents(200, seed=3, min_words=20, max_words=60)
    items[::20] = [""] * len(items[::20])
    assert detect_text_unit(write_lines(tmp_path / "items.txt", items)) == "line"
    # short lines with no blank line at all: verses, a word list
    assert detect_text_unit(write_lines(tmp_path / "words.txt", ["alpha", "beta", "gamma"] * 50)) == "line"
    assert detect_text_unit(write_lines(tmp_path / "empty.txt", [])) == "line"
    # an explicit unit is taken as given, and only text inputs have one
    assert resolve_inputs([prose], "auto", None, "line")[0].unit == "line"
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps({"text": "a b"}) + "\n")
    assert resolve_inputs([str(jsonl)], "auto", None, "paragraph")[0].unit is None


def test_a_paragraph_over_the_document_cap_is_refused_or_skipped_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 40)
    path = write_lines(tmp_path / "big.txt", ["short one", "", "a line of twenty-one", "another of twenty-two.", "",
                                              "last one"])
    with pytest.raises(InputError, match="the paragraph from line 3: longer than") as refused:
        documents(path, "paragraph")
    assert "else pass --text-unit line" in str(refused.value)
    assert documents(path, "paragraph", on_error="skip") == ([b"short one", b"last one"], 1)
    with pytest.raises(InputError, match="whole file"):
        documents(path, "file")


def test_length_profile_and_padding_share_by_hand():
    # lengths 0, 3, 5 at context 4: windows 0 + 2 + 4; padding (4-1)+(4-2) = 5 and 3+2+1+0 = 6
    counters = {}
    for batch in ([0, 3], [5]):  # summed over batches, as both runners do
        for key, value in length_counts(np.array(batch)).items():
            counters[key] = counters.get(key, 0) + value
    shown = profile(*counts_of(counters), context_length=4)
    assert shown["documents"] == 3 and shown["mean"] == pytest.approx(8 / 3, abs=0.01)
    assert shown["quantiles"] == {"p10": 0, "p50": 3, "p90": 5, "p99": 5, "max": 5}
    assert shown["histogram"] == {"0": 1, "2-3": 1, "4-7": 1}
    assert shown["padding_share"] == pytest.approx(11 / 24, abs=1e-4)
    # long documents are bucketed by powers of two above 1,023 words
    long = profile(*counts_of(length_counts(np.array([1500, 5000, 5000]))), context_length=44)
    assert long["quantiles"]["p50"] == 4096 and long["histogram"] == {"1024-2047": 1, "4096-8191": 2}
    assert long["mean"] == pytest.approx(11500 / 3, abs=0.01)


def test_the_warning_says_what_to_do_for_the_inputs_at_hand():
    short = {"quantiles": {"p50": 9}, "mean": 9.4, "padding_share": 0.84}
    by_line = short_document_warning(short, 44, [{"format": "text"}])
    assert "median document has 9 words" in by_line and "84%" in by_line and "--text-unit paragraph" in by_line
    rows = short_document_warning(short, 44, [{"format": "jsonl"}])
    assert "--text-unit" not in rows and "shorter --context" in rows
    assert short_document_warning(short, 8, [{"format": "text"}]) is None
    assert short_document_warning(None, 44, []) is None


def test_ingest_records_the_unit_warns_on_fragments_and_inspect_shows_the_lengths(prose, tmp_path):
    common = ["--vocab-size", "40", "--val-fraction", "0", "--workers", "1", "--json"]
    by_line = run_cli("ingest", prose, "--out", str(tmp_path / "lines"), "--text-unit", "line", *common)
    assert by_line.exit_code == 0, by_line.output
    summary = json.loads(by_line.stdout)
    assert summary["splits"]["train"]["documents"] == 10
    assert summary["inputs"][0]["text_unit"] == "line"
    assert len(summary["warnings"]) == 1 and "--text-unit paragraph" in summary["warnings"][0]

    auto = run_cli("ingest", prose, "--out", str(tmp_path / "auto"), "--context", "8", *common)
    summary = json.loads(auto.stdout)
    assert summary["splits"]["train"]["documents"] == 3 and summary["inputs"][0]["text_unit"] == "paragraph"
    assert summary["document_words"]["quantiles"]["p50"] == 25 and summary["warnings"] == []
    with open(tmp_path / "auto" / "dataset.json") as handle:
        manifest = json.load(handle)
    assert manifest["identity"]["inputs"][0]["text_unit"] == "paragraph"  # in the fingerprint

    # the unit is part of what the dataset is: another unit into the same --out is refused, naming it
    again = run_cli("ingest", prose, "--out", str(tmp_path / "auto"), "--context", "8", "--text-unit", "line", *common)
    assert again.exit_code != 0 and "--text-unit: the dataset has paragraph, this command asks for line" in again.output

    shown = run_cli("inspect", str(tmp_path / "lines"), "--windows", "0")
    assert shown.exit_code == 0, shown.output
    assert "words a document: median" in shown.output and "8-15 words" in shown.output
    assert "warning: documents are short" in shown.output


def test_a_line_read_dataset_keeps_its_pre_text_unit_fingerprint(tmp_path):
    """Reading by line (the only unit before 0.3) leaves the identity as 0.2 wrote it, so rerunning
    a 0.2 command on its dataset still finds it complete."""
    from nextword.ingest.settings import IngestSettings, input_identity

    path = write_lines(tmp_path / "verses.txt", synthetic_documents(20, seed=1, min_words=20))
    spec = resolve_inputs([path], "auto", None)[0]
    assert spec.unit == "line" and "text_unit" not in input_identity(spec)
    # --dedup none --layout spans: what 0.2 did (today's defaults, exact dedup and packed records, are another
    # dataset, refused by name)
    settings = IngestSettings(inputs=(path,), out=str(tmp_path / "out"), dedup="none", layout="spans")
    assert settings.legacy_fingerprint([spec]) != ""
    paragraph = resolve_inputs([path], "auto", None, "paragraph")
    assert settings.legacy_fingerprint(paragraph) == "" and settings.fingerprint(paragraph) != settings.fingerprint([spec])
    assert dataclasses.replace(settings, layout="packed").legacy_fingerprint([spec]) == ""  # packed came with 0.3



def _reference_lines(data: bytes, cap: int) -> list[bytes | None]:
    """The line rule, spelled simply: split at b"\\n", strip "\\r"s before it (a last line without
    one keeps its bytes), drop a BOM opening the file, None for a line over the cap."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    pieces = data.split(b"\n")
    last = pieces.pop()
    lines = pieces + ([last] if last else [])  # the cap counts a line's bytes before its "\r"s go
    return [None if len(line) > cap else line.rstrip(b"\r") if number < len(pieces) else line
            for number, line in enumerate(lines)]


@pytest.mark.parametrize("seed", range(6))
def test_block_reads_split_lines_exactly_as_the_rule_says(tmp_path, monkeypatch, seed):
    """Lines crossing block boundaries, CRLF, lines over the cap (inside a block and longer than
    one), a BOM, a last line without a line ending: block reads give the reference's lines."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(sources, "LINE_BLOCK_BYTES", int(rng.integers(3, 40)))
    monkeypatch.setattr(sources, "MAX_DOCUMENT_BYTES", 25)
    alphabet = np.frombuffer(b"ab \r\n\n\nxyz", dtype=np.uint8)
    segments = [rng.choice(alphabet, size=int(rng.integers(1, 60))).tobytes() + b"q" * int(rng.integers(0, 80))
                for _ in range(60)]  # runs of q: lines over the cap, some longer than a block
    data = (b"\xef\xbb\xbf" if seed % 2 else b"") + b"".join(segments)
    data += b"z" * int(rng.integers(0, 60)) * (seed % 3 == 0)  # maybe a long last line, maybe none
    path = tmp_path / "lines.txt"
    path.write_bytes(data)
    counters = sources.SourceCounters()
    got = list(sources._read_lines(sources.InputSpec(str(path), "text", None, "line"), "skip", counters))
    expected = _reference_lines(data, 25)
    assert got == expected and counters.skipped_rows == expected.count(None) > 0
