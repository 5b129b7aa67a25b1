"""Bad input gets a clear error naming the file (and row), or is skipped and counted; nothing half-written."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from conftest import synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.errors import InputError, SettingsError


def ingest(inputs, out, **overrides):
    settings = dict(inputs=tuple(str(path) for path in inputs), out=str(out), vocab_size=50, context_length=4,
                    val_fraction=0.0, workers=1)
    settings.update(overrides)
    return run_ingest(IngestSettings(**settings))


def assert_nothing_written(out):
    assert not os.path.exists(os.path.join(out, "dataset.json"))
    assert not [name for name in (os.listdir(out) if os.path.exists(out) else []) if name.endswith(".tfrecord")]


GOOD = "one two three four\nfive six seven eight\n"


def test_ragged_csv_rows(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,text\n1,one two three\n2,four five,EXTRA\n3,six seven\n")
    with pytest.raises(InputError, match=r"ragged\.csv: (Row #3: )?Expected 2 columns, got 3: 2,four five,EXTRA") as error:
        ingest([path], tmp_path / "out", column="text")
    assert "--on-error skip" in error.value.hint
    assert_nothing_written(tmp_path / "out")
    manifest = ingest([path], tmp_path / "skip", column="text", on_error="skip")
    assert manifest.counters.skipped_rows == 1 and manifest.counters.documents == 2


def test_invalid_utf8_nul_and_bom_are_repaired_and_counted(tmp_path):
    path = tmp_path / "dirty.txt"
    path.write_bytes(b"\xef\xbb\xbfalpha beta\n" + b"caf\xe9 au lait \xff\xfe end\n" + b"nul\x00byte here\n")
    manifest = ingest([path], tmp_path / "out")
    assert manifest.counters.replaced_bytes == 3
    assert manifest.counters.nul_bytes == 1
    vocabulary = (tmp_path / "out" / "vocab.txt").read_text(encoding="utf-8").split()
    assert "alpha" in vocabulary and "\ufeffalpha" not in vocabulary  # BOM stripped, not part of a word
    assert "nul" in vocabulary and "byte" in vocabulary  # NUL became a space


def test_invalid_utf8_in_csv(tmp_path):
    path = tmp_path / "dirty.csv"
    path.write_bytes(b"text\n" + b"good words here\n" + b"bad \xff\xfe bytes here\n")
    manifest = ingest([path], tmp_path / "out")
    assert manifest.counters.replaced_bytes == 2 and manifest.counters.documents == 2


def test_empty_and_whitespace_documents(tmp_path):
    path = tmp_path / "gaps.txt"
    path.write_text("one two three\n\n   \t \n!!! ...\nfour five\n")
    manifest = ingest([path], tmp_path / "out", text_unit="line")
    assert manifest.counters.documents == 5
    assert manifest.counters.empty_documents == 3
    assert manifest.splits["train"].windows == 2 + 1
    # by paragraph, blank and whitespace-only lines separate documents and are none themselves
    manifest = ingest([path], tmp_path / "paragraphs", text_unit="paragraph")
    assert manifest.counters.documents == 2 and manifest.counters.empty_documents == 0
    assert manifest.splits["train"].windows == 2 + 1  # "!!! ..." holds no word: "four five" alone


def test_line_over_16_mb(tmp_path):
    path = tmp_path / "long.txt"
    with open(path, "w") as handle:
        handle.write(GOOD)
        handle.write("word " * (17 << 18) + "\n")  # ~21 MB, one line
        handle.write("nine ten eleven\n")
    with pytest.raises(InputError, match=r"long\.txt, line 3: longer than 16 MB"):
        ingest([path], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")
    manifest = ingest([path], tmp_path / "skip", on_error="skip")
    assert manifest.counters.skipped_rows == 1 and manifest.counters.documents == 3


def test_truncated_gzip(tmp_path):
    data = gzip.compress("".join(doc + "\n" for doc in synthetic_documents(400, min_words=5)).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.txt\.gz: the compressed stream is cut short"):
        ingest([path], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")
    manifest = ingest([path], tmp_path / "skip", on_error="skip")
    assert manifest.counters.truncated_inputs == 1 and 0 < manifest.counters.documents < 400


def test_missing_or_ambiguous_column(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("title,body\na b,c d e\n")
    with pytest.raises(InputError, match=r"which column holds the text\? It has \['title', 'body'\]"):
        ingest([path], tmp_path / "out")
    with pytest.raises(InputError, match=r"no column 'text'; it has \['title', 'body'\]"):
        ingest([path], tmp_path / "out", column="text")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps({"body": "a b c"}) + "\n" + json.dumps({"other": "x"}) + "\n")
    with pytest.raises(InputError, match=r"rows\.jsonl, line 2: has no field 'body'"):
        ingest([jsonl], tmp_path / "out", column="body")


def test_empty_corpus_and_missing_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(InputError, match="holds no documents"):
        ingest([empty], tmp_path / "out")
    words = write_lines(tmp_path / "single.txt", ["one", "two", ""])
    with pytest.raises(InputError, match="none with two or more words"):
        ingest([words], tmp_path / "out")
    with pytest.raises(InputError, match=r"nope\.txt: no such file"):
        ingest([tmp_path / "nope.txt"], tmp_path / "out")
    with pytest.raises(InputError, match="is a directory"):
        ingest([tmp_path], tmp_path / "out")
    with pytest.raises(InputError, match="cannot tell the format"):
        ingest([write_lines(tmp_path / "data.bin", ["a b"])], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_settings_are_validated():
    for bad in (dict(vocab_size=2), dict(context_length=0), dict(stride=0), dict(val_fraction=1.0),
                dict(on_error="ignore"), dict(workers=0), dict(format="xml"), dict(shards=0)):
        with pytest.raises(SettingsError):
            IngestSettings(inputs=("x",), out="y", **bad)


def run_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "nextword.cli", *arguments], capture_output=True, text=True, timeout=120)


def test_cli_prints_errors_without_traceback(tmp_path):
    result = run_cli("ingest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "error: " in result.stderr and "missing.csv: no such file" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("ingest", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "pass --builtin" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("inspect", str(tmp_path))
    assert result.returncode == 1 and "not a nextword dataset" in result.stderr and "Traceback" not in result.stderr
