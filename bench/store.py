"""The one results store of bench/: bench/results.json, entries keyed by benchmark and run.

    {"format": 1,
     "benchmarks": {BENCHMARK: {RUN: {"date": "2026-12-05 15:00 UTC", "versions": {...}, "machine": {...},
                                     "settings": {...}, "figures": {...}}}}}

A benchmark measures, then calls `record(benchmark, run, figures, settings)`: the entry is stamped with the
date, the package versions (and the commit the code was measured at) and the machine. Recording the same
(benchmark, run) again replaces that entry (a rerun of one cell); the benchmark's other runs stay. bench/run
renders RESULTS.md from `entries`. Each entry is one line of the file, so a rerun is a one-line diff.
Writes hold an exclusive lock and replace the file atomically: two scripts recording at once both land.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
STORE = os.path.join(BENCH, "results.json")
FORMAT = 1
PACKAGES = ("tensorflow", "tensorflow-text", "keras", "numpy", "pandas", "pyarrow", "apache-beam")


class StoreError(Exception):
    """A results file this module cannot read (not a store, or a newer format)."""


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def machine() -> dict:
    """The machine a figure was measured on: cores, CPU model, RAM, Python, platform (no package versions:
    those are `versions()`)."""
    import psutil

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def code_revision() -> str:
    """The commit the packages were measured at, "+changes" when the working tree differs from it: figures
    of different code are not one experiment."""
    def git(*arguments):
        return subprocess.run(["git", "-C", REPO, *arguments], capture_output=True, text=True)

    commit = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    changed = git("diff", "--quiet", "HEAD", "--", "ingest", "tfrecords", "model", "generate", "nextword").returncode
    return commit + ("+changes" if changed else "")


def versions() -> dict:
    """nextword's version and code revision, and the versions of the packages the figures depend on."""
    from importlib.metadata import version

    found = {}
    for package in ("nextword", *PACKAGES):
        try:
            found[package] = version(package)
        except Exception:  # noqa: BLE001 - not installed is a fine answer
            found[package] = "not installed"
    return {**found, "code": code_revision()}


def empty() -> dict:
    return {"format": FORMAT, "benchmarks": {}}


def load(path: str = STORE) -> dict:
    """The store at `path` (an empty one when the file does not exist yet)."""
    if not os.path.exists(path):
        return empty()
    with open(path) as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise StoreError(f"{path} is not a bench results store: expected {{\"format\": {FORMAT}, \"benchmarks\": ...}}, "
                         f"got keys {sorted(data) if isinstance(data, dict) else type(data).__name__}; "
                         "give another path, or move the file away")
    if data.get("format", 0) > FORMAT:
        raise StoreError(f"{path} has store format {data['format']}, this checkout reads up to {FORMAT}: update bench/")
    return data


def dumps(data: dict) -> str:
    """The store as text: the nesting indented, every entry on one line (a rerun of one run is a one-line diff)."""
    lines = ["{", f' "format": {data["format"]},', ' "benchmarks": {']
    benchmarks = sorted(data["benchmarks"].items())
    for number, (benchmark, runs) in enumerate(benchmarks):
        lines.append(f"  {json.dumps(benchmark)}: {{")
        items = list(runs.items())
        for index, (run, entry) in enumerate(items):
            comma = "," if index < len(items) - 1 else ""
            lines.append(f"   {json.dumps(run)}: {json.dumps(entry, sort_keys=False, default=str)}{comma}")
        lines.append("  }" + ("," if number < len(benchmarks) - 1 else ""))
    lines += [" }", "}", ""]
    return "\n".join(lines)


@contextmanager
def _locked(path: str):
    """Hold an exclusive lock on the store's folder (the file itself is replaced on every write, and a
    lock file would be one more thing to ignore in git)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def write(data: dict, path: str = STORE) -> None:
    """Replace the file at `path` with `data` (temp file + rename)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(dumps(data))
    os.replace(temporary, path)


def stamp(date: str | None = None) -> dict:
    """What every entry says about where and when it was measured."""
    return {"date": date or now(), "versions": versions(), "machine": machine()}


def record(benchmark: str, run: str, figures: dict, settings: dict | None = None, path: str = STORE,
           measured: dict | None = None) -> dict:
    """Store `figures` as (benchmark, run), replacing an earlier entry of that key; returns the entry.

    settings: what the run was asked to do (budgets, sizes, flags). measured: the stamp (`stamp()`), taken
    when the run started if the caller wants that; by default now."""
    entry = {**(measured or stamp()), "settings": settings or {}, "figures": figures}
    with _locked(path):
        data = load(path)
        data["benchmarks"].setdefault(benchmark, {})[run] = entry
        write(data, path)
    return entry


def forget(benchmark: str, run: str, path: str = STORE) -> bool:
    """Remove (benchmark, run); whether it was there."""
    with _locked(path):
        data = load(path)
        runs = data["benchmarks"].get(benchmark, {})
        found = runs.pop(run, None) is not None
        if not runs:
            data["benchmarks"].pop(benchmark, None)
        write(data, path)
    return found


def entries(benchmark: str, path: str = STORE, data: dict | None = None) -> dict[str, dict]:
    """run -> entry of one benchmark, in the order they were first recorded ({} when none)."""
    return dict((data if data is not None else load(path))["benchmarks"].get(benchmark, {}))


def figures(benchmark: str, run: str, path: str = STORE, data: dict | None = None) -> dict | None:
    """The figures of (benchmark, run), None when not recorded."""
    entry = entries(benchmark, path, data).get(run)
    return None if entry is None else entry["figures"]
