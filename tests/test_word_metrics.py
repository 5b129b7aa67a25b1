"""Metrics comparable across tokenizers (issue 12, item 3): perplexity per token and per word,
and top-1/top-5 only where the tokens are words."""

from __future__ import annotations

import json
import math

import pytest

from _cli import run_cli
from conftest import synthetic_documents, write_lines
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.model.metrics import MetricTotals, metrics_line, tokens_per_word
from nextword.errors import ArtifactError
from nextword.tfrecords.manifest import WORDPIECE_NAME, Counters, Manifest, Split, load_manifest

SMALL = dict(vocab_size=64, context_length=8, shards=1, val_fraction=0.2, seed=1, workers=1)
TRAIN = ["--arch", "lstm", "--layers", "1", "--units", "8", "--embedding-dim", "4", "--batch-size", "16",
         "--max-steps", "3", "--no-export", "--no-progress"]


def manifest_of(tokenizer: str, val: Split, words: int | None = None) -> Manifest:
    """A manifest with only the counts the metrics read (no shards)."""
    return Manifest(
        fingerprint="f", tokenizer={"name": WORDPIECE_NAME if tokenizer == "wordpiece" else "nextword-words"},
        vocab_file="vocab.txt", vocab_size=10, vocab_sha256="", context_length=4, stride=1, seed=0,
        val_fraction=0.1, splits={"val": val}, counters=Counters(),
        extra={"words": {"train": 0, "val": words}} if words is not None else {},
    )


def totals(loss_per_window: float = 2.0, windows: int = 120) -> MetricTotals:
    return MetricTotals(loss=loss_per_window * windows, top1=30, top5=60, windows=windows, rows=windows)


def test_word_perplexity_equals_perplexity_for_words_and_spreads_the_loss_over_words_for_pieces():
    word = manifest_of("word", Split(documents=10, tokens=130, windows=120, shards=()))
    result = totals().result(word, "val")
    assert result["tokens_per_word"] == 1.0 and result["word_perplexity"] == result["perplexity"] == math.exp(2.0)
    assert (result["top1"], result["top5"]) == (0.25, 0.5)

    # 130 pieces spell 110 words in 10 documents: 120 piece targets, 100 word targets
    pieces = manifest_of("wordpiece", Split(documents=10, tokens=130, windows=120, shards=()), words=110)
    result = totals().result(pieces, "val")
    assert result["tokens_per_word"] == pytest.approx(1.2)
    assert result["perplexity"] == pytest.approx(math.exp(2.0))
    assert result["word_perplexity"] == pytest.approx(math.exp(2.0 * 120 / 100))  # exp(total NLL / words)
    assert "top1" not in result and "top5" not in result


def test_empty_counts_do_not_divide_by_zero_and_missing_word_counts_are_refused():
    empty = manifest_of("wordpiece", Split(documents=0, tokens=0, windows=0, shards=()), words=0)
    assert tokens_per_word(empty, "val") == 1.0
    result = MetricTotals().result(empty, "val")
    assert result["windows"] == 0 and result["word_perplexity"] == result["perplexity"] == 1.0
    no_words = manifest_of("wordpiece", Split(documents=1, tokens=5, windows=4, shards=()))
    with pytest.raises(ArtifactError, match="no word count"):
        tokens_per_word(no_words, "val")


def test_the_line_says_pieces_and_words_for_wordpiece_and_stays_as_it_was_for_words():
    word = totals().result(manifest_of("word", Split(10, 130, 120, ())), "val")
    assert metrics_line(word) == "loss 2.0000  perplexity 7.39  top-1 0.2500  top-5 0.5000"
    pieces = totals().result(manifest_of("wordpiece", Split(10, 130, 120, ()), words=110), "val")
    assert metrics_line(pieces) == "loss 2.0000  perplexity 7.39 per piece, 11.02 per word (1.20 pieces/word)"


