"""`nextword ingest --vocab-from DATA_DIR` (issue 22, item 3): a dataset that reuses another's
tokenizer and vocabulary shares its ids; conflicting options and bad sources are refused; the
reused vocabulary is part of the dataset's identity; Beam writes the local runner's bytes."""

from __future__ import annotations

import collections
import json
import os
import shutil

import pytest

from _cli import run_cli
from conftest import dataset_windows, synthetic_documents, write_lines
from nextword.errors import ArtifactError, SettingsError
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.ingest.vocab_source import resolve
from nextword.tfrecords.manifest import SPLITS, load_manifest, load_vocabulary

UNKNOWN = ("zebra", "quokka")  # in the second corpus only: the source's vocabulary cannot know them
SMALL = dict(context_length=8, shards=2, val_fraction=0.2, seed=1, workers=1)


def flat(text: str) -> str:
    """rich wraps stderr at the console's width: compare words, not line breaks."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[str, str]:
    """Two corpora over one word list; the second also holds words the first never has."""
    directory = tmp_path_factory.mktemp("corpora")
    first = write_lines(directory / "first.txt", synthetic_documents(200, seed=1, min_words=3, max_words=30))
    second = synthetic_documents(150, seed=2, min_words=3, max_words=30)
    second += [f"the {UNKNOWN[0]} and the {UNKNOWN[1]} of a {UNKNOWN[0]}"] * 3
    return first, write_lines(directory / "second.txt", second)


@pytest.fixture(scope="module")
def source(tmp_path_factory, corpora) -> str:
    """The first corpus with a learned word vocabulary of 40 ids."""
    out = str(tmp_path_factory.mktemp("source") / "data")
    run_ingest(IngestSettings(inputs=(corpora[0],), out=out, vocab_size=40, **SMALL))
    return out


@pytest.fixture(scope="module")
def reused(tmp_path_factory, corpora, source) -> str:
    """The second corpus with the source's vocabulary, at another --context (it may differ)."""
    out = str(tmp_path_factory.mktemp("reused") / "data")
    # --dedup none: the tests below count every document's windows (the synthetic corpus repeats some)
    run_ingest(IngestSettings(inputs=(corpora[1],), out=out, vocab_from=source, dedup="none",
                              **{**SMALL, "context_length": 6}))
    return out


def words_of(texts: list[str]) -> list[list[str]]:
    """Each text as the ingest's tokenizer splits it into words."""
    from nextword.ingest.text import split_words

    return [[word.decode() for word in row] for row in split_words(texts).to_list()]


def test_reuse_records_the_source_and_keeps_its_vocabulary(source, reused):
    before, after = load_manifest(source), load_manifest(reused)
    assert after.vocab_sha256 == before.vocab_sha256 and after.vocab_size == before.vocab_size == 40
    assert load_vocabulary(reused, after) == load_vocabulary(source, before)
    assert after.vocab_source == {"path": os.path.realpath(source), "fingerprint": before.fingerprint,
                                  "vocab_sha256": before.vocab_sha256}
    assert after.identity["vocab_from"] == before.vocab_sha256 and after.identity["vocab_size"] == 40
    assert after.tokenizer == before.tokenizer and after.context_length == 6  # --context is free
    assert "vocab_source" not in json.loads(open(os.path.join(source, "dataset.json")).read())  # learned: as before


def test_the_same_word_has_the_same_id_and_unknown_words_are_unk(corpora, source, reused):
    """Every target of the reused dataset is its word's id in the SOURCE's vocab.txt (<unk> when absent)."""
    vocabulary = load_vocabulary(source, load_manifest(source))
    assert not set(UNKNOWN) & set(vocabulary)
    index = {word: position for position, word in enumerate(vocabulary)}
    with open(corpora[1], encoding="utf-8") as handle:
        documents = words_of(handle.read().splitlines())
    # a document of n words has n - 1 windows, whose targets are its words after the first
    expected = collections.Counter(index.get(word, 1) for words in documents for word in words[1:])
    found = collections.Counter(window[-1] for split in SPLITS for window in dataset_windows(reused, split))
    assert found == expected
    unknown = sum(1 for words in documents for word in words if word not in index)
    manifest = load_manifest(reused)
    assert manifest.counters.oov_tokens == unknown and unknown >= 9  # zebra, quokka, zebra: 3 documents
    assert manifest.counters.tokens == sum(map(len, documents))


@pytest.mark.parametrize("tokenizer", ["word", "wordpiece"])
def test_reusing_a_dataset_s_own_vocabulary_on_its_corpus_writes_its_very_bytes(tmp_path, corpora, tokenizer):
    """Pass 1 with a reused vocabulary counts nothing to learn; what it counts (tokens, <unk>, splits,
    words a document, shard sizes) must still be what the learning pass counted."""
    common = dict(inputs=(corpora[0],), **{**SMALL, "shards": None})
    learned = run_ingest(IngestSettings(out=str(tmp_path / "learned"), tokenizer=tokenizer, vocab_size=60, **common))
    again = run_ingest(IngestSettings(out=str(tmp_path / "again"), vocab_from=str(tmp_path / "learned"), **common))
    assert again.tokenizer_choice == tokenizer and again.vocab_sha256 == learned.vocab_sha256
    assert again.splits == learned.splits  # shard files, counts, sizes and sha256
    assert again.counters == learned.counters and again.extra == learned.extra
    assert again.fingerprint != learned.fingerprint  # the identity says the vocabulary was reused


