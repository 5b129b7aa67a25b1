"""Shared benchmark plumbing: running commands, sampling memory, medians (the machine and the results: bench/store.py;
training and scoring an arm: bench/arms.py).

Every heavy measurement runs in its own subprocess so TensorFlow/Keras global state, thread
pools and memory of one section never leak into the next.
"""

from __future__ import annotations

import json
import os
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
    peak_unique_bytes: int = 0  # with unique=True: the tree's peak unique memory (memory_of)
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


def memory_of(pids: list[int]) -> tuple[int, int, list]:
    """(PSS sum, unique bytes, [(pid, private, shared) each]) of processes: unique = every process's
    private pages plus the largest shared set of any one of them, once (TensorFlow's libraries, and
    for forked workers the forkserver's imported objects, are mapped by several: an RSS sum counts
    them again each time, a PSS sum also splits them with unrelated processes of the machine that
    map the same files)."""
    pss = private = shared = 0
    each = []
    for pid in pids:
        fields = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                for line in handle:
                    name, _, rest = line.partition(":")
                    if rest.strip().endswith("kB"):
                        fields[name] = int(rest.split()[0]) * 1024
        except OSError:
            continue
        mine = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
        theirs = fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)
        pss += fields.get("Pss", 0)
        private += mine
        shared = max(shared, theirs)
        each.append((pid, mine, theirs))
    return pss, private + shared, each


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
                 timeout: float | None = None, cwd: str = REPO, echo_stderr: bool = False,
                 unique: bool = False) -> Measured:
    """Run argv, sampling the tree's RSS every `interval` s; kill the tree past the cap or timeout.
    unique: also its unique memory (memory_of) every 4th sample (smaps_rollup walks every mapping).

    stdout/stderr go to temp files (not pipes) so a chatty child never blocks on a full pipe.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=None if echo_stderr else err, env=ENV, cwd=cwd)
        watched = psutil.Process(child.pid)
        peak, killed_at, peak_unique, samples = 0, None, 0, 0
        while child.poll() is None:
            rss = tree_rss(watched)
            peak = max(peak, rss)
            if unique and samples % 4 == 0:
                try:
                    pids = [child.pid] + [member.pid for member in watched.children(recursive=True)]
                    peak_unique = max(peak_unique, memory_of(pids)[1])
                except psutil.Error:
                    pass
            samples += 1
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
        return Measured(child.returncode, seconds, peak, out.read(), err.read(), killed_at,
                        peak_unique_bytes=peak_unique)


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


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"
