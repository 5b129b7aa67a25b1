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


def command(corpus, out):
    return [sys.executable, "-m", "nextword.cli", "ingest", corpus, "--out", str(out), "--vocab-size", "80",
            "--context", "12", "--shards", "3", "--val-fraction", "0.1", "--workers", "2",
            "--checkpoint-seconds", "0.05", "--batch-bytes", "16384"]


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
    process = subprocess.Popen(command(corpus, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    if moment == "counting":
        time.sleep(rng.uniform(2.0, 3.0))  # TensorFlow loaded, pass 1 under way
    else:
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
