"""Weighted blends (`train DATA_A DATA_B --weights 0.7,0.3`): the share of each source in every batch
and over an epoch, measured from the stream (each source writes its own words, so a window's
target says where it came from); incompatible datasets refused field by field; exact resume
after kill -9; 1 replica == 2 replicas; validation per source and blended; the run, summary,
card and eval record and accept the blend."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from _blend_data import source_of_target, write_source
from _cli import run_cli
from _train_data import checkpoint_weights, cli_env
from nextword.errors import ArtifactError, SettingsError
from nextword.model.settings import TrainSettings
from nextword.tfrecords.manifest import load_manifest

WEIGHTS = (0.7, 0.3)


@pytest.fixture(scope="module")
def sources_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("blend")
    # b is ~1/3 of a's size but weighs 0.3 of the windows: it repeats more often than a
    a = write_source(str(root / "a"), range(0, 10), train_documents=120, seed=1)
    b = write_source(str(root / "b"), range(10, 20), train_documents=40, seed=2)
    return a, b


def blend_stream(data_dirs, weights, batch, shuffle_buffer, objective="last", seed=3, periods=None, start=0, skip=0):
    from nextword.tfrecords.blend import (blend_source_epochs, load_sources, make_blend_dataset, period_allocation,
                                          period_batches)
    from nextword.tfrecords.reader import ReaderConfig

    sources = load_sources(tuple(data_dirs), weights)
    config = ReaderConfig(batch_size=batch, objective=objective, seed=seed, shuffle_buffer=shuffle_buffer)
    period = period_batches(batch, shuffle_buffer)
    allocation = period_allocation(weights, period * batch)
    epochs = blend_source_epochs(sources, config, allocation)
    dataset = make_blend_dataset(sources, config, allocation, start, periods, skip, epochs, with_source=True)
    return dataset, allocation, period, epochs


# ---- proportions, measured from the windows ---------------------------------------------------
@pytest.mark.parametrize("weights, batch", [((0.7, 0.3), 16), ((0.25, 0.75), 10), ((0.5, 0.5), 7)])
def test_every_batch_and_the_epoch_hold_each_source_in_its_share(sources_dirs, weights, batch):
    dataset, allocation, period, epochs = blend_stream(sources_dirs, weights, batch, shuffle_buffer=96, periods=25)
    counts = []
    for _, targets, _, tagged in dataset.as_numpy_iterator():
        measured = np.array([source_of_target(int(target)) for target in targets])
        np.testing.assert_array_equal(measured, tagged)  # the tag tests and benchmarks use is the truth
        counts.append(np.bincount(measured, minlength=2))
    counts = np.array(counts)
    assert len(counts) == 25 * period and (counts.sum(axis=1) == batch).all()
    expected_per_batch = np.array(weights) * batch
    assert np.abs(counts - expected_per_batch).max() <= 1.0 + 1e-9  # every batch: its share to one window
    shares = counts.sum(axis=0) / counts.sum()
    assert np.abs(shares - np.array(weights)).max() < 0.01
    # b (small, weight >= 0.25) went round its own epochs several times, a fewer
    drawn = counts.sum(axis=0)
    b_epoch_windows = epochs[1].windows(0)
    assert drawn[1] > 2 * b_epoch_windows


def test_a_small_source_repeats_whole_epochs_each_window_once_an_epoch(sources_dirs):
    """Over b's own epochs, b's windows are each of its windows once per epoch (objective last)."""
    dataset, allocation, period, epochs = blend_stream(sources_dirs, (0.5, 0.5), 8, shuffle_buffer=64, periods=30)
    b = epochs[1]
    epoch_windows = b.windows(0)
    read = []
    for context, targets, _, tagged in dataset.as_numpy_iterator():
        read += [tuple(row) + (int(target),) for row, target, source in zip(context, targets, tagged) if source == 1]
    assert len(read) >= 2 * epoch_windows
    first, second = read[:epoch_windows], read[epoch_windows:2 * epoch_windows]
    assert sorted(first) == sorted(second) and first != second  # the same windows, reshuffled


@pytest.fixture(scope="module")
def windows_dirs(tmp_path_factory):
    """The same two sources in the one-window-a-record layout (read in pieces, not as one stream)."""
    root = tmp_path_factory.mktemp("blend-windows")
    return (write_source(str(root / "a"), range(0, 10), train_documents=120, seed=1, layout="windows"),
            write_source(str(root / "b"), range(10, 20), train_documents=40, seed=2, layout="windows"))


@pytest.mark.parametrize("layout", ["spans", "windows"])
def test_a_stream_started_at_any_step_is_the_rest_of_the_whole_stream(request, layout):
    sources_dirs = request.getfixturevalue("sources_dirs" if layout == "spans" else "windows_dirs")
    whole, _, period, _ = blend_stream(sources_dirs, WEIGHTS, 8, shuffle_buffer=48, objective="all", periods=12)
    batches = [targets for _, targets, _, _ in whole.as_numpy_iterator()]
    for start, skip in [(1, 0), (4, 3), (9, period - 1)]:
        rest, *_ = blend_stream(sources_dirs, WEIGHTS, 8, shuffle_buffer=48, objective="all", periods=12,
                                start=start, skip=skip)
        got = [targets for _, targets, _, tags in rest.as_numpy_iterator()]
        assert len(got) == len(batches) - start * period - skip
        for want, have in zip(batches[start * period + skip:], got):
            np.testing.assert_array_equal(want, have)


def test_the_allocation_and_the_drawn_windows_add_up():
    from nextword.tfrecords.blend import drawn_windows, period_allocation, period_order

    allocation = period_allocation((0.7, 0.2, 0.1), 1000)
    assert allocation == (700, 200, 100)
    assert period_allocation((1 / 3, 1 / 3, 1 / 3), 100) == (34, 33, 33)
    order = period_order(allocation)
    assert sorted(order) == list(range(1000))
    assert drawn_windows(allocation, 100, 10) == [700, 200, 100]
    assert drawn_windows(allocation, 100, 15) == [1050, 300, 150]


# ---- refusals ---------------------------------------------------------------------------------
def changed_copy(source_dir: str, target: str, **changes) -> str:
    """A copy of a source dataset (same shards) whose manifest differs in `changes`."""
    import shutil

    shutil.copytree(source_dir, target)
    manifest = load_manifest(target)
    with open(os.path.join(target, "dataset.json"), "w") as handle:
        handle.write(dataclasses.replace(manifest, fingerprint="changed", **changes).to_json())
    return target


@pytest.mark.parametrize("changes, field, values", [
    ({"tokenizer": {"name": "nextword-wordpiece", "version": 1}}, "tokenizer", "nextword-wordpiece"),
    ({"vocab_sha256": "f" * 64}, "vocabulary sha256", "f" * 64),
    ({"context_length": 5}, "context length", "(5 vs 6)"),
    ({"pad_id": 3}, "pad and unk ids", "(3, 1) vs (0, 1)"),
    ({"layout": "windows", "windows_per_record": 1}, "record layout", "one window a record vs span records"),
])
def test_incompatible_datasets_are_refused_naming_the_field_and_both_values(sources_dirs, tmp_path, changes, field, values):
    from nextword.tfrecords.blend import load_sources

    other = changed_copy(sources_dirs[1], str(tmp_path / "other"), **changes)
    with pytest.raises(SettingsError) as raised:
        load_sources((sources_dirs[0], other), WEIGHTS)
    message = str(raised.value)
    assert f"their {field} differs" in message and values in message and other in message
    assert "--vocab-from" in raised.value.hint or "--context" in raised.value.hint or "--layout" in raised.value.hint \
        or "version" in raised.value.hint


def test_the_cli_refuses_an_incompatible_blend_with_a_message(sources_dirs, tmp_path):
    other = changed_copy(sources_dirs[1], str(tmp_path / "other"), vocab_sha256="e" * 64)
    result = run_cli("train", sources_dirs[0], other, "--weights", "0.7,0.3", "--out", str(tmp_path / "run"),
                     "--no-progress")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "vocabulary sha256 differs" in result.output and "--vocab-from" in result.output
    assert not os.path.exists(tmp_path / "run" / "run.json")


@pytest.mark.parametrize("data_dirs, weights, message", [
    (("a",), "0.5", "with one DATA_DIR"),
    (("a", "b"), "0.7", "1 value(s) for 2 DATA_DIRs"),
    (("a", "b"), "0.7,x", "numbers separated by commas"),
    (("a", "b"), "1,0", "must all be > 0"),
])
def test_bad_weights_are_refused(data_dirs, weights, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        TrainSettings(data_dir=data_dirs[0], data_dirs=data_dirs if len(data_dirs) > 1 else (), out="o", weights=weights)


def test_weights_are_normalised_and_default_to_equal_shares():
    assert TrainSettings(data_dir="a", data_dirs=("a", "b"), out="o", weights="7,3").blend_weights() == (0.7, 0.3)
    assert TrainSettings(data_dir="a", data_dirs=("a", "b", "c"), out="o").blend_weights() == (1 / 3,) * 3
    assert TrainSettings(data_dir="a", out="o").blend_weights() == ()


def test_the_blended_figures_are_the_weighted_means_of_the_sources():
    from nextword.model.blending import blended_metrics

    per_source = {"a": {"loss": 2.0, "top1": 0.5, "top5": 0.9, "tokens_per_word": 1.0, "windows": 10},
                  "b": {"loss": 4.0, "top1": 0.1, "top5": 0.3, "tokens_per_word": 1.0, "windows": 30}}
    blended = blended_metrics(per_source, {"a": 0.75, "b": 0.25})
    assert blended["loss"] == pytest.approx(2.5) and blended["top1"] == pytest.approx(0.4)
    assert blended["perplexity"] == pytest.approx(np.exp(2.5)) and blended["windows"] == 40
    assert blended["sources"] == per_source


# ---- training: kill -9 and resume, 1 vs 2 replicas, what the run records ----------------------
# TrainSettings straight (shuffle_buffer is no CLI option): periods of 64 windows = 8 batches of 8,
# so the kill lands mid-period, mid-blend-epoch, and the sources cross their own epochs.
TRAIN = dict(arch="lstm", layers=1, units=16, embedding_dim=8, dropout=0.0, batch_size=8, optimizer="adam",
             seed=5, checkpoint_every=5, steps_per_call=2, validate_every=10, patience=100, deterministic=True,
             schedule="constant", warmup_steps=0, epochs=2, shuffle_buffer=64, progress=False, export=False,
             weights="0.7,0.3", strategy="auto")
SCRIPT = ("import json, sys; from nextword.model.settings import TrainSettings; from nextword.model.train import run_training; "
          "settings = json.loads(sys.argv[1]); settings['data_dirs'] = tuple(settings['data_dirs']); "
          "run_training(TrainSettings(**settings))")
KILL_AT = 25  # a checkpoint step that is no period (8) and no blend-epoch boundary


def train(data_dirs, run_dir, kill_at=None, **changes) -> subprocess.CompletedProcess:
    settings = {**TRAIN, "data_dir": data_dirs[0], "data_dirs": list(data_dirs), "out": run_dir, **changes}
    env = {**cli_env(), **({"NEXTWORD_KILL_AT": f"checkpoint_saved@{kill_at}"} if kill_at else {})}
    return subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(settings)], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def whole_run(sources_dirs, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("whole") / "run")
    result = train(sources_dirs, run_dir, export=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def summary_of(run_dir: str) -> dict:
    return json.load(open(os.path.join(run_dir, "summary.json")))


@pytest.mark.slow
def test_kill_9_mid_blend_then_rerun_equals_an_uninterrupted_run(sources_dirs, whole_run, tmp_path):
    whole = summary_of(whole_run)
    epoch_steps = whole["steps"] // TRAIN["epochs"]
    assert whole["steps"] > KILL_AT + 10 and KILL_AT % 8 and KILL_AT % epoch_steps  # mid-period, mid-epoch
    run_dir = str(tmp_path / "killed")
    killed = train(sources_dirs, run_dir, kill_at=KILL_AT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    resumed = train(sources_dirs, run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = summary_of(run_dir)
    assert summary["resumed_from_step"] == KILL_AT and summary["steps"] == whole["steps"]
    expected, got = checkpoint_weights(whole_run), checkpoint_weights(run_dir)
    assert expected.keys() == got.keys() and len(expected) > 3
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
    assert summary["weights_sha256"] == whole["weights_sha256"]
    assert summary["blend"] == whole["blend"] and summary["validation"] == whole["validation"]


@pytest.mark.slow
def test_two_replicas_train_the_blend_as_one(sources_dirs, whole_run, tmp_path):
    run_dir = str(tmp_path / "two")
    result = train(sources_dirs, run_dir, devices=2)
    assert result.returncode == 0, result.stderr[-3000:]
    two, one = summary_of(run_dir), summary_of(whole_run)
    assert two["replicas"] == 2 and one["replicas"] == 1 and two["steps"] == one["steps"]
    assert two["blend"]["sources"] == one["blend"]["sources"]
    expected, got = checkpoint_weights(whole_run), checkpoint_weights(run_dir)
    difference = max(float(np.max(np.abs(expected[name] - got[name]))) for name in expected)
    assert difference < 1e-4  # reduction order only; a shifted window moves adam's weights ~1e-3 a step


@pytest.mark.slow
def test_the_run_records_the_blend_and_validates_each_source(sources_dirs, whole_run):
    summary = summary_of(whole_run)
    blend = summary["blend"]
    assert [source["data_dir"] for source in blend["sources"]] == list(sources_dirs)
    assert [source["weight"] for source in blend["sources"]] == pytest.approx(list(WEIGHTS))
    fingerprints = [load_manifest(data_dir).fingerprint for data_dir in sources_dirs]
    assert [source["fingerprint"] for source in blend["sources"]] == fingerprints
    shares = [source["share_drawn"] for source in blend["sources"]]
    assert shares == pytest.approx(list(WEIGHTS), abs=0.01)
    a, b = blend["sources"]
    assert b["epochs_completed"] > a["epochs_completed"] >= 1  # the small source repeated more
    assert summary["dataset_fingerprint"] == blend["fingerprint"] and blend["fingerprint"].startswith("blend-")
    # per-source validation and the blend's weighted figure
    validation = summary["validation"]
    assert set(validation["sources"]) == {"a", "b"}
    assert validation["loss"] == pytest.approx(0.7 * validation["sources"]["a"]["loss"] + 0.3 * validation["sources"]["b"]["loss"])
    history = json.load(open(os.path.join(whole_run, "history.json")))
    assert {"val_loss", "val_loss/a", "val_loss/b"} <= set(history["epochs"][-1])
    run = json.load(open(os.path.join(whole_run, "run.json")))
    assert run["blend"]["fingerprint"] == summary["dataset_fingerprint"] == run["dataset_fingerprint"]
    card = json.load(open(os.path.join(whole_run, "export", "card.json")))
    assert card["blend"]["sources"] == run["blend"]["sources"] and card["dataset_fingerprint"] == blend["fingerprint"]
    assert card["training"]["blend"]["sources"][1]["share_drawn"] == b["share_drawn"]


@pytest.mark.slow
def test_eval_scores_a_blended_run_on_each_source_and_refuses_another_vocabulary(sources_dirs, whole_run, tmp_path):
    from nextword.model.evaluate import evaluate

    summary = summary_of(whole_run)
    for name, data_dir in zip(("a", "b"), sources_dirs):
        result = evaluate(whole_run, data_dir)
        assert result["loss"] == pytest.approx(summary["validation"]["sources"][name]["loss"], abs=1e-5)
    # the same shapes (vocabulary size, context), other words: its ids would score nonsense
    from nextword.model.export import export_run

    export_dir, card = export_run(whole_run, str(tmp_path / "again"))  # `nextword export RUN_DIR` of a blend
    assert card["blend"]["fingerprint"] == summary["dataset_fingerprint"] and len(card["blend"]["sources"]) == 2
    stranger = write_source(str(tmp_path / "stranger"), range(0, 10), train_documents=10, seed=9, word_prefix="v")
    with pytest.raises(ArtifactError, match="trained on a blend of"):
        evaluate(whole_run, stranger)


@pytest.mark.slow
def test_resuming_with_other_weights_is_refused(sources_dirs, whole_run, tmp_path):
    import shutil

    run_dir = str(tmp_path / "copy")
    shutil.copytree(whole_run, run_dir)
    result = train(sources_dirs, run_dir, weights="0.5,0.5")
    assert result.returncode != 0 and "was trained on a blend of" in result.stderr

