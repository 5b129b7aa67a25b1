"""bench/arms.py `train_arm`: the one arm runner, with `nextword train` and `nextword eval` faked (their own tests
are the package's): which commands it runs, and the row every benchmark reads its figures from."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import arms  # noqa: E402
import common  # noqa: E402

MODEL = {"arch": "transformer", "context_length": 44, "objective": "all", "layers": 2, "units": 128}
SUMMARY = {"steps": 120, "stopped_by": "time_budget", "best_step": 100, "wall_seconds": 3.1, "windows_per_second": 500.0,
           "parameters": 12345, "model_config": MODEL, "optimization": {"learning_rate": 0.001}, "batch_size": 128,
           "optimizer": "adam", "learning_rate": 0.001, "compute": {"utilisation": 0.3},
           "validation": {"perplexity": 70.0, "top1": 0.24}}
EVAL = {"perplexity": 61.5, "top1": 0.27, "top5": 0.5, "loss": 4.12, "windows": 8328}


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    (path / "dataset.json").write_text(json.dumps({"fingerprint": "f" * 32}))
    return str(path)


@pytest.fixture
def commands(monkeypatch):
    ran = []

    def run_checked(argv, **kwargs):
        ran.append(argv)
        command = argv[3]  # [python, -m, nextword.cli, COMMAND, ...]
        if command == "train":
            run_dir = argv[argv.index("--out") + 1]
            os.makedirs(os.path.join(run_dir, "export"), exist_ok=True)
            with open(os.path.join(run_dir, "summary.json"), "w") as handle:
                json.dump(SUMMARY, handle)
            with open(os.path.join(run_dir, "export", "card.json"), "w") as handle:
                json.dump({"ngram": {"order": 5, "network_weight": 0.8, "cache_weight": 0.15, "context_cache": "the window's words",
                                      "sample_perplexity": {"mixture": 60.0}}}, handle)
            return common.Measured(0, 9.87, 0, "", "")
        return common.Measured(0, 1.0, 0, json.dumps(EVAL), "")

    monkeypatch.setattr(arms, "run_checked", run_checked)
    return ran


def test_an_arm_trains_for_its_budget_then_eval_scores_its_best_checkpoint(data_dir, tmp_path, commands):
    run_dir = str(tmp_path / "run")
    row = arms.train_arm(data_dir, run_dir, 180, ["--arch", "lstm"])
    train, evaluate = commands
    assert train[3:] == ["train", data_dir, "--out", run_dir, "--time-budget", "180", "--epochs", "100000",
                         "--no-progress", "--no-export", "--arch", "lstm"]
    assert evaluate[3:] == ["eval", run_dir, data_dir, "--json"]
    assert (row["perplexity"], row["top1"], row["top5"], row["loss"], row["val_windows"]) == (61.5, 0.27, 0.5, 4.12, 8328)
    assert row["val"] == EVAL and row["scored"] == "checkpoint" and row["network_perplexity"] is None
    assert (row["steps"], row["stopped_by"], row["parameters"], row["model"]) == (120, "time_budget", 12345, MODEL)
    assert row["target_tokens_per_second"] == 500.0 * 44  # objective all: every position a target
    assert row["process_seconds"] == 9.9 and row["utilisation"] == 0.3 and row["flags"] == ["--arch", "lstm"]
    assert row["dataset_fingerprint"] == "f" * 32 and row["code"] and row["load_before"].count(",") == 2
    assert not os.path.exists(run_dir)  # scored, then removed


def test_an_arm_scored_as_exported_keeps_the_network_alone_beside_the_mixture(data_dir, tmp_path, commands):
    run_dir = str(tmp_path / "run")
    row = arms.train_arm(data_dir, run_dir, 3, [], score_export=True, keep=True)
    train, evaluate = commands
    assert "--export" in train and evaluate[4] == os.path.join(run_dir, "export")
    assert row["scored"] == "export" and (row["network_perplexity"], row["network_top1"]) == (70.0, 0.24)
    assert row["export"] == {"ngram_order": 5, "context_cache": True} and row["ngram_network_weight"] == 0.8
    assert row["ngram_cache_weight"] == 0.15 and row["ngram_sample_perplexity"] == {"mixture": 60.0}
    assert os.path.exists(os.path.join(run_dir, "export", "card.json"))  # keep: the caller samples from it
