#!/usr/bin/env python3
"""How ingest splits over cores, per pass, and what its process tree holds (issue 20, items 3-4).

    python bench/ingest_scaling_bench.py run [--rounds 3] [--corpora gcide-line,gcide-paragraph,kjv-line] [--workers 1,2] [--run NAME]
    python bench/ingest_scaling_bench.py report [--run NAME]   # markdown from the results store, ingest_scaling/NAME

Each run is `nextword ingest CORPUS --vocab-size 20000 --text-unit U --workers W --dedup none --json`
in its own process (the corpora of bench/real_text_bench.py), the worker counts alternating over rounds.
Sampled every 0.1 s: the CPU seconds of every thread of the main process and of every other
process of the tree (the workers, their forkserver, multiprocessing's resource tracker), the RSS
and the PSS (shared pages counted once, divided among the processes that map them) of the tree.
Passes are told apart by the state files ingest writes as it goes (.partial/pass1.json when pass 1
is done, pass2.json marked complete when pass 2 is done; the rest is pass 3, the shards' ordering).

Serial fraction of a pass f = CPU seconds of the main process in that pass / CPU seconds of the
whole tree in it: the main process reads, hands out and writes, one batch after another; the
workers do everything per document. Pass 1's main-process seconds leave out a bare import of
TensorFlow + TF Text (measured in the same run: a fixed cost whatever the corpus). Amdahl's law on
the measured CPU seconds projects 16 cores: windows / (serial s + parallel s / 16 + the import).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from common import ENV, PYTHON, REPO, WORK, median, memory_of, nextword  # noqa: E402
from real_text_bench import CORPORA, bare_import, build  # noqa: E402

MB = 1 << 20
PASSES = ("pass 1", "pass 2", "pass 3")
CORES = 16


def _phase(out: str, current: int) -> int:
    state = os.path.join(out, ".partial")
    if current == 0 and os.path.exists(os.path.join(state, "pass1.json")):
        current = 1
    if current == 1:
        try:
            with open(os.path.join(state, "pass2.json")) as handle:
                if json.load(handle).get("complete"):
                    current = 2
        except (OSError, ValueError):
            pass
    return current


class CpuLedger:
    """CPU seconds seen per (process, thread), and the totals at each pass boundary."""

    def __init__(self, main_pid: int):
        self.main_pid = main_pid
        self.threads: dict[int, float] = {}
        self.others: dict[int, float] = {}
        self.kinds: dict[int, str] = {}

    def sample(self, main: psutil.Process) -> list[psutil.Process]:
        for thread in main.threads():
            self.threads[thread.id] = max(self.threads.get(thread.id, 0.0), thread.user_time + thread.system_time)
        members = main.children(recursive=True)
        for member in members:
            try:
                times = member.cpu_times()
                if member.pid not in self.kinds:  # workers are forked by the forkserver (or spawned by main)
                    line = " ".join(member.cmdline())
                    self.kinds[member.pid] = ("tracker" if "resource_tracker" in line else
                                              "forkserver" if "forkserver" in line and member.ppid() == self.main_pid
                                              else "worker")
                self.others[member.pid] = max(self.others.get(member.pid, 0.0), times.user + times.system)
            except psutil.Error:
                pass
        return members

    def totals(self) -> dict:
        by_kind = {"worker": 0.0, "forkserver": 0.0, "tracker": 0.0}
        for pid, seconds in self.others.items():
            by_kind[self.kinds.get(pid, "worker")] += seconds
        main_thread = self.threads.get(self.main_pid, 0.0)
        return {"main_thread": main_thread, "main_other_threads": sum(self.threads.values()) - main_thread, **by_kind}


def measured_ingest(corpus: str, unit: str, workers: int, out: str, repo: str = REPO, dedup: str = "none") -> dict:
    """One ingest of `corpus` by the nextword checkout at `repo`, sampled as the module says."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**ENV, "PYTHONPATH": repo + os.pathsep + ENV.get("PYTHONPATH", "")}
    argv = nextword("ingest", corpus, "--out", out, "--vocab-size", "20000", "--text-unit", unit,
                    "--workers", str(workers), "--dedup", dedup, "--json")
    started = time.perf_counter()
    boundaries, phase = [], 0
    peak_rss = peak_pss = peak_unique = peak_main = 0
    at_peak: dict = {}
    with open(out + ".stdout", "w") as stdout, open(out + ".stderr", "w") as stderr:
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, cwd=repo)
        main = psutil.Process(child.pid)
        ledger = CpuLedger(child.pid)
        samples = 0
        while child.poll() is None:
            try:
                members = ledger.sample(main)
                pids = [child.pid] + [member.pid for member in members]
                rss = 0
                peak_main = max(peak_main, main.memory_info().rss)
                for member in [main, *members]:
                    try:
                        rss += member.memory_info().rss
                    except psutil.Error:
                        pass
                peak_rss = max(peak_rss, rss)
                if samples % 3 == 0:  # smaps_rollup walks every mapping: every 0.3 s
                    pss, unique, each = memory_of(pids)
                    peak_pss = max(peak_pss, pss)
                    if unique > peak_unique:  # what each process held then, by kind, in MB
                        peak_unique, at_peak = unique, {"phase": phase, "processes": [
                            (ledger.kinds.get(pid, "main"), mine >> 20, theirs >> 20) for pid, mine, theirs in each]}
                samples += 1
            except psutil.Error:
                pass
            now_phase = _phase(out, phase)
            while phase < now_phase:
                boundaries.append((time.perf_counter() - started, ledger.totals()))
                phase += 1
            time.sleep(0.1)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"ingest failed: {open(out + '.stderr').read()[-2000:]}")
    with open(out + ".stdout") as handle:
        summary = json.loads(handle.read())
    shutil.rmtree(out, ignore_errors=True)
    boundaries.append((seconds, ledger.totals()))
    passes, previous = {}, (0.0, {key: 0.0 for key in boundaries[-1][1]})
    names = list(PASSES) if len(boundaries) == 3 else ["pass 1", "pass 2 + 3"][:len(boundaries)]  # a pass 3 too short to see
    for name, (at, totals) in zip(names, boundaries):
        passes[name] = {"wall_seconds": round(at - previous[0], 2),
                        **{key: round(totals[key] - previous[1][key], 2) for key in totals}}
        previous = (at, totals)
    return {"workers": workers, "windows": summary["windows"], "wall_seconds": round(seconds, 2),
            "windows_per_second": round(summary["windows"] / seconds), "bytes_per_window": summary["bytes_per_window"],
            "documents": summary["counters"]["documents"], "peak_rss_tree": peak_rss, "peak_pss_tree": peak_pss,
            "peak_unique_tree": peak_unique, "peak_rss_main": peak_main, "at_peak_unique": at_peak,
            "passes": passes}