def test_options_that_shape_the_vocabulary_are_taken_from_the_source_or_refused(tmp_path, source, reused):
    common = dict(inputs=("unused.txt",), out=str(tmp_path / "out"), vocab_from=source)
    taken, found = resolve(IngestSettings(**common))
    assert (taken.tokenizer, taken.vocab_size) == ("word", 40) and found.vocab_sha256 == load_manifest(source).vocab_sha256
    same, _ = resolve(IngestSettings(**common, tokenizer="word", vocab_size=40, context_length=3))
    assert (same.tokenizer, same.vocab_size, same.context_length) == ("word", 40, 3)
    for given, expected in ((dict(vocab_size=50), "--vocab-size 50 (its vocabulary was made with --vocab-size 40)"),
                            (dict(tokenizer="wordpiece"), "--tokenizer wordpiece (its tokenizer is word)")):
        with pytest.raises(SettingsError) as raised:
            resolve(IngestSettings(**common, **given))
        assert expected in raised.value.message and "--vocab-from" in raised.value.hint
    refused = run_cli("ingest", "unused.txt", "--out", str(tmp_path / "cli"), "--vocab-from", source, "--vocab-size", "50")
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "--vocab-size 50 (its vocabulary was made with --vocab-size 40)" in flat(refused.stderr)
    assert not os.path.exists(tmp_path / "cli")  # refused before anything was written


def test_a_wordpiece_source_accepts_its_requested_or_its_real_size(tmp_path, corpora):
    out = str(tmp_path / "pieces")
    run_ingest(IngestSettings(inputs=(corpora[0],), out=out, tokenizer="wordpiece", vocab_size=200, **SMALL))
    real = load_manifest(out).vocab_size
    assert real != 200  # the learner stops short of its target on this corpus: both spellings must work
    common = dict(inputs=("unused.txt",), out=str(tmp_path / "out"), vocab_from=out)
    for given in (None, 200, real):
        settings, _ = resolve(IngestSettings(**common, vocab_size=given))
        assert (settings.tokenizer, settings.vocab_size) == ("wordpiece", 200)
    with pytest.raises(SettingsError, match=f"--vocab-size 300 \\(its vocabulary was made with --vocab-size 200, {real} in fact\\)"):
        resolve(IngestSettings(**common, vocab_size=300))


