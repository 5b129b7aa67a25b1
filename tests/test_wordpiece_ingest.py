"""`nextword ingest --tokenizer wordpiece` (issue 12, item 1): pieces learned from pass 1's word
counts, windows of piece ids that decode back to the words, resume, Beam, reruns and inspect
as for `--tokenizer word`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from _cli import run_cli
from conftest import dataset_windows, synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.tfrecords.manifest import join_pieces, load_manifest, load_vocabulary

RARE = "waterside"  # once in the corpus, spelled with the letters of frequent words
# context 160: longer than any document here in pieces (<= 20 words of <= 9 letters), so every
# window starts at its document's start and a document's last window is all of it
SMALL = dict(vocab_size=64, context_length=160, shards=2, val_fraction=0.2, seed=1, workers=1)


def normalised_words(texts: list[str]) -> list[list[str]]:
    """What the ingest's word normalisation makes of each text (the same for both tokenizers)."""
    from nextword.ingest.text import split_words

    return [[word.decode() for word in row] for row in split_words(texts).to_list()]


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """Short documents (at most 20 words), one of them with the rare word, capitals and punctuation."""
    return synthetic_documents(300, seed=2, min_words=3, max_words=20) + [f"By the {RARE}, People WALK!"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, documents) -> str:
    return write_lines(tmp_path_factory.mktemp("wordpiece") / "corpus.txt", documents)


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory, corpus) -> str:
    out = str(tmp_path_factory.mktemp("wordpiece") / "data")
    run_ingest(IngestSettings(inputs=(corpus,), out=out, tokenizer="wordpiece", **SMALL))
    return out


@pytest.fixture(scope="module")
def word_dir(tmp_path_factory, corpus) -> str:
    out = str(tmp_path_factory.mktemp("word") / "data")
    run_ingest(IngestSettings(inputs=(corpus,), out=out, **SMALL))
    return out


def test_the_learner_keeps_pad_and_unk_first_then_characters_words_and_suffix_pieces():
    from nextword.ingest.text import UNK_ID, TextToIds
    from nextword.ingest.wordpiece import learn_vocabulary

    ing_words = "walking talking looking making taking seeing being doing going coming".split()
    pairs = [(b"the", 900)] + [(word.encode(), 100 - rank) for rank, word in enumerate(ing_words)]
    vocabulary = learn_vocabulary(pairs, 45)  # too few for every word: the shared ending becomes a piece
    assert vocabulary[:2] == ["<pad>", "<unk>"]
    assert len(vocabulary) == len(set(vocabulary)) <= 45
    assert set("".join(ing_words)) <= set(vocabulary)  # every character, so any word of them can be spelled
    assert {"the", "##ing", "walking"} <= set(vocabulary) and "coming" not in vocabulary, vocabulary
    pieces = [vocabulary[token] for token in TextToIds(vocabulary, "wordpiece")(["Coming, the walking"]).to_list()[0]]
    assert pieces[-3:] == ["##ing", "the", "walking"] and join_pieces(pieces) == ["coming", "the", "walking"]
    assert learn_vocabulary([], 45) == ["<pad>", "<unk>"]
    # a character only rarer words hold (beyond the words the learner is given) still gets in
    with_rare = learn_vocabulary(pairs, 45, characters=sorted(set("".join(ing_words)) | {"ñ"}))
    assert {"ñ", "##ñ"} <= set(with_rare) and "ñ" not in vocabulary
    assert UNK_ID not in TextToIds(with_rare, "wordpiece")(["niño"]).to_list()[0]


def test_the_dataset_records_the_tokenizer_and_its_real_vocabulary(wordpiece_dir, word_dir):
    manifest = load_manifest(wordpiece_dir)
    vocabulary = load_vocabulary(wordpiece_dir, manifest)
    assert manifest.tokenizer["name"] == "nextword-wordpiece" and manifest.tokenizer_choice == "wordpiece"
    assert manifest.tokenizer["suffix_indicator"] == "##"
    assert vocabulary[:2] == ["<pad>", "<unk>"] and any(token.startswith("##") for token in vocabulary)
    assert manifest.vocab_size == len(vocabulary) <= SMALL["vocab_size"]
    word_manifest = load_manifest(word_dir)
    # each split's words (what a per-word metric divides by) are the word dataset's tokens
    assert manifest.extra["words"] == {name: split.tokens for name, split in word_manifest.splits.items()}
    assert manifest.counters.tokens > word_manifest.counters.tokens  # some words took several pieces
    # nothing new in a word dataset: no extra, the tokenizer entry of before
    assert word_manifest.tokenizer_choice == "word" and "words" not in word_manifest.extra
    assert word_manifest.tokenizer["name"] == "nextword-words" and "suffix_indicator" not in word_manifest.tokenizer


