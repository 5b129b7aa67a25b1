"""Write-time shuffle, measured as mixing: a corpus written topic after topic, ingested into ONE
shard and read with a small shuffle buffer, still gives batches that hold about as many topics as a
uniform draw would. The reader's chunk shuffle alone cannot do that (tests/test_reader_spans.py shows
the same measure catching topic-ordered records), and its per-epoch regrouping of records spans
only ~regroup_bytes of a large corpus, so the mixing comes from the ingest's record order. Read here
without regrouping (regroup_bytes=1: blocks of one chunk), as a corpus far above regroup_bytes is."""

import numpy as np
import pytest

from conftest import write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.tfrecords.manifest import load_manifest, load_vocabulary
from nextword.tfrecords.reader import ReaderConfig, make_dataset

TOPICS, WORDS_PER_TOPIC, BATCH = 8, 40, 64


def topic_corpus(path) -> str:
    rng = np.random.default_rng(0)
    documents = [" ".join(f"t{topic}w{word}" for word in rng.integers(0, WORDS_PER_TOPIC, size=int(rng.integers(20, 60))))
                 for topic in range(TOPICS) for _ in range(40)]  # topic after topic
    return write_lines(path, documents)


@pytest.mark.parametrize("layout", ["spans", "windows"])
def test_first_batches_mix_topics_like_a_uniform_draw(tmp_path, layout):
    out = str(tmp_path / "data")
    run_ingest(IngestSettings(inputs=(topic_corpus(tmp_path / "topics.txt"),), out=out, vocab_size=400,
                              context_length=8, shards=1, val_fraction=0.0, workers=1, layout=layout,
                              windows_per_record=8))
    manifest = load_manifest(out)
    topic_of = np.array([-1, -1] + [int(word[1:word.index("w")]) for word in load_vocabulary(out, manifest)[2:]])
    # The reader permutes chunks of shuffle_buffer windows: here 512 of the corpus's ~12,500 (4%), i.e.
    # 64 records of 8 windows, one per window of the batch. Topic-ordered records would give ~1 topic.
    config = ReaderConfig(batch_size=BATCH, objective="last", seed=1, shuffle_buffer=BATCH * 8, regroup_bytes=1)
    batches = [topic_of[targets.numpy()] for _, targets, _ in make_dataset(out, "train", config).take(10)]
    everything = np.concatenate([topic_of[targets.numpy()] for _, targets, _ in make_dataset(
        out, "train", ReaderConfig(batch_size=1024, objective="last", training=False))])
    share = np.bincount(everything, minlength=TOPICS) / len(everything)
    uniform = float(np.sum(1 - (1 - share) ** BATCH))  # E[distinct topics in BATCH uniform draws]
    assert uniform > 7.5
    assert np.mean([len(set(batch.tolist())) for batch in batches]) >= 0.85 * uniform
