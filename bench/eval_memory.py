#!/usr/bin/env python
"""Peak memory and time of `nextword eval` (the code validation shares) by vocabulary size.

An objective-"all" model, evaluated on a val split of a few thousand windows, at each
vocabulary size; each evaluation runs in its own process (peak RSS from wait4) and the
trees alternate over rounds, so a bimodal VM shows in every row:

    python bench/eval_memory.py [--vocab 20000 50000] [--rounds 2] [--baseline-tree /path/to/old/checkout]

--baseline-tree: a checkout of an older version, measured on the same run and data (the
run dir is written by this tree; the formats are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "bench"))

WORK = os.path.join(HERE, "bench", "work", "eval-memory")
EVAL = ("import sys, time; from nextword.quiet import load_tensorflow; load_tensorflow(); "
        "from model.evaluate import evaluate; started = time.monotonic(); "
        "result = evaluate(sys.argv[1], sys.argv[2]); "
        "print(result['windows'], round(time.monotonic() - started, 2), result['loss'])")
BARE = "from nextword.quiet import load_tensorflow; load_tensorflow(); import model.evaluate"


def prepare(vocab: int, tree: str) -> tuple[str, str]:
    """The corpus, dataset and run, written by `tree` (the oldest measured: newer versions read
    older datasets and runs, not the reverse)."""
    from nextword.synthetic import write_zipf_corpus

    corpus = os.path.join(WORK, f"zipf-{vocab}.txt")
    data_dir, run_dir = os.path.abspath(os.path.join(WORK, f"data-{vocab}")), os.path.abspath(os.path.join(WORK, f"run-{vocab}"))
    os.makedirs(WORK, exist_ok=True)
    if not os.path.exists(corpus):
        write_zipf_corpus(corpus, 12_000_000, seed=vocab, types=int(vocab * 1.5))
    nextword = [sys.executable, "-m", "nextword.cli"]
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
    if not os.path.exists(os.path.join(data_dir, "dataset.json")):
        subprocess.run(nextword + ["ingest", corpus, "--out", data_dir, "--vocab-size", str(vocab),
                                   "--val-fraction", "0.003"], check=True, capture_output=True, env=env, cwd=tree)
    if not os.path.exists(os.path.join(run_dir, "summary.json")):
        subprocess.run(nextword + ["train", data_dir, "--out", run_dir, "--max-steps", "1", "--arch", "lstm", "--units", "32",
                                   "--embedding-dim", "16", "--objective", "all", "--batch-size", "16",
                                   "--no-export", "--no-progress"], check=True, capture_output=True, env=env, cwd=tree)
    return data_dir, run_dir


def measure(tree: str, code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=tree,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stdout, stderr = process.stdout.read(), process.stderr.read()
    if status != 0:
        return {"error": (stderr.strip().splitlines() or ["?"])[-1], "peak_gib": usage.ru_maxrss / 2**20}
    fields = stdout.split()
    return {"peak_gib": round(usage.ru_maxrss / 2**20, 3), "wall_seconds": round(time.monotonic() - started, 1),
            **({"windows": int(fields[0]), "eval_seconds": float(fields[1]), "loss": float(fields[2])}
               if fields else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-tree")
    parser.add_argument("--json")
    parser.add_argument("--store", help="the results store, recorded in with --baseline-tree (default bench/results.json)")
    args = parser.parse_args()
    trees = {"this": HERE, **({"baseline": args.baseline_tree} if args.baseline_tree else {})}
    result = {"bare_import_gib": measure(HERE, BARE)["peak_gib"], "vocab": {}}
    print(f"bare import: {result['bare_import_gib']:.2f} GiB peak RSS")
    for vocab in args.vocab:
        data_dir, run_dir = prepare(vocab, args.baseline_tree or HERE)
        rows = {name: [] for name in trees}
        for round_index in range(args.rounds):
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for name in order:
                row = measure(trees[name], EVAL, run_dir, data_dir)
                rows[name].append(row)
                print(f"vocab {vocab:>6} round {round_index} {name:>8}: {row}", flush=True)
        result["vocab"][vocab] = {
            name: {"rounds": values,
                   "median_peak_gib": statistics.median(v["peak_gib"] for v in values),
                   "median_eval_seconds": statistics.median(v.get("eval_seconds", float("nan")) for v in values)}
            for name, values in rows.items()}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    if args.baseline_tree:  # the before/after table RESULTS.md shows (bench/report.py hardening_lines)
        import store

        store.record("eval_memory", "latest", result, {"vocab": args.vocab, "rounds": args.rounds,
                                                       "baseline_tree": args.baseline_tree}, args.store or store.STORE)


if __name__ == "__main__":
    main()
