"""--dedup and the leakage report on tiny corpora with planted duplicates."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

from conftest import synthetic_documents, write_lines
from nextword.ingest.dedup import BANDS, ROWS, band_keys, minhash, shingle_hashes
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings


def distinct_documents(count: int, seed: int, words: int = 60, vocabulary: int = 50_000) -> list[str]:
    """Documents of `words` random words of `vocabulary`: no two are near each other."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(vocabulary)}" for _ in range(words)) for _ in range(count)]


def edited(document: str, changes: int, seed: int) -> str:
    """A near duplicate: `changes` words replaced (a changed date, a name)."""
    rng = random.Random(seed)
    words = document.split()
    for place in rng.sample(range(len(words)), changes):
        words[place] = f"changed{rng.randrange(1000)}"
    return " ".join(words)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """200 distinct documents of 150 words, then 20 exact copies (other case, punctuation, spacing)
    and 20 near copies (2 words changed: Jaccard of 5-gram shingles 136/156 = 0.87, caught with
    probability 99.8%) of earlier ones."""
    base = distinct_documents(200, seed=1, words=150)
    exact = [base[index].upper().replace(" ", " ,  ", 3) + "!" for index in range(0, 100, 5)]
    near = [edited(base[index], 2, seed=index) for index in range(100, 200, 5)]
    lines = base + exact + near
    order = random.Random(2).sample(range(200, 240), 40)  # copies come after their originals
    corpus = write_lines(tmp_path_factory.mktemp("dedup") / "planted.txt", base + [lines[i] for i in order])
    return corpus


def settings(corpus, out, **overrides):
    values = dict(inputs=(corpus,), out=str(out), vocab_size=500, context_length=8, shards=2, val_fraction=0.2,
                  workers=1)
    return IngestSettings(**{**values, **overrides})


def test_exact_and_near_duplicates_are_found_without_false_positives(tmp_path, planted):
    none = run_ingest(settings(planted, tmp_path / "none", dedup="none"))
    exact = run_ingest(settings(planted, tmp_path / "exact", dedup="exact"))
    near = run_ingest(settings(planted, tmp_path / "near", dedup="near"))
    assert "dedup" not in none.extra and none.counters.documents == 240
    assert exact.extra["dedup"]["exact_duplicates"] == 20 and exact.extra["dedup"]["near_duplicates"] == 0
    assert near.extra["dedup"]["exact_duplicates"] == 20 and near.extra["dedup"]["near_duplicates"] == 20
    kept = {name: sum(split.documents for split in manifest.splits.values()) for name, manifest
            in (("none", none), ("exact", exact), ("near", near))}
    assert kept == {"none": 240, "exact": 220, "near": 200}
    # the counts removed are what the kept splits lost
    for manifest in (exact, near):
        report = manifest.extra["dedup"]
        assert report["words_removed"] == report["documents_removed"] * 150
        lost = sum(none.splits[name].windows - manifest.splits[name].windows for name in none.splits)
        assert report["windows_removed"] == lost
        assert manifest.counters.documents == 240  # rows read, as before


def test_dedup_none_keeps_the_identity_of_datasets_written_before_it(tmp_path, planted):
    old = settings(planted, tmp_path / "a", dedup="none")
    new = settings(planted, tmp_path / "a", dedup="exact")
    from nextword.ingest.sources import resolve_inputs

    specs = resolve_inputs([planted], "auto", None)
    assert "dedup" not in old.identity(specs) and new.identity(specs)["dedup"] == "exact"
    run_ingest(old)
    from nextword.errors import ArtifactError

    with pytest.raises(ArtifactError, match="--dedup: the dataset has none, this command asks for exact"):
        run_ingest(new)


def directory_bytes(path) -> dict:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


def test_near_dedup_is_byte_identical_for_any_workers_and_batch_size(tmp_path, planted):
    one = run_ingest(settings(planted, tmp_path / "one", dedup="near", workers=1))
    run_ingest(settings(planted, tmp_path / "two", dedup="near", workers=2, batch_bytes=2048))
    assert one.extra["dedup"]["documents_removed"] == 40
    assert directory_bytes(tmp_path / "one") == directory_bytes(tmp_path / "two")


def test_minhash_bands_catch_similar_pairs_and_not_dissimilar_ones():
    """The S curve the README documents: at Jaccard ~0.9 nearly always, at ~0.3 almost never."""
    rng = np.random.default_rng(0)
    caught = {"similar": 0, "dissimilar": 0}
    for trial in range(200):
        words = rng.integers(0, 1 << 62, 200, dtype=np.uint64)
        similar = words.copy()
        similar[rng.choice(200, 2, replace=False)] = rng.integers(0, 1 << 62, 2, dtype=np.uint64)  # J ~ 0.9
        dissimilar = words.copy()
        dissimilar[rng.choice(200, 40, replace=False)] = rng.integers(0, 1 << 62, 40, dtype=np.uint64)  # J ~ 0.3
        flat = np.concatenate([words, similar, dissimilar])
        shingles, document = shingle_hashes(flat, np.array([200, 200, 200]))
        keys = band_keys(minhash(shingles, document, 3))
        caught["similar"] += bool((keys[0] == keys[1]).any())
        caught["dissimilar"] += bool((keys[0] == keys[2]).any())
    assert BANDS * ROWS == 128
    assert caught["similar"] >= 196 and caught["dissimilar"] <= 4


