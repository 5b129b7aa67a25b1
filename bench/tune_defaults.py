#!/usr/bin/env python3
"""Choose nextword's default recipe: a handful of candidates, equal CPU budget each, held-out scores.

    python bench/tune_defaults.py                  # 60 s of training per candidate (~12 min)
    python bench/tune_defaults.py --budget 20 --only 0,1

Same corpus as the quality benchmark (the embedded corpus, 500-word vocabulary, 10% of the
documents held out). Each candidate trains in its own `nextword train` process for the same
number of seconds, then `nextword eval` scores the window's final word on the held-out split.
The winner is the lowest held-out perplexity (top-1 accuracy breaks near-ties). The table goes
to bench/tune_results.json, which bench/run copies into RESULTS.md; the winner's values are
what model/config.py (ModelConfig) and model/settings.py (RECIPE_DEFAULTS) hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import WORK, ingest_builtin, load_average, machine, train_and_eval  # noqa: E402

RESULTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tune_results.json")

# Every field is explicit, so the table does not depend on the defaults it is choosing.
CANDIDATES = [
    dict(arch="lstm", layers=2, units=256, embedding_dim=128, dropout=0.1, learning_rate=2e-3, batch_size=256),
    dict(arch="lstm", layers=1, units=256, embedding_dim=128, dropout=0.1, learning_rate=3e-3, batch_size=128),
    dict(arch="lstm", layers=1, units=512, embedding_dim=128, dropout=0.2, learning_rate=2e-3, batch_size=128),
    dict(arch="gru", layers=1, units=256, embedding_dim=128, dropout=0.1, learning_rate=3e-3, batch_size=128),
    dict(arch="lstm", layers=2, units=256, embedding_dim=128, dropout=0.2, learning_rate=3e-3, batch_size=128),
    dict(arch="lstm", layers=1, units=128, embedding_dim=64, dropout=0.0, learning_rate=5e-3, batch_size=64),
    dict(arch="lstm", layers=1, units=256, embedding_dim=64, dropout=0.1, learning_rate=5e-3, batch_size=64),
    dict(arch="gru", layers=2, units=256, embedding_dim=128, dropout=0.2, learning_rate=3e-3, batch_size=256),
    dict(arch="lstm", layers=2, units=512, embedding_dim=256, dropout=0.2, learning_rate=2e-3, batch_size=256),
]


def options_for(candidate: dict) -> list[str]:
    return [
        "--arch", candidate["arch"], "--layers", str(candidate["layers"]), "--units", str(candidate["units"]),
        "--embedding-dim", str(candidate["embedding_dim"]), "--dropout", str(candidate["dropout"]),
        "--learning-rate", str(candidate["learning_rate"]), "--batch-size", str(candidate["batch_size"]),
        "--objective", "all", "--optimizer", "adam", "--no-bidirectional",
    ]


def best_candidate(rows: list[dict]) -> dict:
    """Lowest held-out perplexity; within 1% of it, the higher top-1 accuracy."""
    lowest = min(row["val"]["perplexity"] for row in rows)
    close = [row for row in rows if row["val"]["perplexity"] <= lowest * 1.01]
    return max(close, key=lambda row: row["val"]["top1"])


def tune(budget: float, indices: list[int], work: str) -> dict:
    data_dir = os.path.join(work, "builtin-v500")
    ingest_builtin(data_dir)
    rows = []
    for index in indices:
        candidate = CANDIDATES[index]
        run_dir = os.path.join(work, "tune", f"candidate-{index}")
        shutil.rmtree(run_dir, ignore_errors=True)
        load = load_average()
        result = train_and_eval(data_dir, run_dir, budget, options_for(candidate))
        row = {"index": index, "candidate": candidate, "val": result["val"], "load_before": load,
               "steps": result["summary"]["steps"], "windows_per_second": result["summary"]["windows_per_second"],
               "parameters": result["summary"]["parameters"]}
        rows.append(row)
        print(f"[{index}] {candidate} -> perplexity {row['val']['perplexity']:.2f} top-1 {row['val']['top1']:.4f} "
              f"({row['steps']} steps, {row['windows_per_second']} windows/s, load {load})", flush=True)
    winner = best_candidate(rows)
    return {"budget_seconds": budget, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(), "rule": "lowest held-out perplexity; within 1% of it, higher top-1",
            "rows": rows, "winner": winner["index"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per candidate")
    parser.add_argument("--only", default=None, help="comma-separated candidate indices")
    parser.add_argument("--work", default=WORK)
    parser.add_argument("--out", default=RESULTS_FILE)
    arguments = parser.parse_args()
    indices = [int(value) for value in arguments.only.split(",")] if arguments.only else list(range(len(CANDIDATES)))
    results = tune(arguments.budget, indices, arguments.work)
    with open(arguments.out, "w") as handle:
        json.dump(results, handle, indent=2)
    winner = next(row for row in results["rows"] if row["index"] == results["winner"])
    print(f"winner: candidate {winner['index']}: {winner['candidate']}")


if __name__ == "__main__":
    main()
