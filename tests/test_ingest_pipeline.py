"""End to end: ingest writes every window, a faithful manifest, and the same bytes however it runs."""

import gzip
import json
import os

import pandas as pd
import pytest

from conftest import dataset_windows, synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.errors import ArtifactError
from nextword.tfrecords.manifest import load_manifest, load_vocabulary


def ingest(inputs, out, **overrides):
    settings = dict(inputs=tuple(str(path) for path in inputs), out=str(out), vocab_size=64, context_length=8,
                    shards=3, val_fraction=0.2, workers=1)
    settings.update(overrides)
    return run_ingest(IngestSettings(**settings))


def read_split(data_dir, manifest, split):
    return [tuple(window) for window in dataset_windows(data_dir, split)]


def directory_bytes(path) -> dict:
    return {name: (path / name).read_bytes() for name in sorted(os.listdir(path))}


def test_every_window_is_written_and_counted(tiny_dataset, tiny_corpus):
    manifest = load_manifest(tiny_dataset)
    documents = open(tiny_corpus, encoding="utf-8").read().splitlines()
    from nextword.ingest.text import split_words

    word_counts = [len(words) for words in split_words(documents).to_list()]
    assert manifest.counters.documents == len(documents)
    assert manifest.counters.tokens == sum(word_counts)
    assert manifest.counters.empty_documents == sum(1 for count in word_counts if count == 0)
    total_windows = sum(split.windows for split in manifest.splits.values())
    assert total_windows == sum(count - 1 for count in word_counts if count > 0)  # Σ(tokens − 1)
    for name, split in manifest.splits.items():
        assert len(read_split(tiny_dataset, manifest, name)) == split.windows
        assert sum(shard.windows for shard in split.shards) == split.windows
    assert manifest.splits["train"].windows + manifest.splits["val"].windows == total_windows


@pytest.mark.parametrize("layout, windows_per_record, stride",
                         [("packed", 128, 1), ("packed", 3, 1), ("packed", 4, 3), ("spans", 128, 1), ("spans", 4, 3),
                          ("windows", 1, 1), ("windows", 1, 2)])
def test_windows_match_a_plain_python_reference(tmp_path, layout, windows_per_record, stride):
    documents = synthetic_documents(40, seed=5)
    corpus = write_lines(tmp_path / "c.txt", documents)
    manifest = ingest([corpus], tmp_path / "out", val_fraction=0.0, context_length=4, layout=layout,
                      windows_per_record=windows_per_record, stride=stride)
    assert manifest.layout == layout and manifest.stride == stride
    vocabulary = load_vocabulary(str(tmp_path / "out"), manifest)
    index = {word: position for position, word in enumerate(vocabulary)}
    from nextword.ingest.text import split_words

    expected = []
    for words in split_words(documents).to_list():
        ids = [index.get(word.decode(), 1) for word in words]
        for target in range(1, len(ids), stride):
            context = ids[max(0, target - 4):target]
            expected.append(tuple([0] * (4 - len(context)) + context + [ids[target]]))
    assert sorted(read_split(str(tmp_path / "out"), manifest, "train")) == sorted(expected)
    train = manifest.splits["train"]
    assert train.windows == len(expected) == sum(shard.windows for shard in train.shards)
    # the histograms count windows per span; a packed record holds one span or more
    assert all(sum(windows * spans for windows, spans in shard.record_windows) == shard.windows
               and (sum(spans for _, spans in shard.record_windows) >= shard.records if layout == "packed" else
                    sum(spans for _, spans in shard.record_windows) == shard.records) for shard in train.shards)
    assert max(windows for shard in train.shards for windows, _ in shard.record_windows) <= windows_per_record


def test_vocabulary_rule(tmp_path):
    corpus = write_lines(tmp_path / "v.txt", ["b a c b a b", "d c"])  # b:3 a:2 c:2 d:1
    manifest = ingest([corpus], tmp_path / "out", vocab_size=5, val_fraction=0.0, shards=1)
    assert load_vocabulary(str(tmp_path / "out"), manifest) == ["<pad>", "<unk>", "b", "a", "c"]  # a/c tie: by word
    assert manifest.counters.oov_tokens == 1


@pytest.mark.parametrize("layout", ["packed", "spans", "windows"])
def test_identical_for_any_workers_and_batch_size(tmp_path, tiny_corpus, layout):
    ingest([tiny_corpus], tmp_path / "one", workers=1, layout=layout, windows_per_record=4)
    ingest([tiny_corpus], tmp_path / "two", workers=2, batch_bytes=2048, layout=layout, windows_per_record=4)
    assert directory_bytes(tmp_path / "one") == directory_bytes(tmp_path / "two")
    if layout == "packed":  # three worker processes, batches of another size again
        ingest([tiny_corpus], tmp_path / "three", workers=3, batch_bytes=5000, layout=layout, windows_per_record=4)
        assert directory_bytes(tmp_path / "one") == directory_bytes(tmp_path / "three")