def bare_start() -> float:
    """CPU seconds of a process that imports the ingest command's modules (not TensorFlow) and exits."""
    code = ("import resource, nextword.cli, nextword.ingest.cli, nextword.ingest.pipeline; "
            "usage = resource.getrusage(resource.RUSAGE_SELF); print(usage.ru_utime + usage.ru_stime)")
    return float(subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout.split()[-1])


def start_cost(row: dict, results: dict) -> float:
    """The main process's fixed start (taken out of pass 1): the bare TensorFlow import when it
    loaded TensorFlow (--workers 1, or the code before this change), else the bare start."""
    loaded = row.get("peak_rss_main", results["bare_import_rss"]) > 0.6 * results["bare_import_rss"]
    return results["bare_import_cpu_seconds"] if loaded else results.get("bare_start_cpu_seconds", 0.0)


def serial_split(row: dict, start: float) -> dict:
    """Per pass and in all: (serial CPU s = the main process's, parallel CPU s = the workers', f).
    The forkserver's CPU (its TensorFlow import, once) is neither: a fixed cost like `start`."""
    result, serial_all, parallel_all = {}, 0.0, 0.0
    for name, cpu in row["passes"].items():
        serial = max(0.0, cpu["main_thread"] + cpu["main_other_threads"] - (start if name == "pass 1" else 0.0))
        parallel = cpu["worker"]
        serial_all, parallel_all = serial_all + serial, parallel_all + parallel
        result[name] = (round(serial, 2), round(parallel, 2), round(serial / (serial + parallel), 3) if serial + parallel else None)
    result["all"] = (round(serial_all, 2), round(parallel_all, 2), round(serial_all / (serial_all + parallel_all), 3))
    return result


