"""Four small robustness bugs found on reading (issue 21), each with the case that exposed it."""

from __future__ import annotations

import json
import os

import pytest

from conftest import synthetic_documents, write_lines
from nextword.errors import ArtifactError


def _settings(corpus: str, out, **overrides):
    from nextword.ingest.settings import IngestSettings

    values = dict(inputs=(corpus,), out=str(out), vocab_size=64, context_length=8, val_fraction=0.2, workers=1)
    return IngestSettings(**{**values, **overrides})


def test_leftover_temporaries_of_a_killed_write_do_not_make_the_directory_foreign(tmp_path):
    """A kill inside storage.write_atomic leaves `vocab.txt.tmp-…` or `dataset.json.tmp-…`; the
    rerun used to refuse the directory as "not a nextword dataset". It resumes, and the leftovers go."""
    from nextword.ingest.pipeline import run_ingest

    corpus = write_lines(tmp_path / "c.txt", synthetic_documents(200, seed=5, min_words=5))
    clean = run_ingest(_settings(corpus, tmp_path / "clean"))
    out = tmp_path / "killed"
    run_ingest(_settings(corpus, out))
    (out / "dataset.json").unlink()  # the kill came while the manifest was being written
    (out / "dataset.json.tmp-0a1b2c3d").write_text('{"format": "nextword-da')
    (out / "vocab.txt.tmp-deadbeef").write_text("<pad>\n")
    resumed = run_ingest(_settings(corpus, out))
    assert resumed.to_json() == clean.to_json()
    assert sorted(os.listdir(out)) == sorted(os.listdir(tmp_path / "clean"))
    (out / "notes.txt").write_text("mine")  # anything else is still somebody else's
    (out / "dataset.json").unlink()
    with pytest.raises(ArtifactError, match="not a nextword dataset"):
        run_ingest(_settings(corpus, out))


def test_ordering_state_is_written_once_per_shard_not_all_shards_each_time(tmp_path, monkeypatch):
    """Each ordered shard used to rewrite one order.json holding every shard done so far: quadratic
    in the shard count. Now each shard's entry is written once, and its size does not grow."""
    from nextword.ingest import writer
    from nextword.ingest.pipeline import run_ingest

    written, real_write_state = [], writer.write_state

    def recording(data_dir, name, state):
        if name.endswith(writer.ORDERED_SUFFIX) or name == writer.LEGACY_ORDER_STATE:
            written.append((name, len(json.dumps(state))))
        return real_write_state(data_dir, name, state)

    monkeypatch.setattr(writer, "write_state", recording)
    corpus = write_lines(tmp_path / "c.txt", synthetic_documents(300, seed=6, min_words=5))
    manifest = run_ingest(_settings(corpus, tmp_path / "out", shards=24))
    shards = sum(len(split.shards) for split in manifest.splits.values())
    assert shards >= 25 and len(written) == shards and len({name for name, _ in written}) == shards
    sizes = [size for _, size in written]
    assert max(sizes) < 1024 and sum(sizes) < 1024 * shards  # one entry a write (all 25 at once: ~6 KB)


def test_a_manifest_from_a_newer_nextword_is_refused_by_name_not_with_a_type_error(tiny_dataset, tmp_path):
    from nextword.tfrecords.manifest import Manifest

    with open(os.path.join(tiny_dataset, "dataset.json")) as handle:
        manifest = json.load(handle)
    for where, change in (("packing", lambda m: m.update(packing="documents")),
                          ("splits.train.shards[0].spans", lambda m: m["splits"]["train"]["shards"][0].update(spans=3)),
                          ("counters.duplicates", lambda m: m["counters"].update(duplicates=2))):
        newer = json.loads(json.dumps(manifest))
        change(newer)
        newer["created_by"] = "nextword 9.0.0"
        with pytest.raises(ArtifactError, match=rf"does not know: {where.replace('[', '.').replace(']', '.')}; "
                                                r"it was written by nextword 9\.0\.0"):
            Manifest.from_json(json.dumps(newer))
    assert Manifest.from_json(json.dumps(manifest)).vocab_size == manifest["vocab_size"]


def test_the_beam_vocabulary_index_belongs_to_the_list_it_is_asked_about():
    """It was cached by id() alone: a freed vocabulary's index was served for the next list that
    got the same address (199 of 200 lists in a row, measured)."""
    pytest.importorskip("apache_beam")
    from nextword.ingest.beam_transforms import _vocabulary_index

    wrong = 0
    for number in range(200):
        vocabulary = ["<pad>", "<unk>", f"word{number}"]
        wrong += _vocabulary_index(vocabulary).get(f"word{number}".encode()) != 2
        del vocabulary
    assert wrong == 0
