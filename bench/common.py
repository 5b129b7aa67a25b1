"""Shared benchmark plumbing: running commands, sampling memory, the machine, medians.

Every heavy measurement runs in its own subprocess so TensorFlow/Keras global state, thread
pools and memory of one section never leak into the next.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
WORK = os.path.join(BENCH, "work")
PYTHON = sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def median(values) -> float:
    return float(statistics.median(values))


def nextword(*arguments: str) -> list[str]:
    """argv for the `nextword` CLI of this checkout (no reliance on the console script on PATH)."""
    return [PYTHON, "-m", "nextword.cli", *arguments]


@dataclass
class Measured:
    """One subprocess run: exit code, wall seconds, peak RSS of the whole tree, output."""

    returncode: int
    seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str
    killed_at_bytes: int | None = None  # set when the memory cap killed the tree
    samples: list = field(default_factory=list)

    def json(self) -> dict:
        return json.loads(self.stdout[self.stdout.index("{"):])


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process plus all its descendants (bytes); vanished processes count 0."""
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def kill_tree(process: psutil.Process) -> None:
    try:
        members = [*process.children(recursive=True), process]
    except psutil.NoSuchProcess:
        return
    for member in members:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass


def run_measured(argv: list[str], memory_cap_bytes: int | None = None, interval: float = 0.05,
                 timeout: float | None = None, cwd: str = REPO, echo_stderr: bool = False) -> Measured:
    """Run argv, sampling the tree's RSS every `interval` s; kill the tree past the cap or timeout.

    stdout/stderr go to temp files (not pipes) so a chatty child never blocks on a full pipe.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=None if echo_stderr else err, env=ENV, cwd=cwd)
        watched = psutil.Process(child.pid)
        peak, killed_at = 0, None
        while child.poll() is None:
            rss = tree_rss(watched)
            peak = max(peak, rss)
            if memory_cap_bytes and rss > memory_cap_bytes:
                killed_at = rss
                kill_tree(watched)
                child.wait()
                break
            if timeout and time.perf_counter() - started > timeout:
                kill_tree(watched)
                child.wait()
                break
            time.sleep(interval)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Measured(child.returncode, seconds, peak, out.read(), err.read(), killed_at)


def run_checked(argv: list[str], **kwargs) -> Measured:
    measured = run_measured(argv, **kwargs)
    if measured.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {measured.returncode}:\n{measured.stderr[-3000:]}")
    return measured


def python_script(code_module: str, *arguments: str) -> list[str]:
    """argv running bench/<module>.py as a script."""
    return [PYTHON, os.path.join(BENCH, f"{code_module}.py"), *arguments]


def ingest_builtin(out: str, vocab_size: int = 500, val_fraction: float = 0.1) -> dict:
    """The embedded corpus as a DATA_DIR (idempotent: a finished identical ingest returns at once)."""
    measured = run_checked(nextword("ingest", "--builtin", "--out", out, "--vocab-size", str(vocab_size),
                                    "--val-fraction", str(val_fraction), "--json"))
    return measured.json()


def train_and_eval(data_dir: str, run_dir: str, budget: float, options: list[str], export: bool = False,
                   score_export: bool = False) -> dict:
    """`nextword train` for `budget` seconds of training, then `nextword eval` on val; one dict.

    score_export: train exports and eval scores RUN_DIR/export (what `gen` samples from: with the
    default --ngram-order, the network mixed with its n-gram), and "card" holds its card; else eval
    scores RUN_DIR's best checkpoint (the network alone)."""
    export = export or score_export
    argv = nextword("train", data_dir, "--out", run_dir, "--time-budget", str(budget), "--epochs", "100000",
                    "--no-progress", "--export" if export else "--no-export", *options)
    trained = run_checked(argv)
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    scored = os.path.join(run_dir, "export") if score_export else run_dir
    evaluated = run_checked(nextword("eval", scored, data_dir, "--json")).json()
    card = None
    if score_export:
        with open(os.path.join(run_dir, "export", "card.json")) as handle:
            card = json.load(handle)
    return {"summary": summary, "val": evaluated, "wall_seconds": trained.seconds, "card": card}


def dataset_fingerprint(data_dir: str) -> str | None:
    """DATA_DIR/dataset.json's fingerprint (None for a dataset written before manifests recorded it)."""
    with open(os.path.join(data_dir, "dataset.json")) as handle:
        return json.load(handle).get("fingerprint")


def five_gram(data_dir: str, known: dict | None = None, log=print) -> dict:
    """The interpolated modified Kneser-Ney 5-gram of DATA_DIR, to store in a benchmark's results beside its arms:
    counted on the train windows, scored on the val windows (`bench/kneser_ney.py DATA_DIR --json`, in its own
    process: cached in bench/work/kneser-ney by the dataset's fingerprint), plus "dataset_fingerprint", "data_dir"
    and "date". `known`, the entry an earlier run stored, comes back as it is when it has figures of the same
    fingerprint. A failure comes back as {"error", "dataset_fingerprint", ...}, so the arms still run and the report
    says the 5-gram was not measured (bench/report.py `five_gram_missing`)."""
    data_dir = os.path.abspath(data_dir)  # the process runs in the repository
    try:
        fingerprint = dataset_fingerprint(data_dir)
    except (OSError, ValueError):
        fingerprint = None  # no readable manifest: bench/kneser_ney.py says what is wrong, stored as the error
    if known and "error" not in known and fingerprint is not None and known.get("dataset_fingerprint") == fingerprint:
        return known
    stamp = {"dataset_fingerprint": fingerprint, "data_dir": data_dir,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    measured = run_measured(python_script("kneser_ney", data_dir, "--order", "5", "--json"))
    try:
        if measured.returncode != 0:
            said = measured.stdout.strip() or measured.stderr.strip()  # its `error: ...` line, else a traceback
            raise ValueError(f"exit {measured.returncode}: {said[-1000:]}")
        result = measured.json()
    except ValueError as error:  # also a JSONDecodeError
        log(f"  5-gram Kneser-Ney of {data_dir}: not measured: `bench/kneser_ney.py` failed: {error}")
        return {"error": f"bench/kneser_ney.py {data_dir}: {error}", **stamp}
    log(f"  5-gram Kneser-Ney of {data_dir}: perplexity {result['perplexity']:.2f}, top-1 {result['top1']:.4f} "
        f"({result['windows']:,} val windows; counted in {result['seconds']:.0f} s)")
    return {**result, **stamp}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {}
    for package in ("tensorflow", "tensorflow-text", "keras", "numpy", "pandas", "pyarrow", "apache-beam"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - not installed is a fine answer
            versions[package] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


HARDENING_RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hardening_results.json")


def record_hardening(key: str, value, label: str | None = None) -> None:
    """Merge one script's figures into bench/hardening_results.json (rendered into RESULTS.md by
    bench/run): a dict under `key`, or, with a label, an entry of the list under `key`."""
    import json
    import time

    data = {}
    if os.path.exists(HARDENING_RESULTS):
        with open(HARDENING_RESULTS) as handle:
            data = json.load(handle)
    value = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **value}
    if label is None:
        data[key] = value
    else:
        entries = [entry for entry in data.get(key, []) if entry.get("label") != label]
        data[key] = entries + [{"label": label, **value}]
    with open(HARDENING_RESULTS, "w") as handle:
        json.dump(data, handle, indent=2)
