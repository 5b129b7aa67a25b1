"""Multi-worker training that fails safely: a killed worker stops the others fast with a
message to restart all of them, and restarting them resumes from the last checkpoint.
Also: each worker's input pipeline reads its own disjoint subset of the shards."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time

import pytest
import tensorflow as tf

from _train_data import cli_command, cli_env, write_data_dir
from conftest import decode_records, expand_windows
from test_multiworker import free_ports
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset

FAILURE_BOUND_SECONDS = 60  # TF's coordination-service heartbeat notices a dead peer in ~10 s
TIMEOUT = 300
ARGS = ["--arch", "lstm", "--layers", "1", "--units", "16", "--embedding-dim", "8", "--batch-size", "16", "--epochs", "2",
        "--checkpoint-every", "10", "--steps-per-call", "2", "--seed", "3", "--no-export", "--no-progress"]


def start_workers(data_dir: str, run_dir: str, cluster: dict, tmp_path, attempt: int) -> list[subprocess.Popen]:
    workers = []
    for index in range(len(cluster["worker"])):
        worker_tmp = tmp_path / f"tmp-{attempt}-{index}"
        worker_tmp.mkdir()
        env = cli_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                      TMPDIR=str(worker_tmp))
        workers.append(subprocess.Popen(cli_command("train", data_dir, "--out", run_dir, *ARGS), env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return workers


def checkpoint_steps(run_dir: str) -> list[int]:
    """The steps the `checkpoint` index names: what a resume reads. (A ckpt-N.index file alone is not resumable
    yet: the manager writes the data files first and the index last, and a kill in between leaves N-10 the latest.)"""
    directory = os.path.join(run_dir, "checkpoints")
    state = tf.train.get_checkpoint_state(directory) if os.path.isdir(directory) else None
    paths = state.all_model_checkpoint_paths if state else []
    return sorted(int(os.path.basename(path).rsplit("-", 1)[1]) for path in paths)


def wait_for_checkpoint(workers, run_dir: str, at_least: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and all(worker.poll() is None for worker in workers):
        steps = checkpoint_steps(run_dir)
        if steps and steps[-1] >= at_least:
            return
        time.sleep(0.05)
    for worker in workers:
        worker.kill()
    pytest.fail(f"no checkpoint at step >= {at_least}: {[worker.communicate()[1][-1500:] for worker in workers]}")


def finish(workers) -> list[tuple[str, str]]:
    try:
        return [worker.communicate(timeout=TIMEOUT) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["kill-worker", "kill-chief"])
def test_killed_worker_stops_the_other_fast_and_a_restart_of_both_resumes(tmp_path, victim):
    data_dir = write_data_dir(str(tmp_path / "data"), train_documents=200, train_shards=4)
    run_dir = str(tmp_path / "run")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}

    workers = start_workers(data_dir, run_dir, cluster, tmp_path, attempt=0)
    wait_for_checkpoint(workers, run_dir, at_least=20)
    workers[victim].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = workers[1 - victim]
    try:
        _, survivor_stderr = survivor.communicate(timeout=FAILURE_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        survivor.kill()
        pytest.fail(f"the surviving worker still runs {FAILURE_BOUND_SECONDS} s after its peer was killed (hang)")
    finally:
        workers[victim].communicate()
    assert time.monotonic() - killed_at < FAILURE_BOUND_SECONDS
    assert survivor.returncode == 75, survivor_stderr[-3000:]
    assert "error: multi-worker training stopped: a worker was lost" in survivor_stderr
    assert "restart ALL 2 workers with the same command and TF_CONFIG" in survivor_stderr
    assert "Traceback" not in survivor_stderr
    resumable = checkpoint_steps(run_dir)[-1]
    assert resumable >= 20

    restarted = start_workers(data_dir, run_dir, cluster, tmp_path, attempt=1)
    outputs = finish(restarted)
    for worker, (_, stderr) in zip(restarted, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["epochs_completed"] == 2 and summary["replicas"] == 2
    # The restarted session trained only the steps after the checkpoint it resumed from.
    resumed_from = summary["steps"] - summary["windows_trained_this_session"] // 16
    assert resumed_from >= resumable > 0
    fingerprints = {stdout.split("weights sha256: ")[1].split()[0] for stdout, _ in outputs}
    assert fingerprints == {summary["weights_sha256"]}
    assert os.listdir(tmp_path / "tmp-1-1") == []  # the non-chief removed its temporary checkpoints


def test_each_worker_reads_a_disjoint_subset_of_the_shards(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"), train_documents=120, train_shards=5)
    manifest = load_manifest(data_dir)
    all_files = {os.path.join(data_dir, shard.file) for shard in manifest.splits["train"].shards}
    config = ReaderConfig(batch_size=4, objective="last", seed=7, shuffle_buffer=64)
    for epoch in range(3):
        plans = [epoch_plan(data_dir, manifest, "train", config, epoch, 2, worker) for worker in range(2)]
        files = [set(plan.files) for plan in plans]
        assert files[0] and files[1] and not files[0] & files[1]
        assert files[0] | files[1] == all_files
        assert all(plan.record_shard is None for plan in plans)  # whole files, not every n-th record
        assert plans[0].batches == plans[1].batches  # every worker takes the same number of steps

    # What each worker's tf.data pipeline actually yields comes from its own files only.
    for worker, plan in enumerate(plans):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        dataset = make_dataset(data_dir, "train", config, input_context=context, epoch=2, manifest=manifest)
        read = collections.Counter(
            tuple(row) + (int(target),)
            for context_ids, targets, _ in dataset for row, target in zip(context_ids.numpy().tolist(), targets.numpy()))
        own = collections.Counter(map(tuple, expand_windows(decode_records(plan.files, manifest.layout),
                                                            manifest.context_length, manifest.stride)))
        assert sum(read.values()) == plan.batches * config.batch_size
        assert not read - own  # every window this worker trained on lies in its own shards


@pytest.mark.parametrize("message, expected", [
    ("Graph execution error:\n\nCollective ops is aborted by: Error reported from /job:worker/task:1: The following "
     "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.\n"
     "The error could be from a previous operation. Restart your program to reset.\n\t [[{{node while/CollectiveReduceV2}}]]",
     "Error reported from /job:worker/task:1: The following tasks are unhealthy (stopped sending heartbeats): "
     "/job:worker/replica:0/task:1"),
    ("Collective ops is aborted by: Socket closed\nAdditional GRPC error information from remote target "
     "/job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/RecvBuf:\nThe error could be from",
     "Socket closed"),
])
def test_the_lost_worker_message_names_tf_s_reason_on_one_line(message, expected):
    from nextword.model.strategy import _failure_reason

    assert _failure_reason(tf.errors.UnavailableError(None, None, message)) == expected


@pytest.mark.slow
def test_workers_that_restore_different_checkpoints_stop_instead_of_diverging(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"), train_documents=100, train_shards=4)
    run_dir = str(tmp_path / "run")
    first = subprocess.run(cli_command("train", data_dir, "--out", run_dir, *ARGS, "--max-steps", "10"),
                           env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr[-2000:]
    assert checkpoint_steps(run_dir)[-1] == 10

    # The chief sees RUN_DIR's checkpoint at step 10; the other worker is given an empty RUN_DIR
    # (as when each machine passes its own local path): it would start from step 0.
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index, out in enumerate((run_dir, str(tmp_path / "elsewhere"))):
        env = cli_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(cli_command("train", data_dir, "--out", out, *ARGS, "--max-steps", "20"),
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = finish(workers)
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 1, stderr[-3000:]
        assert "error: the workers resumed from different checkpoints" in stderr
        assert "same DATA_DIR and RUN_DIR on shared storage" in stderr
    assert checkpoint_steps(run_dir)[-1] == 10  # nothing trained on top of the mismatch
