"""The same loop under MultiWorkerMirroredStrategy: two worker processes on localhost."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest

from _train_data import cli_command, cli_env, write_data_dir

TIMEOUT = 300


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_two_workers_finish_with_identical_weights_and_only_the_chief_writes(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"), train_documents=100, train_shards=4)
    run_dir = str(tmp_path / "run")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    processes = []
    for index in range(2):
        worker_tmp = tmp_path / f"tmp{index}"
        worker_tmp.mkdir()
        env = cli_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}), TMPDIR=str(worker_tmp))
        args = ["train", data_dir, "--out", run_dir, "--arch", "lstm", "--layers", "1", "--units", "16", "--embedding-dim", "8",
                "--batch-size", "16", "--epochs", "2", "--checkpoint-every", "10", "--no-export", "--no-progress"]
        processes.append(subprocess.Popen(cli_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    fingerprints = [re.search(r"weights sha256: (\w+)", stdout).group(1) for stdout, _ in outputs]
    assert fingerprints[0] == fingerprints[1]
    assert all("2 replica(s), CollectiveAllReduceStrategy" in stdout for stdout, _ in outputs), outputs[0][0]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["replicas"] == 2 and summary["weights_sha256"] == fingerprints[0]
    validated = json.load(open(os.path.join(run_dir, "history.json")))["epochs"]
    # the chief validated the final weights (the validation schedule itself is tested in test_train_cli.py)
    assert summary["epochs_completed"] == 2 and validated and validated[-1]["step"] == summary["steps"]
    # Both workers scored their half of the whole val split for the kept weights (one shard: every
    # 2nd record each, the shorter half padded): the all-reduced totals equal one process scoring all of it.
    from nextword.model.evaluate import evaluate

    alone = evaluate(run_dir, data_dir)
    assert abs(summary["validation"]["loss"] - alone["loss"]) < 1e-5
    assert summary["validation"]["top1"] == pytest.approx(alone["top1"]) and alone["windows"] > 0
    assert os.listdir(tmp_path / "tmp1") == []  # the non-chief's checkpoint dir was removed
    assert any(name.endswith(".index") for name in os.listdir(os.path.join(run_dir, "checkpoints")))
