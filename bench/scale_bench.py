"""Scale-out figures (issue 6): the Beam ingest vs the local ingest, and training with 1 vs 2 workers.

    python bench/scale_bench.py beam CORPUS [--workers 2] [--repeats 1]
    python bench/scale_bench.py workers DATA_DIR [--steps 200]

`benchmark_beam_ingest(corpus_path)` and `benchmark_workers(data_dir)` return dicts (bench/run
prints them as JSON); progress lines go to stderr. Every run is its own subprocess.

On one 2-core machine neither figure is a speed-up: DirectRunner is Beam's test runner (it
holds every stage's output in memory and ships elements between processes), and two
workers on localhost share the same two cores and add an all-reduce per step. They measure
the overhead of the distributed engines, which is what a real cluster then has to amortise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, REPO, load_average, median, nextword, run_measured  # noqa: E402

TRAIN_MODEL = ("--arch", "lstm", "--layers", "1", "--units", "128", "--embedding-dim", "64")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _comparable_manifest(data_dir: str) -> dict:
    with open(os.path.join(data_dir, "dataset.json")) as handle:
        manifest = json.load(handle)
    manifest.pop("created_by", None)
    return manifest


def _ingest_once(corpus_path: str, out: str, workers: int, runner: str, vocab_size: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    argv = nextword("ingest", corpus_path, "--out", out, "--vocab-size", str(vocab_size), "--workers", str(workers),
                    "--runner", runner, "--json")
    measured = run_measured(argv)
    if measured.returncode != 0:
        raise RuntimeError(f"{runner} ingest failed: {measured.stderr[-2000:]}")
    summary = measured.json()
    return {"wall_seconds": measured.seconds, "seconds": summary["seconds"], "windows": summary["windows"],
            "peak_rss_mb": round(measured.peak_rss_bytes / 1e6)}


def benchmark_beam_ingest(corpus_path: str, workers: int = 2, repeats: int = 1, vocab_size: int = 20000) -> dict:
    """Windows/s of `nextword ingest` (local) and `--runner beam` (DirectRunner, `workers`
    processes) on the same corpus; medians over `repeats`; whether both wrote the same dataset."""
    work = tempfile.mkdtemp(prefix="nextword-scale-ingest-")
    load_before = load_average()
    runs = {"local": [], "beam": []}
    try:
        for repeat in range(repeats):
            for runner in ("local", "beam"):
                _log(f"  ingest {runner} run {repeat + 1}/{repeats} on {corpus_path}")
                runs[runner].append(_ingest_once(corpus_path, os.path.join(work, runner), workers, runner, vocab_size))
        identical = _comparable_manifest(os.path.join(work, "local")) == _comparable_manifest(os.path.join(work, "beam"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    windows = runs["local"][0]["windows"]
    figures = {}
    for runner, measured in runs.items():
        seconds = median(run["seconds"] for run in measured)
        figures[runner] = {
            "seconds_median": round(seconds, 2),
            "wall_seconds_median": round(median(run["wall_seconds"] for run in measured), 2),
            "windows_per_second": round(windows / seconds),
            "peak_rss_mb_max": max(run["peak_rss_mb"] for run in measured),
        }
    return {
        "corpus_mb": round(os.path.getsize(corpus_path) / 1e6, 2), "windows": windows, "workers": workers,
        "repeats": repeats, "local": figures["local"], "beam_directrunner": figures["beam"],
        "beam_over_local_time": round(figures["beam"]["seconds_median"] / figures["local"]["seconds_median"], 2),
        "identical_manifest": identical,  # shard sha256s included: byte-identical datasets
        "load_average_before": load_before, "load_average_after": load_average(),
        "note": "DirectRunner is Beam's local test runner (every stage's output held in memory, elements "
                "pickled between worker processes); the figure is Beam's overhead here, not a cluster's speed",
    }


# ------------------------------------------------------------------ training with N workers

def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _train(data_dir: str, run_dir: str, workers: int, steps: int, batch_size: int, timeout: float) -> dict:
    """`workers` = 0: one process, default strategy; N: N processes with TF_CONFIG on localhost."""
    argv = nextword("train", data_dir, "--out", run_dir, *TRAIN_MODEL, "--batch-size", str(batch_size),
                    "--max-steps", str(steps), "--epochs", "1000", "--checkpoint-every", str(steps),
                    "--no-export", "--no-progress")
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(workers)]} if workers else None
    processes = []
    started = time.perf_counter()
    for index in range(max(workers, 1)):
        env = dict(ENV)
        if cluster:
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        errors = [process.communicate(timeout=timeout)[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    wall = time.perf_counter() - started
    if any(process.returncode for process in processes):
        raise RuntimeError(f"training with {workers} worker(s) failed: {errors[0][-2000:]}")
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    with open(os.path.join(run_dir, "history.json")) as handle:
        rows = json.load(handle)["steps"]
    # The first logged interval holds tf.function tracing and the cluster handshake.
    steady = [row["windows_per_second"] for row in rows[1:]] or [summary["windows_per_second"]]
    return {"steady_windows_per_second": round(median(steady)), "session_windows_per_second": summary["windows_per_second"],
            "replicas": summary["replicas"], "strategy": summary["strategy"], "wall_seconds": round(wall, 1)}


def benchmark_workers(data_dir: str, steps: int = 100, batch_size: int = 256, timeout: float = 240) -> dict:
    """Training windows/s on `data_dir`: one process (default strategy), then MultiWorkerMirroredStrategy
    with 1 and 2 worker processes on localhost; same global batch, same model."""
    work = tempfile.mkdtemp(prefix="nextword-scale-train-")
    load_before = load_average()
    results = {}
    try:
        for label, workers in (("single_process", 0), ("1_worker", 1), ("2_workers", 2)):
            _log(f"  train {label}: {steps} steps of {batch_size} windows")
            results[label] = _train(data_dir, os.path.join(work, label), workers, steps, batch_size, timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        **results, "steps": steps, "global_batch": batch_size, "model": " ".join(TRAIN_MODEL),
        "cores": len(os.sched_getaffinity(0)), "load_average_before": load_before, "load_average_after": load_average(),
        "note": "2 workers on one 2-core machine share the cores and add a gRPC all-reduce per step: this is the "
                "multi-worker overhead, not a speed-up (on N machines each worker brings its own cores/GPUs)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    beam = commands.add_parser("beam")
    beam.add_argument("corpus")
    beam.add_argument("--workers", type=int, default=2)
    beam.add_argument("--repeats", type=int, default=1)
    workers = commands.add_parser("workers")
    workers.add_argument("data_dir")
    workers.add_argument("--steps", type=int, default=100)
    arguments = parser.parse_args()
    if arguments.command == "beam":
        result = benchmark_beam_ingest(arguments.corpus, arguments.workers, arguments.repeats)
    else:
        result = benchmark_workers(arguments.data_dir, arguments.steps)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
