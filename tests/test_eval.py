"""`nextword eval` on a RUN_DIR (checkpoint) and on its EXPORT_DIR (score_ids), trained under
MirroredStrategy with 2 logical CPU devices (`--devices 2`, strategy auto) with the export on."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from _train_data import cli_command, cli_env, write_data_dir
from nextword.model.cli import register
from nextword.model.evaluate import evaluate
from nextword.errors import ArtifactError


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def mirrored_run(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("run"))
    args = ["train", data_dir, "--out", run_dir, "--devices", "2", "--arch", "lstm", "--layers", "1", "--units", "16",
            "--embedding-dim", "8", "--batch-size", "16", "--epochs", "2", "--no-progress"]
    result = subprocess.run(cli_command(*args), env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_trained_under_mirrored_with_two_replicas_and_exported(mirrored_run):
    summary = json.load(open(os.path.join(mirrored_run, "summary.json")))
    assert summary["replicas"] == 2 and summary["strategy"] == "MirroredStrategy"
    assert os.path.exists(os.path.join(mirrored_run, "export", "card.json"))


@pytest.mark.slow
def test_eval_of_export_equals_the_checkpoint_mixed_with_the_counted_5_gram(mirrored_run, data_dir):
    """The export scores w_net p_network + w_ngram p_5gram + w_cache p_cache: recomputed here from the
    best checkpoint's logits, a 5-gram counted by model/ngram.py on the train windows, the windows' own
    words (model/context_cache.py) and the card's weights."""
    from nextword.model import context_cache, ngram
    from nextword.model.evaluate import final_logits_from_run_dir
    from nextword.model.validation import read_sample
    from nextword.tfrecords.manifest import load_manifest

    from_checkpoint = evaluate(mirrored_run, data_dir)
    from_export = evaluate(os.path.join(mirrored_run, "export"), data_dir)
    assert (from_checkpoint["source"], from_export["source"]) == ("checkpoint best", "export")
    manifest = load_manifest(data_dir)
    contexts, targets = read_sample(data_dir, manifest, 10**6)
    contexts, targets = contexts[targets != 0], targets[targets != 0]
    logits = final_logits_from_run_dir(mirrored_run, manifest)(contexts).numpy().astype(np.float64)
    network = logits[np.arange(len(targets)), targets] - np.log(np.exp(logits).sum(axis=1))
    assert -network.mean() == pytest.approx(from_checkpoint["loss"], rel=1e-4)
    counts = ngram.count_events(*ngram.events_from_dataset(data_dir, "train", 5), manifest.vocab_size, 5)
    five_gram, _ = ngram.score_events(counts, contexts[:, -4:], targets)
    card = json.load(open(os.path.join(mirrored_run, "export", "card.json")))
    mixed = card["ngram"]
    cache = context_cache.cache_log_probabilities(contexts, targets, five_gram)
    with np.errstate(divide="ignore"):
        mixed_log_p = np.logaddexp.reduce([np.log(mixed["network_weight"]) + network, np.log(mixed["ngram_weight"]) + five_gram,
                                           np.log(mixed["cache_weight"]) + cache], axis=0)
    assert from_export["loss"] == pytest.approx(-mixed_log_p.mean(), rel=1e-4)
    # the weights maximise the likelihood of the validation sample, here the whole 220-window split
    assert mixed["network_weight"] + mixed["ngram_weight"] + mixed["cache_weight"] == pytest.approx(1.0)
    assert from_export["loss"] <= min(-network.mean(), -five_gram.mean()) + 1e-6
    assert card["ngram"]["sample_perplexity"]["mixture"] == pytest.approx(from_export["perplexity"], rel=1e-3)
    # the best validation's weights (the sample is the whole 220-window split here)
    history = json.load(open(os.path.join(mirrored_run, "history.json")))
    best = min(history["epochs"], key=lambda row: row["val_loss"])
    assert from_checkpoint["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert history["summary"]["validation"]["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert 0 < from_checkpoint["top1"] <= from_checkpoint["top5"] <= 1
    from nextword.tfrecords.manifest import load_manifest

    assert from_checkpoint["windows"] == load_manifest(data_dir).splits["val"].windows == 220  # 20 docs of 3-19 words


@pytest.mark.slow
def test_eval_cli_json_on_the_export(mirrored_run, data_dir):
    result = CliRunner().invoke(cli(), ["eval", os.path.join(mirrored_run, "export"), data_dir, "--split", "train", "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["split"] == "train" and scores["windows"] > 220 and scores["perplexity"] > 1


def test_eval_refuses_what_is_not_a_model(data_dir, tmp_path):
    with pytest.raises(ArtifactError, match="neither a RUN_DIR"):
        evaluate(str(tmp_path), data_dir)
    with pytest.raises(ArtifactError, match="not a nextword dataset"):
        evaluate(str(tmp_path), str(tmp_path))


@pytest.mark.slow
def test_eval_refuses_another_dataset_and_unknown_split(mirrored_run, data_dir, tmp_path):
    other = write_data_dir(str(tmp_path / "other"), vocab_words=30)
    with pytest.raises(ArtifactError, match="vocab"):
        evaluate(mirrored_run, other)
    with pytest.raises(ArtifactError, match="no split 'test'"):
        evaluate(mirrored_run, data_dir, split="test")
