"""Elastic resume: a run checkpointed with 2 replicas resumes with 1 (and 1 with 2) at the same
global batch, from the same data position.

The reader feeds one pipeline whose per-replica batches are consecutive slices of the same
shuffled window stream at any replica count, and the checkpoint records the global step; so
the resumed run must train exactly the windows an uninterrupted run trains after that step.
A window read twice or skipped shifts every later batch, and the weights drift far beyond
the float rounding that different reduction orders leave (checked against that bound here).
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from _train_data import checkpoint_weights, cli_command, cli_env, write_data_dir

ARGS = ["--arch", "lstm", "--layers", "1", "--units", "16", "--embedding-dim", "8", "--dropout", "0", "--batch-size", "8",
        "--optimizer", "adam", "--seed", "5", "--checkpoint-every", "4", "--steps-per-call", "1",
        "--deterministic", "--no-export", "--no-progress", "--strategy", "auto",
        # constant: --max-steps 12 then 30 would plan two cosine curves (a resumed run of the same command
        # continues one exactly: tests/test_train_resume.py)
        "--schedule", "constant", "--warmup-steps", "0"]
SPLIT_AT, TOTAL = 12, 30
TOLERANCE = 1e-4  # reduction order across replicas; one adam step moves weights ~1e-3  # the run stops after SPLIT_AT steps and resumes to TOTAL (epochs hold ~20 steps)


def train(data_dir: str, run_dir: str, devices: int, max_steps: int) -> dict:
    result = subprocess.run(cli_command("train", data_dir, "--out", run_dir, *ARGS, "--devices", str(devices),
                                        "--max-steps", str(max_steps)),
                            env=cli_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(run_dir, "summary.json")))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(str(tmp_path_factory.mktemp("data")), train_documents=40, val_documents=5)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("whole"))
    train(data_dir, run_dir, devices=1, max_steps=TOTAL)
    return run_dir


def max_difference(left: dict, right: dict) -> float:
    assert left.keys() == right.keys()
    return max(float(np.max(np.abs(left[key] - right[key]))) for key in left)


@pytest.mark.slow
@pytest.mark.parametrize("before, after", [(2, 1), (1, 2)], ids=["2-to-1-replicas", "1-to-2-replicas"])
def test_a_run_resumes_on_another_replica_count_from_the_same_data_position(data_dir, uninterrupted, tmp_path,
                                                                            before, after):
    run_dir = str(tmp_path / "run")
    first = train(data_dir, run_dir, devices=before, max_steps=SPLIT_AT)
    assert first["steps"] == SPLIT_AT and first["replicas"] == before
    resumed = train(data_dir, run_dir, devices=after, max_steps=TOTAL)
    assert resumed["replicas"] == after and resumed["steps"] == TOTAL
    assert resumed["windows_trained_this_session"] == (TOTAL - SPLIT_AT) * 8  # resumed at SPLIT_AT, not 0
    assert max_difference(checkpoint_weights(run_dir), checkpoint_weights(uninterrupted)) < TOLERANCE
    # The final validation ran on `after` replicas (the val split's one batch padded for the
    # second): the same scores as one device evaluating the checkpoint.
    from nextword.model.evaluate import evaluate

    alone = evaluate(run_dir, data_dir)
    assert resumed["validation"]["loss"] == pytest.approx(alone["loss"], abs=1e-5)
    assert resumed["validation"]["top5"] == pytest.approx(alone["top5"])


def test_the_tolerance_is_far_below_what_two_steps_of_training_move(uninterrupted):
    moved = max_difference(checkpoint_weights(uninterrupted, TOTAL - 2), checkpoint_weights(uninterrupted))
    assert moved > 10 * TOLERANCE