def projected_rate(row: dict, results: dict, cores: int = CORES) -> float:
    """Amdahl on the measured CPU seconds: the serial seconds stay, the parallel ones divide by
    `cores`; TensorFlow's import is paid once (by the forkserver, or by the main process)."""
    serial, parallel, _ = serial_split(row, start_cost(row, results))["all"]
    return row["windows"] / (serial + parallel / cores + results["bare_import_cpu_seconds"])


def _commit(repo: str) -> str:
    return subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def run(arguments) -> int:
    measured = store.stamp()
    results = {"runs": [], "date": measured["date"], "dedup": arguments.dedup}
    results["bare_import_rss"], results["bare_import_cpu_seconds"] = bare_import()
    results["bare_start_cpu_seconds"] = bare_start()
    print(f"bare import: {results['bare_import_rss'] / MB:.0f} MB, {results['bare_import_cpu_seconds']:.1f} CPU s; "
          f"the command's start without TensorFlow {results['bare_start_cpu_seconds']:.1f} CPU s", flush=True)
    out = os.path.join(arguments.work, "scaling-out")
    settings = {"command": "bench/ingest_scaling_bench.py " + " ".join(sys.argv[1:]), "rounds": arguments.rounds,
                "corpora": arguments.corpora, "workers": arguments.workers, "dedup": arguments.dedup}
    for round_index in range(arguments.rounds):
        for name in arguments.corpora:
            key, unit = CORPORA[name]
            corpus = build(key, arguments.work)
            sides = [(label, repo, workers) for label, repo in arguments.repos for workers in arguments.workers]
            for label, repo, workers in (sides if round_index % 2 == 0 else sides[::-1]):
                row = {"corpus": name, "round": round_index, "load": round(os.getloadavg()[0], 2), "code": label,
                       "commit": _commit(repo), **measured_ingest(corpus, unit, workers, out, repo, arguments.dedup)}
                results["runs"].append(row)
                split = serial_split(row, start_cost(row, results))
                print(f"round {round_index} {name:16} {label} workers {workers}: {row['windows_per_second']:>10,} windows/s "
                      f"peak RSS {row['peak_rss_tree'] / MB:,.0f} MB PSS {row['peak_pss_tree'] / MB:,.0f} MB "
                      f"serial {split}", flush=True)
                store.record("ingest_scaling", arguments.run, results, settings, path=arguments.store, measured=measured)
    print(report_markdown(results))
    return 0


