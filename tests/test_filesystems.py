"""DATA_DIR and RUN_DIR as URLs: ingest -> verify -> train -> export -> generate through tf.io.gfile.

A local path, a file:// URL (any plain `open`/`os.path` on an artifact path would fail on it)
and TF's in-memory ram:// filesystem (nothing may touch the local disk; it answers exists()
by name prefix and cannot rename directories, like some object stores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import synthetic_documents, write_lines
from nextword import storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base_url(kind: str, tmp_path) -> str:
    if kind == "local":
        return str(tmp_path / "artifacts")
    if kind == "file-url":
        return f"file://{tmp_path}/artifacts"
    return f"ram://nextword-{uuid.uuid4().hex[:8]}/artifacts"


@pytest.mark.parametrize("kind", ["local", "file-url", "ram"])
def test_ingest_train_export_generate_round_trip(tmp_path, kind):
    from nextword.generate.generator import GenerateSettings, Generator
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings
    from nextword.model.settings import TrainSettings
    from nextword.model.train import run_training
    from nextword.tfrecords.verify import verify_dataset

    corpus = write_lines(tmp_path / "corpus.txt", synthetic_documents(120, seed=3))
    base = base_url(kind, tmp_path)
    data_dir, run_dir = storage.join(base, "data"), storage.join(base, "run")

    manifest = run_ingest(IngestSettings(inputs=(corpus,), out=data_dir, vocab_size=48, context_length=6, shards=2,
                                         val_fraction=0.2, seed=2, workers=1))
    _, reports = verify_dataset(data_dir)
    assert len(reports) == 3 and all(report.ok for report in reports)
    summary = run_training(TrainSettings(data_dir=data_dir, out=run_dir, arch="lstm", layers=1, units=8, embedding_dim=4,
                                         batch_size=32, epochs=1, checkpoint_every=20, progress=False))
    assert summary["epochs_completed"] == 1 and summary["validation"]["loss"] > 0
    assert {"run.json", "summary.json", "history.json", "checkpoints", "plots", "export"} <= set(storage.listdir(run_dir))
    assert storage.listdir(storage.join(run_dir, "export")) == ["card.json", "saved_model", "vocab.txt"]
    assert not any(name.startswith("export.") for name in storage.listdir(run_dir))  # no staging dir left

    generator = Generator.load(run_dir)
    samples, _ = generator.generate(["the way of"], GenerateSettings(words=5, greedy=True, seed=1))
    assert len(samples[0].text.split()) >= 5
    assert generator.card["dataset_fingerprint"] == manifest.fingerprint
    if kind == "ram":
        assert not os.path.exists(base.replace("ram://", "/"))  # nothing landed on the local disk
    if kind == "file-url":
        assert os.path.exists(tmp_path / "artifacts" / "run" / "export" / "card.json")


@pytest.mark.slow
def test_the_cli_takes_file_urls_for_data_dir_and_run_dir(tmp_path):
    corpus = write_lines(tmp_path / "corpus.txt", synthetic_documents(80, seed=5))
    data_dir, run_dir = f"file://{tmp_path}/data", f"file://{tmp_path}/run"
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")

    def nextword(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "nextword.cli", *args], capture_output=True, text=True,
                                timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    nextword("ingest", corpus, "--out", data_dir, "--vocab-size", "40", "--context", "5", "--shards", "2",
             "--workers", "1", "--json")
    nextword("verify", data_dir)
    nextword("train", data_dir, "--out", run_dir, "--arch", "lstm", "--layers", "1", "--units", "8", "--embedding-dim", "4",
             "--batch-size", "16", "--max-steps", "6", "--no-progress")
    scored = json.loads(nextword("eval", run_dir, data_dir, "--split", "train", "--json").stdout)
    assert scored["windows"] > 0
    assert os.path.exists(tmp_path / "run" / "export" / "card.json")


def test_ram_filesystem_quirks_are_handled_by_storage():
    base = f"ram://quirks-{uuid.uuid4().hex[:8]}"
    storage.makedirs(storage.join(base, "export.tmp-1", "inner"))
    storage.write_atomic(storage.join(base, "export.tmp-1", "inner", "file.bin"), b"payload")
    # TF's ram:// says a path exists when another path merely starts with it.
    assert storage.gfile.exists(storage.join(base, "export"))
    assert not storage.exists(storage.join(base, "export")) and not storage.isdir(storage.join(base, "export"))
    storage.rename(storage.join(base, "export.tmp-1"), storage.join(base, "export"))
    with storage.open_file(storage.join(base, "export", "inner", "file.bin")) as handle:
        assert handle.read() == b"payload"
    assert storage.listdir(base) == ["export"]