def refusal(tmp_path, source_dir: str, corpus: str) -> str:
    result = run_cli("ingest", corpus, "--out", str(tmp_path / "out"), "--vocab-from", source_dir, "--workers", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert not os.path.exists(tmp_path / "out")
    return flat(result.stderr)


def test_an_unfinished_source_is_refused(tmp_path, corpora, source):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(source, unfinished)
    os.remove(unfinished / "dataset.json")  # what a killed ingest leaves: no manifest, work in .partial
    (unfinished / ".partial").mkdir()
    for name in os.listdir(unfinished):
        if name.endswith(".tfrecord"):
            os.rename(unfinished / name, unfinished / (name + ".partial"))
    message = refusal(tmp_path, str(unfinished), corpora[1])
    assert f"--vocab-from {unfinished}: expected a finished dataset" in message
    assert "the ingest into it did not finish" in message
    assert "expected a dataset directory" in refusal(tmp_path, str(tmp_path / "nowhere"), corpora[1])


def test_a_source_whose_vocab_txt_was_edited_is_refused(tmp_path, corpora, source):
    edited = tmp_path / "edited"
    shutil.copytree(source, edited)
    vocabulary = (edited / "vocab.txt").read_text().splitlines()
    vocabulary[2], vocabulary[3] = vocabulary[3], vocabulary[2]  # same words, other ids
    (edited / "vocab.txt").write_text("".join(word + "\n" for word in vocabulary))
    message = refusal(tmp_path, str(edited), corpora[1])
    assert f"--vocab-from {edited}: its vocabulary cannot be reused" in message
    assert "does not match the sha256 recorded in dataset.json" in message and "restore vocab.txt" in message


def test_a_source_tokenized_by_another_tokenizer_version_is_refused(tmp_path, corpora, source):
    older = tmp_path / "older"
    shutil.copytree(source, older)
    manifest = json.loads((older / "dataset.json").read_text())
    manifest["tokenizer"]["version"] = 1
    (older / "dataset.json").write_text(json.dumps(manifest))
    message = refusal(tmp_path, str(older), corpora[1])
    assert "was tokenized by tokenizer version 1, this nextword's is 2" in message


def test_vocab_from_its_own_out_is_refused(source, corpora):
    result = run_cli("ingest", corpora[1], "--out", source, "--vocab-from", source + "/", "--overwrite")
    assert result.exit_code == 2 and "--vocab-from and --out name the same directory" in flat(result.stderr)
    assert load_manifest(source).vocab_source == {}  # untouched


def test_the_reused_vocabulary_is_part_of_the_out_dir_s_identity(tmp_path, corpora, source, reused):
    other = str(tmp_path / "other")  # another vocabulary: learned with 50 ids
    run_ingest(IngestSettings(inputs=(corpora[0],), out=other, vocab_size=50, **SMALL))
    other_sha = load_manifest(other).vocab_sha256
    sha = load_manifest(source).vocab_sha256
    args = ["ingest", corpora[1], "--out", reused, "--context", "6", "--shards", "2", "--val-fraction", "0.2",
            "--seed", "1", "--workers", "1", "--dedup", "none"]  # as the `reused` fixture wrote it
    again = run_cli(*args, "--vocab-from", source)
    assert again.exit_code == 0 and "already complete" in flat(again.output), again.output
    changed = run_cli(*args, "--vocab-from", other)
    assert changed.exit_code == 1 and "Traceback" not in changed.output
    assert (f"--vocab-from: the dataset reuses the vocabulary with sha256 {sha[:12]}…, this command reuses the "
            f"vocabulary with sha256 {other_sha[:12]}…") in flat(changed.stderr)
    assert "--vocab-size" not in changed.stderr  # the other vocabulary's size is no choice of this command
    learned = run_cli(*args)
    assert learned.exit_code == 1
    assert "--vocab-from: the dataset reuses the vocabulary with sha256" in flat(learned.stderr)
    assert "this command learns its own vocabulary" in flat(learned.stderr)


def test_an_unfinished_ingest_with_another_vocab_from_is_refused(tmp_path, corpora, source):
    out = str(tmp_path / "out")
    other = str(tmp_path / "other")
    run_ingest(IngestSettings(inputs=(corpora[0],), out=other, vocab_size=50, **SMALL))

    def interrupt(stage, done, total, windows):
        if stage == "writing windows":
            raise KeyboardInterrupt

    settings = IngestSettings(inputs=(corpora[1],), out=out, vocab_from=source, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(settings, progress=interrupt)
    assert os.path.exists(os.path.join(out, ".partial", "pass1.json"))
    with pytest.raises(ArtifactError) as raised:
        run_ingest(IngestSettings(inputs=(corpora[1],), out=out, vocab_from=other, **SMALL))
    assert "holds an unfinished ingest of other inputs or settings: --vocab-from: the unfinished ingest reuses" in \
        raised.value.message
    finished = run_ingest(settings)  # the same command resumes and finishes, as if never interrupted
    clean = run_ingest(IngestSettings(inputs=(corpora[1],), out=str(tmp_path / "clean"), vocab_from=source, **SMALL))
    assert finished.vocab_sha256 == load_manifest(source).vocab_sha256
    assert finished.splits == clean.splits and finished.fingerprint == clean.fingerprint


def test_inspect_and_the_ingest_summary_say_where_the_vocabulary_came_from(source, reused):
    shown = run_cli("inspect", reused, "--windows", "1")
    assert shown.exit_code == 0, shown.output
    fingerprint = load_manifest(source).fingerprint
    assert f"vocabulary reused from {os.path.realpath(source)} (dataset {fingerprint}" in flat(shown.stderr)
    as_json = json.loads(run_cli("inspect", reused, "--windows", "0", "--json").stdout)
    assert as_json["vocab_source"]["fingerprint"] == fingerprint
    assert json.loads(run_cli("inspect", source, "--windows", "0", "--json").stdout)["vocab_source"] is None
    assert "vocabulary learned from the inputs" in flat(run_cli("inspect", source, "--windows", "0").stderr)


def test_help_describes_vocab_from(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option row
    text = flat(run_cli("ingest", "--help").stdout)
    assert "--vocab-from DATA_DIR Reuse this finished dataset's tokenizer and vocabulary" in text
    assert "with --vocab-from, the source's" in text  # --tokenizer's and --vocab-size's defaults


@pytest.mark.parametrize("tokenizer", ["word", "wordpiece"])
def test_beam_writes_the_local_runner_s_dataset_with_a_reused_vocabulary(tmp_path, corpora, tokenizer):
    from nextword.ingest.beam import run_beam_ingest
    from test_beam_ingest import assert_same_dataset

    source_dir = str(tmp_path / "source")
    run_ingest(IngestSettings(inputs=(corpora[0],), out=source_dir, tokenizer=tokenizer, vocab_size=60, **SMALL))
    common = dict(inputs=(corpora[1],), vocab_from=source_dir, context_length=6, shards=2, val_fraction=0.2, seed=3,
                  workers=1, layout="spans", windows_per_record=5)
    local = run_ingest(IngestSettings(out=str(tmp_path / "local"), **common))
    beam = run_beam_ingest(IngestSettings(out=str(tmp_path / "beam"), **common))
    assert beam.fingerprint == local.fingerprint and beam.vocab_source == local.vocab_source != {}
    assert_same_dataset(str(tmp_path / "local"), str(tmp_path / "beam"))  # manifests, vocab.txt and windows
