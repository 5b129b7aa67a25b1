#!/usr/bin/env python3
"""Transformer vs LSTM (issue 11): held-out quality at equal training time, training and `gen` speed.

    python bench/arch_bench.py quality                 # 180 s per arm on two corpora, 600 s for the families on the second
    python bench/arch_bench.py quality --budget 20 --long-budget 0 --corpora builtin
    python bench/arch_bench.py speed                   # gen 1 x 200 and 64 x 200 words: notebook loop, LSTM, transformer

Quality: each arm trains in its own `nextword train` process for the same seconds of training
(`--time-budget`), then `nextword eval` scores the window's final word on the held-out split.
Arms: the notebook preset, today's LSTM default, and transformer candidates. Corpora: the
embedded corpus (vocabulary 500) and the Vim help files of this machine (151 documents, 1.29M
words, vocabulary 5,000: a real text nobody here wrote, built by `python bench/real_corpora.py vim`
as bench/work/vim-v5000). Beside the arms, the interpolated modified Kneser-Ney 5-gram of each
corpus, counted on the same train windows and scored on the same val windows (common.five_gram,
stored under "baselines" with the dataset's fingerprint; each row records the fingerprint it trained
on). Results go to bench/arch_results.json (bench/run renders them into RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (WORK, dataset_fingerprint, five_gram, ingest_builtin, load_average, machine, median,  # noqa: E402
                    train_and_eval)

RESULTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arch_results.json")
VIM_DATA = os.path.join(WORK, "vim-v5000")

ARMS = {
    "notebook": ["--preset", "notebook"],
    "lstm": ["--arch", "lstm"],  # today's default recipe (ModelConfig / RECIPE_DEFAULTS)
    "transformer": ["--arch", "transformer"],  # the transformer recipe (TRANSFORMER_DEFAULTS)
    "transformer-dropout-0.3": ["--arch", "transformer", "--dropout", "0.3"],
    "transformer-dropout-0.5": ["--arch", "transformer", "--dropout", "0.5"],
}
LONG_ARMS = ("lstm", "transformer")


def corpus_dirs(names: list[str]) -> dict[str, str]:
    dirs = {}
    if "builtin" in names:
        data_dir = os.path.join(WORK, "builtin-v500")
        if not os.path.exists(os.path.join(data_dir, "dataset.json")):
            ingest_builtin(data_dir, vocab_size=500)
        dirs["builtin"] = data_dir
    if "vim" in names:
        if not os.path.exists(os.path.join(VIM_DATA, "dataset.json")):
            raise SystemExit(f"{VIM_DATA} is missing: build it with `python bench/real_corpora.py vim`")
        dirs["vim"] = VIM_DATA
    return dirs


def one_arm(data_dir: str, arm: str, budget: float, scratch: str) -> dict:
    run_dir = os.path.join(scratch, f"{arm}-{int(budget)}")
    shutil.rmtree(run_dir, ignore_errors=True)
    load = load_average()
    result = train_and_eval(data_dir, run_dir, budget, ARMS[arm])
    summary, val = result["summary"], result["val"]
    targets_per_window = summary["model_config"]["context_length"] if summary["model_config"]["objective"] == "all" else 1
    row = {
        "arm": arm, "budget_s": budget, "options": ARMS[arm], "model": summary["model_config"],
        "parameters": summary["parameters"], "steps": summary["steps"],
        "windows_per_second": summary["windows_per_second"],
        "target_tokens_per_second": summary["windows_per_second"] * targets_per_window,
        "perplexity": val["perplexity"], "top1": val["top1"], "top5": val["top5"], "val_windows": val["windows"],
        "load_before": load, "dataset_fingerprint": dataset_fingerprint(data_dir),
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


def quality(arguments) -> dict:
    results = load_results()
    results["quality_machine"], results["quality_date"] = machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = results.setdefault("quality", {})
    scratch = os.path.join(WORK, "arch")
    os.makedirs(scratch, exist_ok=True)
    plan = [(corpus, arm, arguments.budget) for corpus in arguments.corpora for arm in arguments.arms]
    if arguments.long_budget:
        plan += [("vim", arm, arguments.long_budget) for arm in LONG_ARMS if "vim" in arguments.corpora]
    dirs = corpus_dirs(arguments.corpora)
    baselines = results.setdefault("baselines", {})  # corpus -> the 5-gram of the data its rows train on
    for corpus in dirs:
        baselines[corpus] = five_gram(dirs[corpus], baselines.get(corpus))
        save_results(results)
    for corpus, arm, budget in plan:
        row = one_arm(dirs[corpus], arm, budget, scratch)
        rows[f"{corpus}/{arm}/{int(budget)}"] = {"corpus": corpus, **row}
        print(f"{corpus:8} {arm:24} {budget:5.0f} s  ppl {row['perplexity']:7.2f}  top-1 {row['top1']:.4f}  "
              f"{row['steps']:5d} steps  {row['windows_per_second']:6.0f} windows/s  "
              f"{row['target_tokens_per_second']:7.0f} targets/s  (load {row['load_before']})", flush=True)
        save_results(results)
    return results


def speed(arguments) -> dict:
    """gen speed on random-weight exports (speed does not depend on the weights' values)."""
    from gen_bench import benchmark_generation, demo_export

    results = load_results()
    results["speed_machine"], results["speed_date"] = machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    kinds = {"notebook": "notebook", "lstm": "default", "transformer": "transformer",
             "transformer-reread-every-word": "transformer-reread"}
    rows = {}
    for name, kind in kinds.items():
        rounds = []
        for _ in range(arguments.repeats):
            with tempfile.TemporaryDirectory() as scratch:
                rounds.append(benchmark_generation(demo_export(kind, scratch), arguments.notebook_words,
                                                   arguments.words, arguments.batch))
        single = median([r[f"gen_1x{arguments.words}_words_per_s"] for r in rounds])
        batched = median([r[f"gen_{arguments.batch}x{arguments.words}_words_per_s"] for r in rounds])
        notebook = median([r["notebook_words_per_s"] for r in rounds])
        rows[name] = {"model": rounds[0]["model"], "gen_1_words_per_s": single, "gen_batch_words_per_s": batched,
                      "notebook_loop_words_per_s": notebook, "rounds": rounds}
        print(f"{name:32} 1 x {arguments.words}: {single:8.0f} words/s   {arguments.batch} x {arguments.words}: "
              f"{batched:8.0f} words/s   (the notebook's predict-per-word loop on this model: {notebook:.1f} words/s)", flush=True)
    results["speed"] = {"words": arguments.words, "batch": arguments.batch, "repeats": arguments.repeats, "rows": rows}
    save_results(results)
    return results


def load_results() -> dict:
    if os.path.exists(RESULTS_FILE):
        with open(RESULTS_FILE) as handle:
            return json.load(handle)
    return {}


def save_results(results: dict) -> None:
    with open(RESULTS_FILE + ".tmp", "w") as handle:
        json.dump(results, handle, indent=1)
    os.replace(RESULTS_FILE + ".tmp", RESULTS_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--budget", type=float, default=180)
    q.add_argument("--long-budget", type=float, default=600, help="0: skip the long runs")
    q.add_argument("--corpora", type=lambda text: text.split(","), default=["builtin", "vim"])
    q.add_argument("--arms", type=lambda text: text.split(","), default=list(ARMS))
    s = sub.add_parser("speed")
    s.add_argument("--words", type=int, default=200)
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--notebook-words", type=int, default=20)
    s.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    (quality if arguments.command == "quality" else speed)(arguments)


if __name__ == "__main__":
    main()
