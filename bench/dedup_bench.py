#!/usr/bin/env python3
"""--dedup on real text with known injected duplicates: recall, false positives, throughput, RSS.

    python bench/dedup_bench.py [--rounds 3] [--work DIR]

Corpus: the King James Bible (Debian's bible-kjv, via bench/real_corpora.kjv_text) cut into
documents of 10 consecutive verses (~250 words each, 3,110 documents, all distinct), repeated with
other verse groupings (1..10 verses offset) to reach ~20 MB; then 3% of documents are followed,
later in the corpus, by an exact copy (upper-cased, re-spaced) and 3% by a near copy (3 words
replaced and a one-line signature appended). A removed original or an untouched document is a
false positive. Each round runs `nextword ingest` (a process of its own, 2 workers) with
--dedup none, exact and near, in an order that alternates between rounds; peak RSS is the process
tree's (ru_maxrss of the child), compared with a bare `import tensorflow`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_corpus(path: str, seed: int = 0) -> dict:
    from real_corpora import kjv_text

    verses_path = path + ".verses"
    kjv_text(verses_path)
    verses = open(verses_path).read().splitlines()
    documents, seen = [], set()
    for size in range(10, 18):  # other groupings: distinct documents of ~250-450 words
        for start in range(0, len(verses) - size, size):
            text = " ".join(verses[start:start + size])
            if text not in seen:
                seen.add(text)
                documents.append(text)
    rng = random.Random(seed)
    rng.shuffle(documents)
    count = len(documents)
    exact = set(rng.sample(range(count // 2), count * 3 // 100))
    near = set(rng.sample(sorted(set(range(count // 2)) - exact), count * 3 // 100))
    lines = list(documents)
    kinds = ["original"] * count
    for index in sorted(exact | near):
        words = documents[index].split()
        if index in exact:
            copy = "  ".join(documents[index].upper().split())
        else:
            for place in rng.sample(range(len(words)), 3):
                words[place] = rng.choice(["tuesday", "1997", "revised", "signed"])
            copy = " ".join(words) + " -- sent from my phone, please excuse typos"
        where = rng.randrange(index + 1, len(lines) + 1)
        lines.insert(where, copy)
        kinds.insert(where, "exact" if index in exact else "near")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(path + ".kinds.json", "w") as handle:
        json.dump(kinds, handle)
    return {"documents": len(lines), "originals": count, "exact": len(exact), "near": len(near),
            "bytes": os.path.getsize(path)}


def ingest(corpus: str, out: str, dedup: str) -> dict:
    command = [sys.executable, "-m", "nextword.cli", "ingest", corpus, "--out", out, "--overwrite", "--json",
               "--dedup", dedup, "--workers", "2", "--text-unit", "line", "--vocab-size", "20000"]
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    seconds = time.monotonic() - started
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads(result.stdout)
    return {"seconds": seconds, "rss_mb": rss / 1024 if rss > before else None, "summary": summary}


def recall(corpus: str, out: str, dedup: str) -> dict:
    """Which documents were dropped: re-derive the decision with the library's own functions."""
    sys.path.insert(0, REPO)
    from nextword.ingest.dedup import DuplicateFinder
    from nextword.ingest.pipeline import BatchTokenizer
    from nextword.ingest.sources import iter_documents, resolve_inputs

    kinds = json.load(open(corpus + ".kinds.json"))
    finder = DuplicateFinder(dedup, out + "-spill")
    tokenizer = BatchTokenizer()
    documents = 0
    for batch in iter_documents(resolve_inputs([corpus], "auto", None, "line"), "strict", 1 << 20):
        if batch.texts:
            lengths, _, _, joined, prints = (t.numpy() for t in tokenizer.keyed_count(dedup == "near", False)(batch.texts))
            finder.add(finder.records(batch.first_index, lengths, joined, prints))
            documents += len(batch.texts)
    removed = finder.removed(documents)
    finder.close()
    dropped = ~removed.keep(0, documents)
    found = {kind: int(sum(1 for index, flag in enumerate(dropped) if flag and kinds[index] == kind))
             for kind in ("exact", "near", "original")}
    total = {kind: kinds.count(kind) for kind in ("exact", "near", "original")}
    return {"exact_recall": found["exact"] / total["exact"], "near_recall": found["near"] / total["near"],
            "false_positive_share": found["original"] / total["original"], "false_positives": found["original"],
            "removed": int(dropped.sum())}


def bare_import_rss() -> float:
    code = "import resource, tensorflow; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/dedup-bench")
    arguments = parser.parse_args()
    os.makedirs(arguments.work, exist_ok=True)
    corpus = os.path.join(arguments.work, "kjv-dups.txt")
    shape = build_corpus(corpus)
    print(json.dumps({"corpus": shape}), flush=True)
    bare = bare_import_rss()
    print(json.dumps({"bare_import_rss_mb": round(bare)}), flush=True)
    sides = ["none", "exact", "near"]
    rounds = []
    for number in range(arguments.rounds):
        order = sides if number % 2 == 0 else sides[::-1]
        for dedup in order:
            result = ingest(corpus, os.path.join(arguments.work, f"out-{dedup}"), dedup)
            row = {"round": number + 1, "dedup": dedup, "seconds": round(result["seconds"], 2),
                   "mb_per_s": round(shape["bytes"] / 1e6 / result["seconds"], 2),
                   "rss_mb": round(result["rss_mb"]) if result["rss_mb"] else None,
                   "removed": (result["summary"].get("dedup") or {}).get("documents_removed", 0),
                   "leakage": (result["summary"].get("leakage") or {}).get("share")}
            rounds.append(row)
            print(json.dumps(row), flush=True)
    quality = {mode: recall(corpus, os.path.join(arguments.work, f"q-{mode}"), mode) for mode in ("exact", "near")}
    print(json.dumps({"quality": quality}), flush=True)
    example = json.load(open(corpus + ".kinds.json")).index("near")
    print(json.dumps({"example_near_copy": open(corpus).read().splitlines()[example][-160:]}), flush=True)


if __name__ == "__main__":
    main()
