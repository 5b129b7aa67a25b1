"""Exact resume: kill -9 at a random step and run again == one uninterrupted run; Ctrl-C saves."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from _train_data import checkpoint_weights, cli_command, cli_env, write_data_dir

# Dropout on: resumed dropout masks must match too (seed-generator states are checkpointed).
ARGS = [
    "--arch", "lstm", "--layers", "2", "--units", "24", "--embedding-dim", "8", "--dropout", "0.2", "--batch-size", "8",
    "--epochs", "3", "--seed", "11", "--checkpoint-every", "7", "--steps-per-call", "3",
    "--validate-every", "5", "--patience", "100", "--deterministic", "--no-export", "--no-progress",
]
TIMEOUT = 240


def train(data_dir: str, run_dir: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**cli_env(), **({"NEXTWORD_KILL_AT": kill_at} if kill_at else {})}
    return subprocess.run(
        cli_command("train", data_dir, "--out", run_dir, *ARGS),
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )


def best_weights(run_dir: str) -> dict:
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints", "best")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model_variables/")}


def checkpoint_steps(run_dir: str) -> list[int]:
    directory = os.path.join(run_dir, "checkpoints")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted(int(name[5:-6]) for name in names if name.startswith("ckpt-") and name.endswith(".index"))


def start_and_wait_for_checkpoint(data_dir: str, run_dir: str, at_least: int) -> subprocess.Popen:
    process = subprocess.Popen(
        cli_command("train", data_dir, "--out", run_dir, *ARGS),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        steps = checkpoint_steps(run_dir)
        if steps and steps[-1] >= at_least:
            return process
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no checkpoint at step >= {at_least} (exit {process.poll()}): {process.communicate()[1][-2000:]}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(str(tmp_path_factory.mktemp("data")), train_documents=150, val_documents=5)


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("whole"))
    result = train(data_dir, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(data_dir, uninterrupted, tmp_path):
    total_steps = json.load(open(os.path.join(uninterrupted, "summary.json")))["steps"]
    kill_after = random.Random(total_steps).randrange(8, total_steps // 2)  # seeded: a failure reruns alike
    run_dir = str(tmp_path / "killed")
    process = start_and_wait_for_checkpoint(data_dir, run_dir, kill_after)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))  # it died mid-run
    on_disk = checkpoint_steps(run_dir)
    assert 0 < on_disk[-1] < total_steps

    result = train(data_dir, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    # The newest *.index on disk is not always the resume point: a kill between writing a checkpoint's files
    # and updating the `checkpoint` state file leaves it unlisted, and the run resumes from the one before.
    resumed_from = int(re.search(r"resuming from step ([\d,]+)", result.stderr).group(1).replace(",", ""))
    assert resumed_from in on_disk[-2:]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["steps"] == total_steps
    assert summary["windows_trained_this_session"] == (total_steps - resumed_from) * 8
    expected, got = checkpoint_weights(uninterrupted), checkpoint_weights(run_dir)
    assert expected.keys() == got.keys() and len(expected) > 5
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
    # history keeps one row per validation, none duplicated by the replayed steps
    rows = [row["step"] for row in json.load(open(os.path.join(run_dir, "history.json")))["epochs"]]
    assert rows == [row["step"] for row in json.load(open(os.path.join(uninterrupted, "history.json")))["epochs"]]
    assert_same_best(uninterrupted, run_dir)


def assert_same_best(expected_run: str, run_dir: str) -> None:
    """The best step, the patience count and the best checkpoint's weights of both runs are equal."""
    expected, got = (json.load(open(os.path.join(run, "summary.json"))) for run in (expected_run, run_dir))
    for key in ("best_step", "validations_without_improvement", "exported"):
        assert got[key] == expected[key], key
    want, have = best_weights(expected_run), best_weights(run_dir)
    assert want.keys() == have.keys() and len(want) > 5
    for name in want:
        np.testing.assert_array_equal(want[name], have[name], err_msg=name)


@pytest.mark.slow
def test_a_kill_between_saving_the_best_and_recording_it_loses_neither(data_dir, uninterrupted, tmp_path):
    """The most fragile moment: the best checkpoint of a validation is on disk, the checkpoint that
    records it (best step, patience count) is not. The rerun resumes from the checkpoint before,
    forgets the unrecorded best, replays the validation and ends exactly as an uninterrupted run."""
    history = json.load(open(os.path.join(uninterrupted, "history.json")))
    bests = [row["step"] for row in history["epochs"] if row["best"]]
    assert len(bests) >= 2, bests  # the kill is at a later best, with an earlier one to fall back on
    run_dir = str(tmp_path / "killed")
    killed = train(data_dir, run_dir, kill_at=f"best_saved@{bests[1]}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert bests[1] in [int(name[5:-6]) for name in os.listdir(os.path.join(run_dir, "checkpoints", "best")) if name.endswith(".index")]
    assert checkpoint_steps(run_dir)[-1] < bests[1]
    result = train(data_dir, run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_best(uninterrupted, run_dir)
    expected, got = checkpoint_weights(uninterrupted), checkpoint_weights(run_dir)
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(data_dir, tmp_path):
    run_dir = str(tmp_path / "interrupted")
    process = start_and_wait_for_checkpoint(data_dir, run_dir, 7)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: checkpoint saved at step" in stderr and "Traceback" not in stderr
    assert stderr.count("interrupted") == 1  # train's own line; the CLI boundary adds none
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["stopped_by"] == "interrupt"
    assert checkpoint_steps(run_dir)[-1] == summary["steps"] > 0
    assert not os.path.exists(os.path.join(run_dir, "export"))