def test_plots_draw_per_word_perplexity_for_pieces_only_and_say_why_there_is_no_accuracy():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nextword.model.history import FIGURES, _draw

    def panels(row: dict) -> dict:
        record = {"steps": [{"step": 5, "epoch": 0, "loss": 3.0}], "epochs": [{"epoch": 0, "step": 5, **row}]}
        drawn = {}
        for name, (title, series) in FIGURES.items():
            figure, axes = plt.subplots()
            _draw(axes, title, series, record)
            drawn[name] = ([line.get_label() for line in axes.get_lines()], [text.get_text() for text in axes.texts])
            plt.close(figure)
        return drawn

    word = panels({"val_loss": 2.0, "val_perplexity": 7.39, "val_word_perplexity": 7.39, "val_top1": 0.2, "val_top5": 0.4})
    assert word["perplexity.png"][0] == ["validation perplexity per token"]
    assert word["accuracy.png"][0] == ["validation top-1", "validation top-5"]
    pieces = panels({"val_loss": 2.0, "val_perplexity": 7.39, "val_word_perplexity": 11.02})
    assert pieces["perplexity.png"][0] == ["validation perplexity per token", "validation perplexity per word"]
    assert pieces["accuracy.png"][0] == [] and "no next-word accuracy" in pieces["accuracy.png"][1][0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    documents = synthetic_documents(200, seed=3, min_words=3, max_words=20)
    return write_lines(tmp_path_factory.mktemp("metrics") / "corpus.txt", documents)


def trained(tmp_path_factory, corpus: str, tokenizer: str) -> tuple[str, str, str]:
    """(DATA_DIR, RUN_DIR, train's stdout+stderr) of a few steps on `corpus` ingested with `tokenizer`."""
    root = tmp_path_factory.mktemp(tokenizer)
    data_dir, run_dir = str(root / "data"), str(root / "run")
    run_ingest(IngestSettings(inputs=(corpus,), out=data_dir, tokenizer=tokenizer, **SMALL))
    result = run_cli("train", data_dir, "--out", run_dir, *TRAIN)
    assert result.exit_code == 0, result.stderr
    return data_dir, run_dir, result.output


@pytest.fixture(scope="module")
def wordpiece_run(tmp_path_factory, corpus):
    return trained(tmp_path_factory, corpus, "wordpiece")


@pytest.fixture(scope="module")
def word_run(tmp_path_factory, corpus):
    return trained(tmp_path_factory, corpus, "word")


@pytest.mark.slow
def test_eval_on_wordpiece_reports_per_word_perplexity_and_no_accuracy(wordpiece_run):
    data_dir, run_dir, _ = wordpiece_run
    manifest = load_manifest(data_dir)
    val, words = manifest.splits["val"], manifest.extra["words"]["val"]
    assert val.windows == val.tokens - val.documents  # stride 1: a document's first piece is never a target
    assert words < val.tokens  # some words took more than one piece

    scores = json.loads(run_cli("eval", run_dir, data_dir, "--json").stdout)
    ratio = (val.tokens - val.documents) / (words - val.documents)
    assert scores["tokenizer"] == "wordpiece" and scores["tokens_per_word"] == pytest.approx(ratio)
    assert scores["word_perplexity"] == pytest.approx(math.exp(scores["loss"] * ratio))
    assert scores["word_perplexity"] > scores["perplexity"] > 1
    assert "top1" not in scores and "top5" not in scores

    text = run_cli("eval", run_dir, data_dir)
    assert text.exit_code == 0, text.stderr
    assert f"perplexity {scores['perplexity']:.2f} per piece, {scores['word_perplexity']:.2f} per word" in text.stdout
    assert "top-1" not in text.stdout


@pytest.mark.slow
def test_a_wordpiece_run_logs_per_word_perplexity_in_history_summary_and_output(wordpiece_run):
    data_dir, run_dir, output = wordpiece_run
    history = json.load(open(f"{run_dir}/history.json"))
    row, summary = history["epochs"][-1], json.load(open(f"{run_dir}/summary.json"))
    assert row["val_word_perplexity"] > row["val_perplexity"] and "val_top1" not in row
    assert summary["validation"]["word_perplexity"] == row["val_word_perplexity"]
    assert "top1" not in summary["validation"]
    assert "per piece" in output and "per word" in output and "top-1" not in output
    assert run_cli("plot", run_dir).exit_code == 0


@pytest.mark.slow
def test_eval_on_words_keeps_accuracy_and_word_perplexity_is_perplexity(word_run):
    data_dir, run_dir, output = word_run
    val = load_manifest(data_dir).splits["val"]
    assert val.windows == val.tokens - val.documents
    scores = json.loads(run_cli("eval", run_dir, data_dir, "--json").stdout)
    assert scores["tokenizer"] == "word" and scores["tokens_per_word"] == 1.0
    assert scores["word_perplexity"] == scores["perplexity"] and 0 <= scores["top1"] <= scores["top5"] <= 1
    text = run_cli("eval", run_dir, data_dir).stdout
    assert "top-1" in text and "per word" not in text
    row = json.load(open(f"{run_dir}/history.json"))["epochs"][-1]
    assert row["val_word_perplexity"] == row["val_perplexity"] and "val_top1" in row
    assert "top-1" in output and "per word" not in output
