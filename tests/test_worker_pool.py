"""ingest/worker_pool.py: the worker processes that tokenize, count and encode for both local passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from conftest import synthetic_documents, write_lines
from nextword.errors import ArtifactError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_kill_9_of_the_main_process_takes_the_forkserver_and_the_workers_with_it():
    """A worker blocks on a queue it holds both ends of, the forkserver on its workers: without
    die_with_parent both outlive a `kill -9` of the main process forever (and keep its pipes open)."""
    script = (
        "import json, os, signal\n"
        "from multiprocessing import forkserver\n"
        "from nextword.ingest.worker_pool import worker_pool\n"
        "pool = worker_pool(2)\n"
        "workers = {pool.submit(os.getpid).result() for _ in range(6)}\n"
        "print(json.dumps(sorted(workers | {forkserver._forkserver._forkserver_pid})), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == -9, result.stderr[-2000:]
    children = json.loads(result.stdout.splitlines()[-1])
    assert len(children) >= 2 and os.getpid() not in children
    deadline = time.monotonic() + 30
    while any(map(_alive, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_workers_load_tensorflow_when_there_are_workers(tmp_path, workers):
    corpus = write_lines(tmp_path / "c.txt", synthetic_documents(200, seed=4, min_words=2))
    script = (
        "import sys\n"
        "from nextword.ingest.pipeline import run_ingest\n"
        "from nextword.ingest.settings import IngestSettings\n"
        f"m = run_ingest(IngestSettings(inputs=({corpus!r},), out={str(tmp_path / 'out')!r}, vocab_size=64,"
        f" context_length=8, shards=2, val_fraction=0.2, workers={workers}, dedup='near'))\n"
        "print(m.splits['train'].windows, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    windows, loaded = result.stdout.split()[-2:]
    assert int(windows) > 100
    assert loaded == str(workers == 1)  # --workers 1 tokenizes here; with workers it only reads and writes


def test_a_worker_refuses_a_vocabulary_file_that_is_not_the_one_pass_1_wrote(tmp_path):
    from nextword.ingest.vocab import vocabulary_bytes
    from nextword.ingest.windows import WindowPlan
    from nextword.ingest.worker_pool import VocabularyFile, window_job

    data, sha256 = vocabulary_bytes(["<pad>", "<unk>", "a", "b"])
    path = tmp_path / "vocab.txt"
    path.write_bytes(data)
    plan = WindowPlan(4, 1, 0, (1, 1))
    block, hashes = window_job(plan, [b"a b a c", b"b"], 0.0, VocabularyFile(str(path), sha256), 1)
    assert block.documents == 2 and sum(int(info["windows"].sum()) for *_, info in block.pieces) == 3
    other = tmp_path / "other.txt"
    other.write_bytes(data + b"c\n")  # not the vocabulary whose sha256 the job names
    with pytest.raises(ArtifactError, match="changed during the ingest"):
        window_job(plan, [b"a"], 0.0, VocabularyFile(str(other), sha256), 1)


def test_a_ram_data_dir_keeps_the_jobs_in_the_process_that_holds_it(tmp_path):
    """ram:// is this process's memory: workers in other processes could not read its vocab.txt or shards."""
    import uuid

    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    corpus = write_lines(tmp_path / "c.txt", synthetic_documents(120, seed=3))
    common = dict(inputs=(corpus,), vocab_size=48, context_length=6, shards=2, val_fraction=0.2, seed=2)
    local = run_ingest(IngestSettings(out=str(tmp_path / "local"), workers=1, **common))
    ram = run_ingest(IngestSettings(out=f"ram://workers-{uuid.uuid4().hex[:8]}/data", workers=2, **common))
    for split in ("train", "val"):
        assert [shard.sha256 for shard in ram.splits[split].shards] == [shard.sha256 for shard in local.splits[split].shards]