def report_markdown(results: dict) -> str:
    bare = results["bare_import_rss"]
    lines = [f"Measured {results['date']}; bare import of TensorFlow + TF Text: {bare / MB:,.0f} MB RSS, "
             f"{results['bare_import_cpu_seconds']:.1f} CPU s; the command's start without TensorFlow "
             f"{results.get('bare_start_cpu_seconds', 0):.1f} CPU s. Medians over rounds; every run below and in "
             "the results store (`bench/results.json`, benchmark `ingest_scaling`).", "",
             "| corpus | code | windows | windows/s, 1 worker | 2 workers | speed-up | serial f at 2 workers: pass 1 / pass 2 / "
             "pass 3 / all | projected 16 cores (Amdahl on CPU s) | peak unique memory of the tree, 2 workers (over bare import) "
             "| 1 worker | peak RSS sum, 2 workers |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    codes = list(dict.fromkeys(row.get("code", "this") for row in results["runs"]))
    for name in CORPORA:
        for code in codes:
            rows = [row for row in results["runs"] if row["corpus"] == name and row.get("code", "this") == code]
            one = [row for row in rows if row["workers"] == 1]
            two = [row for row in rows if row["workers"] == 2]
            if not two:
                continue
            rate2 = median([row["windows_per_second"] for row in two])
            rate1 = median([row["windows_per_second"] for row in one]) if one else None
            splits = [serial_split(row, start_cost(row, results)) for row in two]
            fractions = " / ".join(
                f"{median(values):.2f}" if (values := [split[key][2] for split in splits if key in split and split[key][2] is not None]) else "—"
                for key in (*PASSES, "all"))
            projected = median([projected_rate(row, results) for row in two])
            unique = median([row["peak_unique_tree"] for row in two])
            unique1 = f"{median([row['peak_unique_tree'] for row in one]) / MB:,.0f} MB" if one else "—"
            rss = median([row["peak_rss_tree"] for row in two])
            lines.append(f"| {name} | {code} | {rows[0]['windows']:,} | {f'{rate1:,.0f}' if rate1 else '—'} | {rate2:,.0f} | "
                         f"{f'×{rate2 / rate1:.2f}' if rate1 else '—'} | {fractions} | {projected:,.0f} windows/s | "
                         f"{unique / MB:,.0f} MB (+{(unique - bare) / 1e9:.2f} GB) | {unique1} | {rss / MB:,.0f} MB |")
    lines += ["", "Every run (CPU s per pass: main thread + other threads of the main process / worker processes):", "",
              "| round | corpus | code | workers | load | wall s | windows/s | pass 1 | pass 2 | pass 3 | f all | peak unique | "
              "held then (MB private: main / forkserver / workers) | peak RSS sum |",
              "| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | --- | ---: |"]
    for row in results["runs"]:
        cells = []
        for name in PASSES:
            cpu = row["passes"].get(name)
            cells.append("—" if cpu is None else f"{cpu['wall_seconds']} s; {cpu['main_thread']} + {cpu['main_other_threads']} / {cpu['worker']}")
        split = serial_split(row, start_cost(row, results))
        held = row.get("at_peak_unique", {}).get("processes", [])
        by_kind = " / ".join(str(sum(mine for kind, mine, _ in held if kind == wanted)) for wanted in ("main", "forkserver", "worker"))
        lines.append(f"| {row['round']} | {row['corpus']} | {row.get('code', 'this')} | {row['workers']} | {row['load']} | "
                     f"{row['wall_seconds']} | {row['windows_per_second']:,} | {' | '.join(cells)} | {split['all'][2]} | "
                     f"{row['peak_unique_tree'] / MB:,.0f} MB | {by_kind} | {row['peak_rss_tree'] / MB:,.0f} MB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="every corpus with each worker count, alternating over rounds")
    r.add_argument("--corpora", type=lambda text: [name for name in text.split(",") if name], default=list(CORPORA))
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--workers", type=lambda text: [int(value) for value in text.split(",")], default=[1, 2])
    r.add_argument("--repos", type=lambda text: [tuple(pair.split("=", 1)) for pair in text.split(",")],
                   default=[("this", REPO)], help="LABEL=CHECKOUT,... : compare checkouts in the same run (sides alternate)")
    r.add_argument("--dedup", default="none", help="--dedup of every ingest (none: the corpora repeat a text for "
                   "size, and exact dedup would drop the repeats after pass 1)")
    r.add_argument("--run", default="scaling", help="the run's name in the store (ingest_scaling/NAME)")
    r.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    r.add_argument("--work", default=WORK)
    r.add_argument("--corpus-file", help="measure this text file instead (with the unit of the first --corpora)")
    p = sub.add_parser("report", help="markdown from the results store")
    p.add_argument("--run", default="scaling", help="ingest_scaling/NAME")
    p.add_argument("--store", default=store.STORE)
    arguments = parser.parse_args()
    if arguments.command == "report":
        figures = store.figures("ingest_scaling", arguments.run, path=arguments.store)
        if figures is None:
            parser.error(f"no ingest_scaling/{arguments.run} in {arguments.store}: run the benchmark first")
        print(report_markdown(figures))
        return 0
    unknown = [name for name in arguments.corpora if name not in CORPORA]
    if unknown:
        parser.error(f"unknown corpora {', '.join(unknown)}: choose from {', '.join(CORPORA)}")
    if arguments.corpus_file:
        global build
        path = arguments.corpus_file
        build = lambda key, work: path  # noqa: E731
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
