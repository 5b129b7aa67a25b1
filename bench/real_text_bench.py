#!/usr/bin/env python3
"""Ingest on real text (issue 20): speed, bytes a window, memory and how it splits over cores.

    python bench/real_text_bench.py run [--rounds 2] [--corpora gcide-line,gcide-paragraph,kjv-line]
    python bench/real_text_bench.py report [--run packing]   # markdown from the results store (bench/results.json)

Corpora (real text that Debian packages ship; built under bench/work, ~200 MB and ~41 MB):
- gcide: the GNU Collaborative International Dictionary of English (`apt-get install dict-gcide`),
  its 40 MB of hard-wrapped entries 5 times over (~200 MB: 1.2M lines, a fifth of them blank,
  ~4.5 words a line), read by --text-unit line (0.2's only unit) and paragraph (what auto picks).
- kjv: the King James Bible a verse a line (bench/real_corpora.py), 10 times over (~41 MB).
Repeats are for size only: duplicated documents cost ingest what new ones would.

Each run is `nextword ingest CORPUS --vocab-size 20000 --workers W --json` in its own process,
workers 1 and 2 alternating over rounds. Sampled every 0.1 s: the RSS of the main process and of
the whole tree, and the CPU seconds of every thread of the main process and of every worker
process (the largest value seen per thread/process). The main thread reads and splits the text,
drives both passes and appends records to shards: its share of all CPU seconds is the serial
fraction f (the tokenizer threads and the encoder processes are the parallel part; the CPU
seconds of a bare import of TensorFlow, measured in the same run, are taken out of both: a fixed
cost whatever the corpus), and Amdahl's law projects a 16-core rate of rate(1 worker) / (f + (1 - f) / 16). The same f, fitted
from the measured 1- vs 2-worker wall times instead, is shown beside it. The bare import of
TensorFlow + TF Text is measured in the same run, for the memory target (peak within 0.3 GB of it).
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
from common import ENV, PYTHON, REPO, WORK, median, nextword  # noqa: E402

BENCHMARK = "real_text"  # its runs in the results store: --run NAME (the committed ones: text-units, packing)
GCIDE_SOURCE = "/usr/share/dictd/gcide.dict.dz"  # gzip-compatible (dictzip)
CORPORA = {  # name -> (builder key, --text-unit)
    "gcide-line": ("gcide", "line"),
    "gcide-paragraph": ("gcide", "paragraph"),
    "kjv-line": ("kjv", "line"),
}
MB = 1 << 20


def build(key: str, work: str = WORK) -> str:
    """The corpus file for `key`, built once under `work`."""
    os.makedirs(work, exist_ok=True)
    if key == "gcide":
        path = os.path.join(work, "gcide-x5.txt")
        if not os.path.exists(path):
            if not os.path.exists(GCIDE_SOURCE):
                raise SystemExit(f"{GCIDE_SOURCE} is missing: apt-get install dict-gcide")
            import gzip

            with gzip.open(GCIDE_SOURCE, "rb") as handle:
                _write_repeated(path, handle.read(), 5)
        return path
    path = os.path.join(work, "kjv-x10.txt")
    if not os.path.exists(path):
        from real_corpora import build_kjv  # writes bench/work/kjv-verses.txt on the way

        build_kjv(work)
        with open(os.path.join(work, "kjv-verses.txt"), "rb") as handle:
            _write_repeated(path, handle.read(), 10)
    return path


def _write_repeated(path: str, text: bytes, times: int) -> None:
    """`text` `times` over into `path`, which appears only once complete."""
    with open(path + ".tmp", "wb") as out:
        for _ in range(times):
            out.write(text)
    os.replace(path + ".tmp", path)


def bare_import() -> tuple[int, float]:
    """(peak RSS bytes, CPU seconds) of a process that imports TensorFlow + TF Text and exits."""
    code = ("import resource, tensorflow, tensorflow_text; usage = resource.getrusage(resource.RUSAGE_SELF); "
            "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime)")
    rss, cpu = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout.split()
    return int(rss) * 1024, float(cpu)


def measured_ingest(corpus: str, unit: str, workers: int, out: str, import_cpu: float, layout: str = "packed") -> dict:
    shutil.rmtree(out, ignore_errors=True)
    # --dedup none: the corpora repeat one text 5-10 times for size, which exact dedup (the default) would drop
    argv = nextword("ingest", corpus, "--out", out, "--vocab-size", "20000", "--text-unit", unit,
                    "--workers", str(workers), "--layout", layout, "--dedup", "none", "--json")
    started = time.perf_counter()
    with open(out + ".stdout", "w") as stdout, open(out + ".stderr", "w") as stderr:
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=ENV, cwd=REPO)
        main = psutil.Process(child.pid)
        threads: dict[int, float] = {}
        workers_cpu: dict[int, float] = {}
        peak_main = peak_tree = 0
        while child.poll() is None:
            try:
                rss_main = main.memory_info().rss
                threads.update({thread.id: max(threads.get(thread.id, 0.0), thread.user_time + thread.system_time)
                                for thread in main.threads()})
                rss_tree = rss_main
                for worker in main.children(recursive=True):
                    with_times = worker.cpu_times()
                    workers_cpu[worker.pid] = max(workers_cpu.get(worker.pid, 0.0), with_times.user + with_times.system)
                    rss_tree += worker.memory_info().rss
                peak_main, peak_tree = max(peak_main, rss_main), max(peak_tree, rss_tree)
            except psutil.Error:
                pass  # a worker or the process itself ended between two calls
            time.sleep(0.1)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"ingest failed: {open(out + '.stderr').read()[-2000:]}")
    with open(out + ".stdout") as handle:
        summary = json.loads(handle.read())
    shutil.rmtree(out, ignore_errors=True)
    main_thread = threads.get(child.pid, 0.0)
    total_cpu = sum(threads.values()) + sum(workers_cpu.values())
    return {
        "workers": workers, "layout": layout, "windows": summary["windows"], "wall_seconds": round(seconds, 2),
        "windows_per_second": round(summary["windows"] / seconds), "in_process_windows_per_second": summary["windows_per_second"],
        "bytes_per_window": summary["bytes_per_window"], "documents": summary["counters"]["documents"],
        "median_document_words": (summary.get("document_words") or {}).get("quantiles", {}).get("p50"),
        "peak_rss_main": peak_main, "peak_rss_tree": peak_tree,
        "cpu_seconds": {"main_thread": round(main_thread, 2), "other_threads": round(sum(threads.values()) - main_thread, 2),
                        "workers": round(sum(workers_cpu.values()), 2)},
        "serial_fraction": round(main_thread / total_cpu, 3) if total_cpu else None,
        # the same without the import's CPU (a fixed cost, on the main thread, whatever the corpus)
        "serial_fraction_after_import": round((main_thread - import_cpu) / (total_cpu - import_cpu), 3)
        if total_cpu > import_cpu else None,
    }


def run(arguments) -> int:
    measured = store.stamp()
    results = {"runs": []}
    results["bare_import_rss"], results["bare_import_cpu_seconds"] = bare_import()
    print(f"bare import of tensorflow + tensorflow_text: {results['bare_import_rss'] / MB:.0f} MB, "
          f"{results['bare_import_cpu_seconds']:.1f} CPU s", flush=True)
    out = os.path.join(arguments.work, "real-text-out")
    for round_index in range(arguments.rounds):
        for name in arguments.corpora:
            key, unit = CORPORA[name]
            corpus = build(key, arguments.work)
            # every (workers, layout) side, in reversed order every other round (the machine is shared)
            sides = [(workers, layout) for workers in arguments.workers for layout in arguments.layouts]
            for workers, layout in (sides if round_index % 2 == 0 else sides[::-1]):
                row = {"corpus": name, "round": round_index, "mb": round(os.path.getsize(corpus) / 1e6),
                       **measured_ingest(corpus, unit, workers, out, results["bare_import_cpu_seconds"], layout)}
                results["runs"].append(row)
                print(f"round {round_index} {name:16} {layout:7} workers {workers}: {row['windows_per_second']:>10,} windows/s "
                      f"{row['bytes_per_window']:>5} B/window  peak {row['peak_rss_main'] / MB:,.0f} MB main, "
                      f"{row['peak_rss_tree'] / MB:,.0f} MB tree  serial {row['serial_fraction']} "
                      f"({row['serial_fraction_after_import']} after the import)", flush=True)
                store.record(BENCHMARK, arguments.run, results, {"corpora": arguments.corpora, "rounds": arguments.rounds,
                                                                 "workers": arguments.workers, "layouts": arguments.layouts},
                             arguments.store, measured)
    print(report_markdown({**results, "date": measured["date"]}))
    return 0


def layouts_markdown(results: dict) -> list[str]:
    """Layouts measured in the same run, per corpus and workers: medians over rounds."""
    sides = sorted({(row["corpus"], row["workers"], row.get("layout", "spans")) for row in results["runs"]},
                   key=lambda side: (list(CORPORA).index(side[0]), side[1], side[2]))
    if len({layout for _, _, layout in sides}) < 2:
        return []
    lines = ["", "Record layouts in the same run (medians over rounds):", "",
             "| corpus | workers | layout | windows/s | B/window | peak RSS main | peak RSS tree | rounds |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for corpus, workers, layout in sides:
        rows = [row for row in results["runs"]
                if (row["corpus"], row["workers"], row.get("layout", "spans")) == (corpus, workers, layout)]
        lines.append(f"| {corpus} | {workers} | {layout} | {median([row['windows_per_second'] for row in rows]):,.0f} | "
                     f"{rows[0]['bytes_per_window']} | {median([row['peak_rss_main'] for row in rows]) / MB:,.0f} MB | "
                     f"{median([row['peak_rss_tree'] for row in rows]) / MB:,.0f} MB | {len(rows)} |")
    return lines


def report_markdown(results: dict) -> str:
    bare = results["bare_import_rss"]
    # the main table: the default layout's rows (results before layouts were compared hold "spans" only)
    layout_rows = "packed" if any(row.get("layout") == "packed" for row in results["runs"]) else "spans"
    lines = [f"Measured {results['date']}; bare import of TensorFlow + TF Text: {bare / MB:,.0f} MB, "
             f"{results['bare_import_cpu_seconds']:.1f} CPU s. "
             "Rates are end to end (process launch to exit). Medians over rounds; every run in "
             "`bench/results.json` (benchmark `real_text`).", "",
             "| corpus (--text-unit) | MB | median words a document | windows | windows/s, 1 worker | 2 workers | speed-up | "
             "B/window | peak RSS main (over bare import) | peak RSS tree | serial fraction f: the main thread's share of CPU s past the import; fitted from 1→2 workers | projected 16 cores (from the first f) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in CORPORA:
        rows = [row for row in results["runs"] if row["corpus"] == name and row.get("layout", "spans") == layout_rows]
        if not {1, 2} <= {row["workers"] for row in rows}:
            continue
        one = [row for row in rows if row["workers"] == 1]
        two = [row for row in rows if row["workers"] == 2]
        rate1, rate2 = median([row["windows_per_second"] for row in one]), median([row["windows_per_second"] for row in two])
        speedup = rate2 / rate1
        fitted = max(0.0, min(1.0, 2 / speedup - 1))  # Amdahl: S(2) = 1 / (f + (1 - f) / 2)
        serial = median([row["serial_fraction_after_import"] for row in two])
        projected = rate1 / (serial + (1 - serial) / 16)
        peak_main = max(row["peak_rss_main"] for row in rows)
        peak_tree = max(row["peak_rss_tree"] for row in rows)
        lines.append(
            f"| {name} | {rows[0]['mb']} | {rows[0]['median_document_words']} | {rows[0]['windows']:,} | {rate1:,.0f} | "
            f"{rate2:,.0f} | ×{speedup:.2f} | {rows[0]['bytes_per_window']} | {peak_main / MB:,.0f} MB "
            f"(+{(peak_main - bare) / 1e9:.2f} GB) | {peak_tree / MB:,.0f} MB | {serial:.2f}; {fitted:.2f} | "
            f"{projected:,.0f} windows/s (×{projected / rate1:.1f}) |")
    lines += layouts_markdown(results)
    lines += ["", "Every run:", "", "| round | corpus | layout | workers | wall s | windows/s | B/window | peak RSS main | CPU s: main thread / other threads / workers | serial f (past the import) |",
              "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in results["runs"]:
        cpu = row["cpu_seconds"]
        lines.append(f"| {row['round']} | {row['corpus']} | {row.get('layout', 'spans')} | {row['workers']} | {row['wall_seconds']} | "
                     f"{row['windows_per_second']:,} | {row['bytes_per_window']} | {row['peak_rss_main'] / MB:,.0f} MB | "
                     f"{cpu['main_thread']} / {cpu['other_threads']} / {cpu['workers']} | {row['serial_fraction']} "
                     f"({row['serial_fraction_after_import']}) |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="measure every corpus with 1 and 2 workers, alternating")
    r.add_argument("--corpora", type=lambda text: [name for name in text.split(",") if name], default=list(CORPORA))
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--workers", type=lambda text: [int(value) for value in text.split(",")], default=[1, 2])
    r.add_argument("--layouts", type=lambda text: [name for name in text.split(",") if name], default=["packed"],
                   help="record layouts to compare in the same run (e.g. packed,spans)")
    r.add_argument("--run", default="latest", help="the run's name in the results store (a rerun of it replaces it)")
    r.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    r.add_argument("--work", default=WORK)
    p = sub.add_parser("report", help="markdown from the results store")
    p.add_argument("--run", default="packing", help="which run of the store (default: packing)")
    p.add_argument("--store", default=store.STORE)
    arguments = parser.parse_args()
    if arguments.command == "report":
        entry = store.entries(BENCHMARK, arguments.store).get(arguments.run)
        if entry is None:
            parser.error(f"{arguments.store} holds no `{BENCHMARK}/{arguments.run}` run: "
                         f"choose from {', '.join(store.entries(BENCHMARK, arguments.store)) or 'none'}")
        print(report_markdown({**entry["figures"], "date": entry["date"]}))
        return 0
    unknown = [name for name in arguments.corpora if name not in CORPORA]
    if unknown:
        parser.error(f"unknown corpora {', '.join(unknown)}: choose from {', '.join(CORPORA)}")
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main())
