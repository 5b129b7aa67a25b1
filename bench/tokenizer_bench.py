#!/usr/bin/env python3
"""word vs wordpiece (issue 12): held-out quality at the same model size and training time.

    bench/run --only tokenizer                               # 180 s per arm, 2 rounds (A B, then B A), both corpora
    python bench/tokenizer_bench.py --budget 20 --rounds 1 --corpora builtin   # a quick look, printed only

Each corpus is ingested twice with the same settings and the same `--vocab-size` (so the two models
have the same parameters): `--tokenizer word` and `--tokenizer wordpiece`. The held-out split is
the same documents in both (the split is by document; checked below: the wordpiece dataset's val
word count equals the word dataset's val token count). Each arm trains the default recipe
(`--arch transformer`) in its own `nextword train` process for the same seconds of training, then
`nextword eval` scores every held-out window. Word-normalised perplexity (total NLL over the
held-out words) decides. Caveat printed with the figures: a word model predicts <unk> for every
word outside its vocabulary as one cheap class; a wordpiece model spells those words out and pays
for every piece, so the comparison favours `word` on corpora with many <unk> targets.

Beside the arms, the interpolated modified Kneser-Ney 5-gram of each corpus's `word` dataset (arms.five_gram:
counted on its train windows, scored on its val windows, stored as "five_gram" with the dataset's fingerprint).
It applies to the `word` side only: its perplexity is per word with `<unk>` one class, as the word model's is.

`bench/run` runs it as its "tokenizer" section (the Vim corpus when bench/work/vim-help.jsonl exists:
`python bench/real_corpora.py vim`), prints every round and records it in the results store
(bench/store.py; report.tokenizer_lines renders it). Run alone, it records the same entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from arms import five_gram, train_arm  # noqa: E402
from common import WORK, median, nextword, run_checked  # noqa: E402

TOKENIZERS = ("word", "wordpiece")
CORPORA = {
    # name: (ingest inputs, vocab size, data dir of the word dataset other benchmarks already use)
    "builtin": (["--builtin"], 500, "builtin-v500"),
    "vim": (["{work}/vim-help.jsonl", "--column", "text"], 5000, "vim-v5000"),  # python bench/real_corpora.py vim
}
MODEL = ["--arch", "transformer"]  # the default recipe, the same for both tokenizers


def dataset(corpus: str, tokenizer: str, work: str) -> str:
    """The corpus ingested with `tokenizer` (idempotent: a finished identical ingest returns at once)."""
    inputs, vocab_size, word_dir = CORPORA[corpus]
    name = word_dir if tokenizer == "word" else f"{corpus}-wp{vocab_size}"
    out = os.path.join(work, name)
    if tokenizer == "word" and os.path.exists(os.path.join(out, "dataset.json")):
        return out  # the other benchmarks' dataset (some written before manifests recorded their identity)
    inputs = [argument.format(work=work) for argument in inputs]
    run_checked(nextword("ingest", *inputs, "--out", out, "--vocab-size", str(vocab_size), "--val-fraction", "0.1",
                         "--tokenizer", tokenizer, "--json"))
    return out


def held_out_counts(data_dir: str) -> dict:
    with open(os.path.join(data_dir, "dataset.json")) as handle:
        manifest = json.load(handle)
    val = manifest["splits"]["val"]
    words = manifest.get("extra", {}).get("words", {}).get("val", val["tokens"])
    counters = manifest["counters"]
    return {"documents": val["documents"], "tokens": val["tokens"], "words": words, "vocab_size": manifest["vocab_size"],
            "unk_share": counters["oov_tokens"] / max(counters["tokens"], 1)}


def same_held_out_text(corpus: str, counts: dict) -> dict:
    """Both datasets must hold out the same documents (the split is by document text), so the
    wordpiece dataset's val words equal the word dataset's val tokens; else nothing compares."""
    word, pieces = counts["word"], counts["wordpiece"]
    if (word["documents"], word["words"]) != (pieces["documents"], pieces["words"]):
        raise RuntimeError(f"{corpus}: the two datasets hold out different text: word {word['documents']} documents, "
                           f"{word['words']} words; wordpiece {pieces['documents']} documents, {pieces['words']} words")
    return counts


def one_arm(data_dir: str, tokenizer: str, budget: float, scratch: str) -> dict:
    row = train_arm(data_dir, os.path.join(scratch, f"{tokenizer}-{int(budget)}"), budget, MODEL)
    val = row["val"]
    return {"tokenizer": tokenizer, "steps": row["steps"], "windows_per_second": row["windows_per_second"],
            "parameters": row["parameters"], "loss": val["loss"], "perplexity": val["perplexity"],
            "word_perplexity": val["word_perplexity"], "tokens_per_word": val["tokens_per_word"],
            "top1": val.get("top1"), "val_windows": val["windows"], "load_before": row["load_before"]}


def compare(corpora: list[str], budget: float, rounds: int, work: str = WORK, log=print) -> dict:
    """Every corpus: both datasets, then rounds of A B (odd rounds B A) so drift and the VMs'
    bimodal speed fall on both sides. Returns {"corpora": {name: {...}}, "budget_s", "rounds"}."""
    scratch = os.path.join(work, "tokenizer")
    os.makedirs(scratch, exist_ok=True)
    out = {"budget_s": budget, "rounds": rounds, "model": MODEL, "corpora": {}}
    for corpus in corpora:
        dirs = {tokenizer: dataset(corpus, tokenizer, work) for tokenizer in TOKENIZERS}
        counts = same_held_out_text(corpus, {tokenizer: held_out_counts(dirs[tokenizer]) for tokenizer in TOKENIZERS})
        baseline = five_gram(dirs["word"], log=log)  # the `word` dataset's: a 5-gram of pieces would not compare
        runs = []
        for index in range(rounds):
            for tokenizer in TOKENIZERS if index % 2 == 0 else TOKENIZERS[::-1]:
                row = one_arm(dirs[tokenizer], tokenizer, budget, scratch)
                runs.append({"round": index + 1, **row})
                log(f"{corpus:8} round {index + 1} {tokenizer:9} {budget:4.0f} s  per word {row['word_perplexity']:8.2f}  "
                    f"per token {row['perplexity']:8.2f}  ({row['tokens_per_word']:.2f} tokens/word)  "
                    f"{row['steps']:5d} steps  {row['windows_per_second']:6.0f} windows/s  (load {row['load_before']})")
        medians = {tokenizer: {key: median([run[key] for run in runs if run["tokenizer"] == tokenizer])
                               for key in ("word_perplexity", "perplexity", "tokens_per_word", "windows_per_second", "steps")}
                   for tokenizer in TOKENIZERS}
        out["corpora"][corpus] = {"held_out": counts, "runs": runs, "median": medians, "five_gram": baseline,
                                  "ratio": medians["wordpiece"]["word_perplexity"] / medians["word"]["word_perplexity"]}
        log(f"{corpus:8} median per-word perplexity: word {medians['word']['word_perplexity']:.2f}, wordpiece "
            f"{medians['wordpiece']['word_perplexity']:.2f} (x{out['corpora'][corpus]['ratio']:.3f})")
    return out


def tokenizer_section(work: str, budget: float, rounds: int, smoke: bool, log=print) -> dict:
    """bench/run's "tokenizer" section: the embedded corpus, and Vim's help when it is there (not in --smoke)."""
    corpora = ["builtin"]
    vim = CORPORA["vim"][0][0].format(work=work)
    if not smoke and os.path.exists(vim):
        corpora.append("vim")
    results = compare(corpora, budget, rounds, work, log)
    if "vim" not in corpora:
        results["skipped"] = f"vim: {vim} is missing (build it with `python bench/real_corpora.py vim`)" if not smoke else "vim: not in --smoke"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=180)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpora", type=lambda text: text.split(","), default=list(CORPORA))
    parser.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    arguments = parser.parse_args()
    measured = store.stamp()
    results = compare(arguments.corpora, arguments.budget, arguments.rounds, WORK)
    # the same entry bench/run's tokenizer section writes: RESULTS.md renders whichever ran last
    store.record("tokenizer", "full", {**results, "date": measured["date"], "how": "`python bench/tokenizer_bench.py`"},
                 {"budget": arguments.budget, "rounds": arguments.rounds, "corpora": arguments.corpora}, arguments.store, measured)
    print(json.dumps({corpus: {"median": row["median"], "ratio": row["ratio"]} for corpus, row in results["corpora"].items()}, indent=1))


if __name__ == "__main__":
    main()