def test_a_rare_word_that_word_makes_unk_is_known_pieces(wordpiece_dir, word_dir):
    from nextword.ingest.text import UNK_ID, TextToIds

    word_vocabulary = load_vocabulary(word_dir, load_manifest(word_dir))
    piece_vocabulary = load_vocabulary(wordpiece_dir, load_manifest(wordpiece_dir))
    text = [f"the {RARE}"]
    assert TextToIds(word_vocabulary, "word")(text).to_list() == [[word_vocabulary.index("the"), UNK_ID]]
    pieces = [piece_vocabulary[token] for token in TextToIds(piece_vocabulary, "wordpiece")(text).to_list()[0]]
    assert "<unk>" not in pieces and len(pieces) > 2 and join_pieces(pieces) == ["the", RARE]
    assert load_manifest(word_dir).counters.oov_tokens > 0
    assert load_manifest(wordpiece_dir).counters.oov_tokens == 0


def test_windows_decode_back_to_the_normalised_words(wordpiece_dir, documents):
    manifest = load_manifest(wordpiece_dir)
    vocabulary = load_vocabulary(wordpiece_dir, manifest)
    windows = [window for split in ("train", "val") for window in dataset_windows(wordpiece_dir, split)]
    assert len(windows) == sum(split.windows for split in manifest.splits.values())
    decoded = {" ".join(join_pieces([vocabulary[token] for token in window if token != 0])) for window in windows}
    expected = [" ".join(words) for words in normalised_words(documents)]
    whole = [text for text in expected if len(text.split()) >= 2]  # (each has windows: 2 pieces or more)
    assert f"by the {RARE} people walk" in whole
    assert [text for text in whole if text not in decoded] == []  # a document's last window is all of it
    assert all("##" not in text and "<unk>" not in text for text in decoded)


