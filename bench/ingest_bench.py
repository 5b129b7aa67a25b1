"""Ingest section: the notebook's in-RAM recipe vs `nextword ingest`, on the same Zipf corpora.

Both sides run as subprocesses, timed from launch to exit (imports included), with the RSS
of the whole process tree sampled every 50 ms (ingest's workers are children). The notebook's
run is killed when its tree passes the memory cap; that is reported, not hidden.
"""

from __future__ import annotations

import os
import shutil

import psutil

from common import WORK, median, nextword, python_script, run_measured
from nextword.synthetic import write_zipf_corpus

GB = 1 << 30


def memory_cap_bytes(requested_gb: float) -> int:
    """The cap, lowered on a busy machine so the notebook never pushes others into swap."""
    available = psutil.virtual_memory().available
    return int(min(requested_gb * GB, 0.7 * available))


def corpus_path(work: str, megabytes: float) -> str:
    os.makedirs(work, exist_ok=True)
    label = f"{megabytes:g}".replace(".", "p")
    path = os.path.join(work, f"zipf-{label}mb.txt")
    write_zipf_corpus(path, int(megabytes * 1_000_000))
    return path


def run_nextword_ingest(corpus: str, out: str, vocab_size: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    measured = run_measured(nextword("ingest", corpus, "--out", out, "--vocab-size", str(vocab_size), "--json"))
    if measured.returncode != 0:
        raise RuntimeError(f"nextword ingest failed: {measured.stderr[-2000:]}")
    summary = measured.json()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "windows": summary["windows"], "wall_seconds": measured.seconds, "ingest_seconds": summary["seconds"],
        "windows_per_second": summary["windows"] / measured.seconds,
        "windows_per_second_in_process": summary["windows_per_second"],
        "peak_rss_bytes": measured.peak_rss_bytes, "bytes_per_window": summary["bytes_per_window"],
    }


def run_notebook_ingest(corpus: str, vocab_size: int, cap: int) -> dict:
    measured = run_measured(python_script("notebook_recipe", "ingest", corpus, "--vocab-size", str(vocab_size)),
                            memory_cap_bytes=cap)
    if measured.killed_at_bytes is not None:
        return {"out_of_memory": True, "killed_at_bytes": measured.killed_at_bytes, "wall_seconds": measured.seconds,
                "peak_rss_bytes": measured.peak_rss_bytes, "cap_bytes": cap}
    if measured.returncode != 0:
        raise RuntimeError(f"notebook recipe failed: {measured.stderr[-2000:]}")
    result = measured.json()
    return {"out_of_memory": False, "windows": result["windows"], "wall_seconds": measured.seconds,
            "windows_per_second": result["windows"] / measured.seconds,
            "windows_per_second_in_process": result["windows"] / result["seconds"],
            "peak_rss_bytes": measured.peak_rss_bytes, "cap_bytes": cap,
            "bytes_per_window": result["csv_bytes_per_window"], "array_bytes_per_window": result["array_bytes_per_window"],
            "stages": {key: value for key, value in result.items() if key.endswith("_s")}}


def ingest_section(sizes_mb: tuple[float, float], repeats: int, cap_gb: float, vocab_size: int = 20000,
                   work: str = WORK, log=print) -> dict:
    """{"corpora": [{megabytes, bytes, nextword: {...}, notebook: {...}}], "cap_gb": ...}"""
    rows = []
    for index, megabytes in enumerate(sizes_mb):
        corpus = corpus_path(work, megabytes)
        runs = []
        for _ in range(repeats if index == 0 else 1):  # the big corpus once: it is the slow one
            runs.append(run_nextword_ingest(corpus, os.path.join(work, "ingest-out"), vocab_size))
        ours = dict(runs[0])
        for key in ("wall_seconds", "windows_per_second", "windows_per_second_in_process", "peak_rss_bytes"):
            ours[key] = median(run[key] for run in runs)
        ours["runs"] = len(runs)
        log(f"  nextword ingest {megabytes:g} MB: {ours['windows_per_second']:,.0f} windows/s, "
            f"peak RSS {ours['peak_rss_bytes'] / GB:.2f} GB")
        notebook = run_notebook_ingest(corpus, vocab_size, memory_cap_bytes(cap_gb))
        if notebook["out_of_memory"]:
            log(f"  notebook {megabytes:g} MB: out of memory at {notebook['killed_at_bytes'] / GB:.1f} GB "
                f"after {notebook['wall_seconds']:.0f} s")
        else:
            log(f"  notebook {megabytes:g} MB: {notebook['windows_per_second']:,.0f} windows/s, "
                f"peak RSS {notebook['peak_rss_bytes'] / GB:.2f} GB")
        rows.append({"megabytes": megabytes, "bytes": os.path.getsize(corpus), "nextword": ours, "notebook": notebook})
    return {"corpora": rows, "cap_gb": cap_gb, "vocab_size": vocab_size}