def test_leakage_report_finds_planted_cross_split_near_duplicates(tmp_path):
    """Near copies land in either split by their own text's hash: with --dedup exact they stay and
    leak; --dedup near removes them; a corpus of distinct documents reports ~0."""
    base = distinct_documents(300, seed=5, vocabulary=2000)  # every word has an id: runs of <unk> would match
    copies = [edited(document, 1, seed=index) for index, document in enumerate(base[:150])]
    corpus = write_lines(tmp_path / "leaky.txt", base + copies)
    clean = write_lines(tmp_path / "clean.txt", base)
    leaky = run_ingest(settings(corpus, tmp_path / "leaky", dedup="exact", val_fraction=0.3, vocab_size=3000)).extra["leakage"]
    fixed = run_ingest(settings(corpus, tmp_path / "fixed", dedup="near", val_fraction=0.3, vocab_size=3000)).extra["leakage"]
    none = run_ingest(settings(clean, tmp_path / "clean", dedup="none", val_fraction=0.3, vocab_size=3000)).extra["leakage"]
    assert leaky["ngram"] == 13 and leaky["sample"] == 1
    assert leaky["share"] > 0.2  # a val copy's original is in train ~70% of the time, half the docs are copies
    assert fixed["share"] < 0.01 and none["share"] == 0.0
    assert none["val_windows_checked"] > 0


def test_inspect_prints_the_dedup_and_leakage_lines(tmp_path, planted):
    from nextword.ingest.cli import dedup_lines, summary_dict

    manifest = run_ingest(settings(planted, tmp_path / "out", dedup="near"))
    lines = dedup_lines(summary_dict(manifest, str(tmp_path / "out")))
    assert lines[0].startswith("dedup near: 40 documents removed (20 exact, 20 near duplicates)")
    assert lines[1].startswith("leakage: ")
    written = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert written["extra"]["dedup"]["documents_removed"] == 40


def test_duplicates_in_a_synthetic_corpus_are_few(tmp_path):
    """The synthetic corpora of the other tests hold a few chance duplicates (short documents):
    exact dedup drops only true ones."""
    lines = synthetic_documents(300, seed=3, min_words=3, max_words=30)
    corpus = write_lines(tmp_path / "c.txt", lines)
    manifest = run_ingest(settings(corpus, tmp_path / "out"))
    normalised = [" ".join(line.lower().split()) for line in lines if line.split()]
    assert manifest.extra["dedup"]["exact_duplicates"] == len(normalised) - len(set(normalised))


def test_beam_runner_drops_the_same_documents_as_the_local_one(tmp_path, planted):
    """Two inputs (positions run on across them), near dedup: the same dataset.json and windows."""
    pytest.importorskip("apache_beam")
    from test_beam_ingest import assert_same_dataset

    from nextword.ingest.beam import run_beam_ingest

    second = write_lines(tmp_path / "second.txt", open(planted).read().splitlines()[150:])  # copies of the first
    common = dict(inputs=(planted, second), vocab_size=500, context_length=8, shards=2, val_fraction=0.2, workers=1,
                  dedup="near")
    local = run_ingest(IngestSettings(out=str(tmp_path / "local"), **common))
    run_beam_ingest(IngestSettings(out=str(tmp_path / "beam"), **common))
    assert local.extra["dedup"]["documents_removed"] == 40 + 90
    assert_same_dataset(str(tmp_path / "local"), str(tmp_path / "beam"))


def test_kill_9_in_pass_2_of_near_dedup_then_resume_is_byte_identical(tmp_path, planted):
    """Killed right after pass 2's third checkpoint (the dropped documents' bits and the leakage hashes
    on disk), the same command resumes and ends with the bytes of an uninterrupted run. The killed run
    is a process of its own (started in a session of its own: its encoder processes go with it); the
    clean and the resumed runs are in this one (TensorFlow is imported once), with the CLI's settings."""
    import signal
    import subprocess
    import sys

    from nextword import faults

    options = dict(dedup="near", vocab_size=500, context_length=8, shards=2, val_fraction=0.2, workers=2,
                   batch_bytes=16384, checkpoint_seconds=0)
    run_ingest(settings(planted, tmp_path / "clean", **options))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nextword.cli", "ingest", planted, "--out", str(out), "--dedup", "near",
               "--vocab-size", "500", "--context", "8", "--shards", "2", "--val-fraction", "0.2", "--workers", "2",
               "--batch-bytes", "16384", "--checkpoint-seconds", "0"]
    with open(tmp_path / "stderr", "w+b") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                   env={**os.environ, faults.VARIABLE: "pass2_checkpoint@3"})
        try:
            process.wait(timeout=120)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stderr.seek(0)
        assert process.returncode == -signal.SIGKILL, stderr.read().decode()[-2000:]
    assert json.loads((out / ".partial" / "pass2.json").read_text())["documents"] > 0  # died inside pass 2
    assert not (out / "dataset.json").exists()
    run_ingest(settings(planted, out, **options))

    def contents(path):
        return {name: (path / name).read_bytes() for name in sorted(os.listdir(path)) if name != ".partial"}

    assert contents(out) == contents(tmp_path / "clean")
    assert json.loads((out / "dataset.json").read_text())["extra"]["dedup"]["documents_removed"] == 40