def test_inspect_says_the_tokenizer_and_decodes_windows_to_words(wordpiece_dir, word_dir, documents, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    texts = [" ".join(words) for words in normalised_words(documents)]
    for data_dir, tokenizer, unit in ((wordpiece_dir, "wordpiece", "pieces"), (word_dir, "word", "words")):
        shown = run_cli("inspect", data_dir, "--windows", "40")
        assert shown.exit_code == 0, shown.output
        assert f"tokenizer {tokenizer}, vocabulary {load_manifest(data_dir).vocab_size} {unit}" in shown.stderr
        summary = json.loads(run_cli("inspect", data_dir, "--windows", "40", "--json").stdout)
        assert summary["tokenizer"] == tokenizer and len(summary["samples"]) == 40
        for sample in summary["samples"]:
            # a window starts at its document's start here; a target "##x" continues the last word
            target = sample["target"]
            joined = sample["context"] + (target[2:] if target.startswith("##") else " " + target)
            assert "##" not in sample["context"]
            if tokenizer == "word" and "<unk>" in joined:
                continue
            assert any(text.startswith(joined) for text in texts), sample
    samples = json.loads(run_cli("inspect", wordpiece_dir, "--windows", "40", "--json").stdout)["samples"]
    assert any(sample["target"].startswith("##") for sample in samples)  # the pieces really are pieces


def test_a_rerun_with_the_other_tokenizer_is_refused_saying_so(tmp_path, corpus):
    common = ["--vocab-size", "64", "--context", "8", "--workers", "1"]
    out = str(tmp_path / "data")
    assert run_cli("ingest", corpus, "--out", out, *common).exit_code == 0
    refused = run_cli("ingest", corpus, "--out", out, *common, "--tokenizer", "wordpiece")
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    text = " ".join(refused.stderr.split())
    assert "already holds a different dataset: --tokenizer: the dataset has word, this command asks for wordpiece" in text
    assert "tokenizer (another nextword version)" not in text
    again = run_cli("ingest", corpus, "--out", out, *common, "--tokenizer", "word")
    assert again.exit_code == 0 and "already complete" in " ".join(again.stderr.split())


@pytest.fixture
def few_learner_words(monkeypatch):
    """The learner is given the 40 most frequent words only (of the ~100 of synthetic_documents)."""
    import nextword.ingest.text
    import nextword.ingest.wordpiece

    for module in (nextword.ingest.text, nextword.ingest.wordpiece):
        monkeypatch.setattr(module, "LEARNER_WORDS", 40)


def test_a_word_beyond_the_learner_s_words_with_a_character_of_its_own_is_spelled(tmp_path, few_learner_words):
    documents = synthetic_documents(200, seed=2, min_words=3, max_words=40) + ["El Niño walked"]
    corpus = write_lines(tmp_path / "corpus.txt", documents)
    manifest = run_ingest(IngestSettings(inputs=(corpus,), out=str(tmp_path / "data"), tokenizer="wordpiece", **SMALL))
    assert manifest.counters.oov_tokens == 0
    vocabulary = load_vocabulary(str(tmp_path / "data"), manifest)
    assert "ñ" in vocabulary and "niño" not in vocabulary


def test_beam_writes_the_local_wordpiece_dataset(tmp_path, few_learner_words):
    from test_beam_ingest import assert_same_dataset

    from nextword.ingest.beam import run_beam_ingest

    documents = synthetic_documents(200, seed=2, min_words=3, max_words=40) + ["El Niño walked"]
    corpus = write_lines(tmp_path / "corpus.txt", documents)
    common = dict(inputs=(corpus,), tokenizer="wordpiece", vocab_size=60, context_length=8, shards=2,
                  val_fraction=0.2, seed=1, workers=1, windows_per_record=7)
    local = run_ingest(IngestSettings(out=str(tmp_path / "local"), **common))
    beam = run_beam_ingest(IngestSettings(out=str(tmp_path / "beam"), **common))
    assert beam.fingerprint == local.fingerprint and beam.tokenizer_choice == "wordpiece"
    assert_same_dataset(str(tmp_path / "local"), str(tmp_path / "beam"))  # manifest (extra too), vocab, windows


# ------------------------------------------------------------------ Ctrl-C / kill -9, then the same command

@pytest.fixture(scope="module")
def resume_corpus(tmp_path_factory):
    return write_lines(tmp_path_factory.mktemp("resume") / "corpus.txt",
                       synthetic_documents(4000, seed=11, min_words=10, max_words=90))


def resume_settings(corpus: str, out) -> IngestSettings:
    return IngestSettings(inputs=(corpus,), out=str(out), tokenizer="wordpiece", vocab_size=80, context_length=12,
                          shards=3, val_fraction=0.1, workers=1, checkpoint_seconds=0, batch_bytes=16384)


@pytest.fixture(scope="module")
def uninterrupted_wordpiece(tmp_path_factory, resume_corpus):
    from test_ingest_resume import directory_bytes

    out = tmp_path_factory.mktemp("resume") / "clean"
    run_ingest(resume_settings(resume_corpus, out))
    return directory_bytes(out)


@pytest.mark.parametrize("stage", ["counting pieces", "writing windows"])
def test_ctrl_c_in_pass_1_or_2_then_the_same_command_resumes_byte_identical(tmp_path, resume_corpus,
                                                                            uninterrupted_wordpiece, stage):
    """Ctrl-C reaches the main thread as KeyboardInterrupt: here from the progress callback, the
    second time STAGE reports (pass 1's piece count, or pass 2 after a checkpoint)."""
    from nextword.ingest.pipeline import IngestSession
    from test_ingest_resume import directory_bytes

    reports = []

    def interrupt(reported, done, total, windows):
        reports.append(reported)
        if reports.count(stage) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_ingest(resume_settings(resume_corpus, out), progress=interrupt)
    assert not (out / "dataset.json").exists()
    notes = []
    run_ingest(resume_settings(resume_corpus, out), session=IngestSession(note=notes.append))
    assert any(note.startswith("resuming from document") for note in notes) == (stage == "writing windows"), notes
    assert directory_bytes(out) == uninterrupted_wordpiece
    again = IngestSession()
    run_ingest(resume_settings(resume_corpus, out), session=again)  # a rerun of the finished dataset changes nothing
    assert again.already_complete and directory_bytes(out) == uninterrupted_wordpiece


@pytest.mark.slow
def test_kill_9_in_pass_2_then_the_same_command_resumes_byte_identical(tmp_path, resume_corpus, uninterrupted_wordpiece):
    """The CLI with 2 workers, killed; the reference ran in-process with 1: the same bytes."""
    from test_ingest_resume import command, directory_bytes, written_documents

    out = tmp_path / "killed"
    arguments = [*command(resume_corpus, out), "--tokenizer", "wordpiece"]
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and written_documents(out) < 1:
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be killed; grow the corpus"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert not (out / "dataset.json").exists()
    assert json.loads((out / ".partial" / "pass1.json").read_text())["extra"]["words"]["train"] > 0
    resumed = run_cli(*arguments[3:])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from document" in " ".join(resumed.stderr.split())
    assert directory_bytes(out) == uninterrupted_wordpiece


def test_training_on_wordpiece_ids_exports_a_model_gen_and_eval_read(wordpiece_dir, tmp_path):
    """train -> export -> gen and eval, end to end on piece ids (the export embeds the pieces)."""
    small = ["--arch", "lstm", "--layers", "1", "--units", "8", "--embedding-dim", "4", "--batch-size", "16",
             "--max-steps", "2", "--no-progress"]
    trained = run_cli("train", wordpiece_dir, "--out", str(tmp_path / "run"), *small)
    assert trained.exit_code == 0, trained.stderr
    generated = run_cli("gen", str(tmp_path / "run"), f"by the {RARE}", "--words", "5", "--seed", "1")
    assert generated.exit_code == 0 and "outside the vocabulary" not in generated.stderr, generated.stderr
    assert len(generated.stdout.split()) == 3 + 5 and "##" not in generated.stdout
    assert run_cli("eval", str(tmp_path / "run" / "export"), wordpiece_dir).exit_code == 0
