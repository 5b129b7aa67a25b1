#!/usr/bin/env python3
"""Choose nextword's default recipe: a handful of candidates, equal CPU budget each, held-out scores.

    python bench/tune_defaults.py                  # stage 1: 60 s per candidate; stage 2: finalists at 180 s (~27 min)
    python bench/tune_defaults.py --budget 20 --only 0,1 --finalists 0
    python bench/tune_defaults.py --reuse-stage1          # stage 2 only, on the stored stage-1 rows

Same corpus as the quality benchmark (the embedded corpus, 500-word vocabulary, 10% of the
documents held out). Each candidate trains in its own `nextword train` process for the same
number of seconds, then `nextword eval` scores the window's final word on the held-out split.
Stage 1 ranks every candidate at a short budget. Stage 2 trains the best `--finalists` of
them, each also with more dropout, at the FULL budget of the quality benchmark: on this small
corpus 180 s is ~75 one-pass epochs, so a recipe that wins at 60 s can overfit by 180 s. The
winner is the stage-2 (else stage-1) candidate with the lowest held-out perplexity (within 1%
of it, the higher top-1 accuracy). Beside the candidates, the interpolated modified Kneser-Ney 5-gram
of the same dataset (arms.five_gram: counted on the same train windows, scored on the same val
windows; stored as "baseline" with the dataset's fingerprint). The table goes to the results store
(bench/results.json, benchmark "tune", run "candidates"), which bench/run renders into RESULTS.md; the winner's values are what model/config.py (ModelConfig) and
model/settings.py (RECIPE_DEFAULTS) hold.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from arms import five_gram, train_arm  # noqa: E402
from common import WORK, ingest_builtin  # noqa: E402

BENCHMARK, RUN = "tune", "candidates"  # its entry in the results store (bench/store.py)

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


# Always trained in stage 2: stage 1 (0.1.0) showed held-out perplexity is best after about 57K
# trained windows (~44 one-pass epochs of objective "all") and worse after twice that, so these
# spend 180 s on about that many windows (two layers, batch 256) or regularise hard (dropout 0.5,
# lower learning rate).
STAGE2_EXTRA = [
    ("r0", dict(arch="lstm", layers=2, units=256, embedding_dim=128, dropout=0.5, learning_rate=2e-3, batch_size=256)),
    ("r1", dict(arch="gru", layers=2, units=256, embedding_dim=128, dropout=0.5, learning_rate=3e-3, batch_size=256)),
    ("r2", dict(arch="lstm", layers=1, units=256, embedding_dim=128, dropout=0.5, learning_rate=1e-3, batch_size=128)),
]


RULE = ("stage 1 ranks by held-out perplexity; stage 2 (the best stage-1 candidates, each also with +0.2 dropout, "
        "and the regularised extras r0-r2) at the full budget picks the lowest perplexity, within 1% of it the higher top-1")


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


def train_candidate(data_dir: str, work: str, label: str, index, candidate: dict, budget: float) -> dict:
    arm = train_arm(data_dir, os.path.join(work, "tune", f"{label}-{index}"), budget, options_for(candidate))
    row = {"index": index, "candidate": candidate, "val": arm["val"], "load_before": arm["load_before"],
           "steps": arm["steps"], "windows_per_second": arm["windows_per_second"], "parameters": arm["parameters"]}
    print(f"[{label} {index}] {candidate} -> perplexity {row['val']['perplexity']:.2f} top-1 {row['val']['top1']:.4f} "
          f"({row['steps']} steps, {row['windows_per_second']} windows/s, load {row['load_before']})", flush=True)
    return row


def finalists_of(rows: list[dict], count: int) -> list[tuple[str, dict]]:
    """The best `count` stage-1 rows, each as-is and with dropout raised by 0.2 (capped at 0.5), and STAGE2_EXTRA."""
    ranked = sorted(rows, key=lambda row: row["val"]["perplexity"])[:count]
    chosen = []
    for row in ranked:
        chosen.append((f"{row['index']}", row["candidate"]))
        more_dropout = {**row["candidate"], "dropout": round(min(0.5, row["candidate"]["dropout"] + 0.2), 2)}
        chosen.append((f"{row['index']}+dropout", more_dropout))
    return chosen + list(STAGE2_EXTRA)


def tune(budget: float, indices: list[int], work: str, finalists: int, final_budget: float,
         stage1: dict | None = None) -> dict:
    data_dir = os.path.join(work, "builtin-v500")
    ingest_builtin(data_dir)
    baseline = five_gram(data_dir)  # before the candidates: a failure is stored, it does not stop them
    if stage1 is None:
        rows = [train_candidate(data_dir, work, "candidate", index, CANDIDATES[index], budget) for index in indices]
    else:
        rows, budget = stage1["rows"], stage1["budget_seconds"]
    final_rows = [train_candidate(data_dir, work, "final", label, candidate, final_budget)
                  for label, candidate in finalists_of(rows, finalists)]
    winner = best_candidate(final_rows or rows)
    return {"budget_seconds": budget, "final_budget_seconds": final_budget,
            "rule": RULE, "baseline": baseline,
            "rows": rows, "final_rows": final_rows, "winner": winner["index"], "winner_candidate": winner["candidate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per candidate")
    parser.add_argument("--only", default=None, help="comma-separated candidate indices")
    parser.add_argument("--finalists", type=int, default=2, help="stage-1 winners trained again at --final-budget")
    parser.add_argument("--final-budget", type=float, default=180.0, help="seconds per finalist (the quality benchmark's)")
    parser.add_argument("--reuse-stage1", action="store_true", help="reuse the stored stage-1 rows, run stage 2 only")
    parser.add_argument("--work", default=WORK)
    parser.add_argument("--store", default=store.STORE, help="the results store to record in (default bench/results.json)")
    arguments = parser.parse_args()
    indices = [int(value) for value in arguments.only.split(",")] if arguments.only else list(range(len(CANDIDATES)))
    stage1 = store.figures(BENCHMARK, RUN, arguments.store) if arguments.reuse_stage1 else None
    if arguments.reuse_stage1 and stage1 is None:
        parser.error(f"--reuse-stage1: {arguments.store} holds no `{BENCHMARK}/{RUN}` entry: run stage 1 first")
    measured = store.stamp()
    results = tune(arguments.budget, indices, arguments.work, arguments.finalists, arguments.final_budget, stage1)
    settings = {"budget_seconds": results["budget_seconds"], "final_budget_seconds": arguments.final_budget,
                "finalists": arguments.finalists, **({"stage1": "reused"} if stage1 else {"only": indices})}
    store.record(BENCHMARK, RUN, results, settings, arguments.store, measured)
    print(f"winner: {results['winner']}: {results['winner_candidate']}")


if __name__ == "__main__":
    main()