def test_two_thousand_shards_under_a_limit_of_256_open_files(tmp_path, tiny_corpus):
    """Shard files are opened only to append a buffer: the open-file limit does not bound --shards."""
    import subprocess
    import sys

    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "from ingest.pipeline import run_ingest\n"
        "from ingest.settings import IngestSettings\n"
        f"m = run_ingest(IngestSettings(inputs=({tiny_corpus!r},), out={str(tmp_path / 'many')!r}, vocab_size=64,"
        " context_length=8, shards=2000, val_fraction=0.2, workers=2, windows_per_record=2))\n"
        "print(len(m.splits['train'].shards), len(m.splits['val'].shards), m.splits['train'].windows)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    train_shards, val_shards, windows = map(int, result.stdout.split()[-3:])
    assert train_shards == 2000 and val_shards >= 1 and windows > 0
    assert len([name for name in os.listdir(tmp_path / "many") if name.endswith(".tfrecord")]) == train_shards + val_shards


def test_formats_give_the_same_windows(tmp_path):
    documents = synthetic_documents(60, seed=2, min_words=1)
    write_lines(tmp_path / "c.txt", documents)
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("".join(doc + "\n" for doc in documents))
    frame = pd.DataFrame({"id": range(len(documents)), "body": documents})
    frame.to_csv(tmp_path / "c.csv", index=False)
    frame.to_csv(tmp_path / "c.tsv.gz", index=False, sep="\t", compression="gzip")
    frame.to_parquet(tmp_path / "c.parquet")
    with open(tmp_path / "c.jsonl", "w") as handle:
        for doc in documents:
            handle.write(json.dumps({"body": doc, "n": 1}) + "\n")
    results = {}
    for name in ("c.txt", "c.txt.gz", "c.csv", "c.tsv.gz", "c.parquet", "c.jsonl"):
        out = tmp_path / f"out-{name}"
        manifest = ingest([tmp_path / name], out, column=None if name.startswith("c.txt") else "body")
        results[name] = (manifest.counters.documents, read_split(str(out), manifest, "train"),
                         (out / "vocab.txt").read_bytes())
    assert len({json.dumps(value[:2]) + value[2].decode() for value in results.values()}) == 1


def test_rerun_is_idempotent_and_other_datasets_are_refused(tmp_path, tiny_corpus):
    out = tmp_path / "out"
    first = ingest([tiny_corpus], out)
    before = directory_bytes(out)
    assert ingest([tiny_corpus], out) == first  # finished and identical: nothing to do
    assert directory_bytes(out) == before
    with pytest.raises(ArtifactError, match="different dataset"):
        ingest([tiny_corpus], out, vocab_size=32)
    replaced = ingest([tiny_corpus], out, vocab_size=32, overwrite=True)
    assert replaced.vocab_size == 32


def test_foreign_directory_is_refused(tmp_path, tiny_corpus):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a nextword dataset"):
        ingest([tiny_corpus], tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_shards_are_samples_of_the_whole_corpus(tiny_dataset):
    manifest = load_manifest(tiny_dataset)
    counts = [shard.windows for shard in manifest.splits["train"].shards]
    assert len(counts) == 2 and min(counts) > 0.7 * max(counts)


def test_builtin_corpus(tmp_path):
    manifest = ingest(["builtin:pydoc-topics"], tmp_path / "b", vocab_size=500, context_length=44, val_fraction=0.1)
    assert manifest.counters.documents > 50 and manifest.counters.tokens > 50_000
    assert manifest.splits["val"].windows > 0


_PEAK_RSS = """
import atexit, resource, runpy, sys
atexit.register(lambda: print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))
sys.argv = ["nextword", *sys.argv[1:]]
runpy.run_module("nextword.cli", run_name="__main__")
"""


def _ingest_peak_rss(corpus: str, out) -> int:
    """Peak RSS in bytes of one `nextword ingest` process (TensorFlow's allocations included)."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS, "ingest", corpus, "--out", str(out), "--vocab-size", "5000",
                             "--workers", "1", "--batch-bytes", "65536", "--json"],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": repo})
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stderr.rsplit("peak_rss_kb", 1)[1].split()[0]) * 1024


@pytest.mark.slow
def test_peak_memory_is_flat_in_corpus_size(tmp_path):
    """8x the corpus and ~8x the distinct words: the process's peak RSS grows by a few MB of word
    counts, not with the corpus (holding its windows would be ~0.5 GB here). RSS, not tracemalloc,
    which sees only Python's allocations and none of TensorFlow's or numpy's."""
    import random

    def corpus(name: str, documents: int) -> str:
        rng = random.Random(documents)
        texts = synthetic_documents(documents, seed=9, min_words=20, max_words=80)
        rare = [" ".join(f"w{rng.randrange(2 * documents)}" for _ in range(5)) for _ in texts]  # distinct words grow
        return write_lines(tmp_path / name, [f"{text} {extra}" for text, extra in zip(texts, rare)])

    small = _ingest_peak_rss(corpus("small.txt", 4000), tmp_path / "s")
    large = _ingest_peak_rss(corpus("large.txt", 32000), tmp_path / "l")
    assert large - small < 120 << 20, (small >> 20, large >> 20)
