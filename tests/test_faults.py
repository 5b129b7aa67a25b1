"""Expected faults end as a message and a documented exit code; bugs as a short note + traceback file.

The disk-full cases are real: a subprocess under RLIMIT_FSIZE (CPython ignores SIGXFSZ, so
write() fails with EFBIG exactly where a full disk fails with ENOSPC).
"""

from __future__ import annotations

import errno
import glob
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf
import typer

from _cli import run_cli
from _launch import launched
from _train_data import cli_command, cli_env, write_data_dir
from nextword.errors import ResourceError
from nextword.runner import EXIT_BUG, resource_error_from, run_app

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _app_raising(error: BaseException) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    def boom() -> None:
        raise error

    return app


def _run(app, capsys, monkeypatch, tmp_path, **env) -> tuple[int, str]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(SystemExit) as done:
        run_app(app, "nextword", [])
    return done.value.code, capsys.readouterr().err


def test_a_bug_prints_a_short_note_and_writes_its_traceback_to_a_file(capsys, monkeypatch, tmp_path):
    code, err = _run(_app_raising(ZeroDivisionError("division by zero")), capsys, monkeypatch, tmp_path)
    assert code == EXIT_BUG == 70
    assert "error: unexpected ZeroDivisionError: division by zero" in err
    assert "Traceback" not in err and "NEXTWORD_TRACEBACK=1" in err
    [saved] = glob.glob(str(tmp_path / "nextword-traceback-*.txt"))
    assert saved in err
    assert "Traceback (most recent call last)" in open(saved).read()


def test_nextword_traceback_shows_a_bug_s_traceback_inline(capsys, monkeypatch, tmp_path):
    code, err = _run(_app_raising(KeyError("x")), capsys, monkeypatch, tmp_path, NEXTWORD_TRACEBACK="1")
    assert code == 70 and "Traceback (most recent call last)" in err and "bug in nextword" in err


@pytest.mark.parametrize("number, phrase", [
    (errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"), (errno.EMFILE, "too many open files"),
    (errno.EFBIG, "ulimit -f"), (errno.EROFS, "read-only"),
])
def test_os_refusals_exit_74_naming_the_file(number, phrase, capsys, monkeypatch, tmp_path):
    error = OSError(number, os.strerror(number), "/data/train-00003.tfrecord")
    code, err = _run(_app_raising(error), capsys, monkeypatch, tmp_path)
    assert code == ResourceError.exit_code == 74
    assert phrase in err and "/data/train-00003.tfrecord" in err and "unexpected" not in err


def test_tensorflow_refusals_lose_their_graph_plumbing():
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[1024,44,20000] and type "
                                           "float on /job:localhost/replica:0/task:0/device:GPU:0\n\t [[{{node logits}}]]")
    message = resource_error_from(oom)
    assert message.message.startswith("out of memory: OOM when allocating") and "[[" not in message.message
    assert "--batch-size" in message.hint
    too_large = tf.errors.UnknownError(None, None, "{{function_node __wrapped__SaveV2_dtypes_27_device_/job:localhost/"
                                       "replica:0/task:0/device:CPU:0}} /run/ckpt-2_temp/part-0; File too large [Op:SaveV2]")
    message = resource_error_from(too_large)
    assert message.message == "file larger than this system allows (ulimit -f): /run/ckpt-2_temp/part-0; File too large"
    assert resource_error_from(tf.errors.InvalidArgumentError(None, None, "indices[3] = 9 is not in [0, 8)")) is None


def test_only_errors_that_mean_a_lost_peer_ask_to_restart_all_workers():
    from nextword.model.strategy import is_peer_failure

    heartbeat = ("Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are "
                 "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1")
    assert is_peer_failure(tf.errors.UnavailableError(None, None, "Socket closed"))
    assert is_peer_failure(tf.errors.CancelledError(None, None, heartbeat))
    assert is_peer_failure(tf.errors.FailedPreconditionError(None, None, heartbeat))
    # What genuine bugs raise: a restart loop would hide them.
    assert not is_peer_failure(tf.errors.FailedPreconditionError(None, None, "Could not find variable dense/kernel"))
    assert not is_peer_failure(tf.errors.CancelledError(None, None, "RecvAsync is cancelled"))
    assert not is_peer_failure(tf.errors.InvalidArgumentError(None, None, "Collective ops is aborted by: x"))


@pytest.mark.slow
def test_ingest_on_a_full_disk_says_so_leaves_nothing_that_looks_complete_and_resumes(tmp_path):
    out = str(tmp_path / "data")
    command = [sys.executable, "-m", "nextword.cli", "ingest", "--builtin", "--out", out, "--vocab-size", "500",
               "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    full = subprocess.run(launched(command, file_size_limit=40_000), env=env, capture_output=True, text=True,
                          timeout=300)
    assert full.returncode == 74, full.stderr[-2000:]
    assert "file larger than this system allows" in full.stderr and out in full.stderr
    assert "Traceback" not in full.stderr
    assert not os.path.exists(os.path.join(out, "dataset.json"))  # no manifest: not a dataset yet
    assert not glob.glob(os.path.join(out, "*.tfrecord"))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.load(open(os.path.join(out, "dataset.json")))["splits"]["train"]["windows"] > 0


@pytest.mark.slow
def test_train_on_a_full_disk_says_so_and_leaves_no_checkpoint_that_looks_complete(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"))
    run_dir = str(tmp_path / "run")
    result = subprocess.run(launched(cli_command("train", data_dir, "--out", run_dir, "--max-steps", "2", "--units", "512",
                                                 "--no-progress", "--no-export"), file_size_limit=1_000_000),
                            env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 74, result.stderr[-2000:]
    assert "file larger than this system allows" in result.stderr and "checkpoints" in result.stderr
    assert "Traceback" not in result.stderr and "{{function_node" not in result.stderr
    assert tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")) is None


def test_a_mistyped_option_is_a_usage_error_not_a_traceback():
    result = run_cli("verify", "--no-such-option")
    assert result.exit_code == 2 and "No such option" in result.stderr and "Traceback" not in result.output
