"""kill -9 at any moment, rerun the same command: it resumes and ends byte-identical."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import synthetic_documents, write_lines
from nextword import faults


def command(corpus, out, dedup: str = "exact", unit: str = "auto"):
    return [sys.executable, "-m", "nextword.cli", "ingest", corpus, "--out", str(out), "--vocab-size", "80",
            "--context", "12", "--shards", "3", "--val-fraction", "0.1", "--workers", "2",
            "--checkpoint-seconds", "0.05", "--batch-bytes", "16384", "--dedup", dedup, "--text-unit", unit]


def directory_bytes(path) -> dict:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


def written_documents(out) -> int:
    try:
        return json.loads((out / ".partial" / "pass2.json").read_text())["documents"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_lines(tmp_path_factory.mktemp("resume") / "corpus.txt",
                       synthetic_documents(12000, seed=11, min_words=10, max_words=90))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("resume") / "clean"
    subprocess.run(command(corpus, out), check=True, capture_output=True, timeout=300)
    return directory_bytes(out)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["counting", "writing", "writing-late"])
def test_kill_9_then_resume_is_byte_identical(tmp_path, corpus, uninterrupted, moment):
    out = tmp_path / "killed"
    rng = random.Random(moment)
    if moment == "counting":  # pass 1 kills itself after counting its second batch (of ~3): a timed kill
        # could land before pass 1 began and pass without testing anything
        environment = {**os.environ, faults.VARIABLE: "counted_batch@2"}
        killed = subprocess.run(command(corpus, out), capture_output=True, timeout=300, env=environment)
        assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
        assert not (out / ".partial" / "pass1.json").exists()  # it died inside pass 1
        subprocess.run(command(corpus, out), check=True, capture_output=True, timeout=300)
        assert directory_bytes(out) == uninterrupted
        return
    process = subprocess.Popen(command(corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    wanted = {"writing": 1, "writing-late": 6000}[moment]  # documents through pass 2 (of 12,000)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and written_documents(out) < wanted:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.05))
    assert process.poll() is None, "the run finished before it could be killed; grow the corpus"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert not (out / "dataset.json").exists()  # nothing claims to be complete
    finished = [name for name in os.listdir(out) if name.endswith(".tfrecord")] if out.exists() else []
    assert finished == []
    subprocess.run(command(corpus, out), check=True, capture_output=True, timeout=300)
    assert directory_bytes(out) == uninterrupted


@pytest.mark.slow
@pytest.mark.parametrize("unit, dedup", [("line", "none"), ("line", "exact"), ("paragraph", "none"),
                                         ("paragraph", "exact")])
def test_kill_9_in_pass_2_of_blocks_resumes_byte_identical(tmp_path, corpus, unit, dedup):
    """One line (or paragraph) a document: pass 2 hands out raw blocks the workers split (with --dedup's
    keep-bits: by paragraph, pass 1's blocks cut again with the counts pass 1 saw) and counts the documents from their results; the resume skips that many
    through document batches."""
    if unit == "paragraph":  # the same lines, three a paragraph: 4,000 documents
        with open(corpus) as handle:
            lines = handle.read().splitlines()
        corpus = str(tmp_path / "paragraphs.txt")
        with open(corpus, "w") as handle:
            handle.write("".join("\n".join(lines[start:start + 3]) + "\n\n" for start in range(0, len(lines), 3)))
    documents = 12000 if unit == "line" else 4000
    clean = tmp_path / "clean"
    subprocess.run(command(corpus, clean, dedup, unit), check=True, capture_output=True, timeout=300)
    out = tmp_path / "killed"
    process = subprocess.Popen(command(corpus, out, dedup, unit), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and written_documents(out) < documents // 4:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed; grow the corpus"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert documents // 4 <= written_documents(out) < documents and not (out / "dataset.json").exists()
    subprocess.run(command(corpus, out, dedup, unit), check=True, capture_output=True, timeout=300)
    assert directory_bytes(out) == directory_bytes(clean)


@pytest.mark.parametrize("ordered_before_crash", [0, 2, 4])
def test_a_crash_while_ordering_shards_resumes_byte_identical(tmp_path, monkeypatch, ordered_before_crash):
    """Pass 3 orders shards one at a time; a crash between any two (or right after a rename, before
    the state is saved) leaves no dataset.json, and the rerun orders only what is missing."""
    from nextword.ingest import writer
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    corpus = write_lines(tmp_path / "c.txt", synthetic_documents(400, seed=3, min_words=5, max_words=40))
    settings = dict(inputs=(corpus,), vocab_size=64, context_length=8, shards=4, val_fraction=0.2, workers=1,
                    windows_per_record=4)
    run_ingest(IngestSettings(out=str(tmp_path / "clean"), **settings))
    real_order_one, calls = writer._order_one, []

    def crash_after_some(data_dir, name, plan):
        if len(calls) == ordered_before_crash:
            real_order_one(data_dir, name, plan)  # renamed into place, but the crash comes before order.json says so
            raise KeyboardInterrupt("simulated crash")
        calls.append(name)
        return real_order_one(data_dir, name, plan)

    monkeypatch.setattr(writer, "_order_one", crash_after_some)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(IngestSettings(out=str(tmp_path / "crashed"), **settings))
    assert not (tmp_path / "crashed" / "dataset.json").exists()
    monkeypatch.setattr(writer, "_order_one", real_order_one)
    run_ingest(IngestSettings(out=str(tmp_path / "crashed"), **settings))
    assert directory_bytes(tmp_path / "crashed") == directory_bytes(tmp_path / "clean")
