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
corpus, counted on the same train windows and scored on the same val windows (arms.five_gram, stored
as run five_gram/CORPUS with the dataset's fingerprint; each row records the fingerprint it trained on).
Each arm is one entry of the results store (bench/results.json, benchmark "arch", run CORPUS/ARM/BUDGET;
the speed table run "speed"), which bench/run renders into RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from arms import five_gram, train_arm  # noqa: E402
from common import WORK, ingest_builtin, median  # noqa: E402

BENCHMARK = "arch"  # its runs in the results store: CORPUS/ARM/BUDGET, five_gram/CORPUS, speed
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


ROW = ("budget_s", "model", "parameters", "steps", "windows_per_second", "target_tokens_per_second", "perplexity", "top1",
       "top5", "val_windows", "load_before", "dataset_fingerprint")  # what a quality row keeps of the arm runner's


def quality(arguments) -> None:
    scratch = os.path.join(WORK, "arch")
    os.makedirs(scratch, exist_ok=True)
    plan = [(corpus, arm, arguments.budget) for corpus in arguments.corpora for arm in arguments.arms]
    if arguments.long_budget:
        plan += [("vim", arm, arguments.long_budget) for arm in LONG_ARMS if "vim" in arguments.corpora]
    dirs = corpus_dirs(arguments.corpora)
    for corpus in dirs:  # the 5-gram of the data its rows train on
        run = f"five_gram/{corpus}"
        baseline = five_gram(dirs[corpus], store.figures(BENCHMARK, run, arguments.store))
        store.record(BENCHMARK, run, baseline, {"corpus": corpus, "data_dir": dirs[corpus]}, arguments.store)
    for corpus, arm, budget in plan:
        measured = store.stamp()
        arm_row = train_arm(dirs[corpus], os.path.join(scratch, f"{arm}-{int(budget)}"), budget, ARMS[arm])
        row = {"corpus": corpus, "arm": arm, "options": ARMS[arm], **{key: arm_row[key] for key in ROW}}
        store.record(BENCHMARK, f"{corpus}/{arm}/{int(budget)}", row,
                     {"corpus": corpus, "arm": arm, "budget_s": budget, "flags": ARMS[arm]}, arguments.store, measured)
        print(f"{corpus:8} {arm:24} {budget:5.0f} s  ppl {row['perplexity']:7.2f}  top-1 {row['top1']:.4f}  "
              f"{row['steps']:5d} steps  {row['windows_per_second']:6.0f} windows/s  "
              f"{row['target_tokens_per_second']:7.0f} targets/s  (load {row['load_before']})", flush=True)


def speed(arguments) -> None:
    """gen speed on random-weight exports (speed does not depend on the weights' values)."""
    from gen_bench import benchmark_generation, demo_export

    measured = store.stamp()
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
    settings = {"words": arguments.words, "batch": arguments.batch, "repeats": arguments.repeats}
    store.record(BENCHMARK, "speed", {**settings, "rows": rows}, {**settings, "notebook_words": arguments.notebook_words},
                 arguments.store, measured)


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
    for command in (q, s):
        command.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    arguments = parser.parse_args()
    (quality if arguments.command == "quality" else speed)(arguments)


if __name__ == "__main__":
    main()
