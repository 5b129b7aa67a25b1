#!/usr/bin/env python3
"""--dedup on real text with known injected duplicates: recall, false positives, throughput, RSS.

    python bench/dedup_bench.py [--rounds 3] [--work DIR] [--run NAME]    # figures: the results store, dedup/NAME

Corpus (~31 MB, one document a line): the King James Bible (Debian's bible-kjv) cut into documents of
10 consecutive verses (3,110 documents, ~250 words), plus every entry of the GNU Collaborative
International Dictionary of English (Debian's dict-gcide) with at least 30 words (~49K documents,
30-2,000 words). The base is exact-deduplicated here by its lower-cased words (an independent check,
not the library's), so only the planted copies are duplicates by construction (natural near duplicates
of the base, e.g. Numbers 7's twelve identical offerings, can remain: a removed original is reported
with the Jaccard similarity to the document that caused it, so a real near copy is told from a spurious
match). Planted, later in the corpus: an exact copy (upper-cased, re-spaced) of 3% of the documents,
and a near copy of another 3%: a changed date (one word a 100 replaced by a year, at least one), an
appended signature line (6 words), or both, chosen at random. Each near copy's true Jaccard similarity
(of word 5-gram sets, words as `\\w+` lower-cased) is recorded: recall is reported overall and by
similarity, since MinHash with 16 bands of 8 rows catches J = 0.8 95% of the time and J = 0.6 24%.

Each round runs `nextword ingest` (its own process, 2 workers) with --dedup none, exact and near, in
an order that alternates between rounds; the wall time is the whole command's (TensorFlow's import
included). Memory, sampled by bench/common.run_measured: the process tree's peak unique memory (every
process's private pages plus the largest shared set once, `common.memory_of`, as
bench/ingest_scaling_bench.py measures it) against a bare import of TensorFlow + TF Text (the ingest's
workers load both; `real_text_bench.bare_import`, the same figure the scaling bench compares with),
and the peak RSS sum of the tree (which counts TensorFlow's shared pages once per process).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import store  # noqa: E402
from common import nextword, run_checked  # noqa: E402 (run_checked: run_measured, the tree's memory)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GCIDE = "/usr/share/dictd/gcide.dict.dz"
MIN_WORDS = 30
SIGNATURE = "-- sent from my phone, excuse typos"
_WORD = re.compile(r"\w+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of the word n-gram sets (one shingle for a shorter document)."""
    def shingles(words):
        return {tuple(words[i:i + n]) for i in range(max(len(words) - n + 1, 1))}
    x, y = shingles(words_of(a)), shingles(words_of(b))
    return len(x & y) / len(x | y) if x | y else 1.0


def gcide_entries() -> list[str]:
    """The dictionary's entries, each on one line: an entry starts at an unindented line after a blank one."""
    if not os.path.exists(GCIDE):
        sys.exit(f"error: {GCIDE} not found: the corpus needs Debian's dict-gcide (apt-get install dict-gcide)")
    entries, current = [], []
    with gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace") as handle:  # dictzip is gzip
        for line in handle.read().splitlines():
            if line and not line[0].isspace() and current and not current[-1].strip():
                entries.append(" ".join(" ".join(current).split()))
                current = []
            current.append(line)
    entries.append(" ".join(" ".join(current).split()))
    return [entry for entry in entries if len(entry.split()) >= MIN_WORDS and not entry.startswith("00-database")]


def build_corpus(path: str, seed: int = 0) -> dict:
    from real_corpora import kjv_text

    verses_path = path + ".verses"
    kjv_text(verses_path)
    verses = open(verses_path).read().splitlines()
    kjv = [" ".join(verses[start:start + 10]) for start in range(0, len(verses), 10)]
    documents, seen = [], set()
    for text in kjv + gcide_entries():
        key = " ".join(words_of(text))
        if key not in seen:  # keep the base free of exact duplicates (an independent check)
            seen.add(key)
            documents.append(text)
    rng = random.Random(seed)
    rng.shuffle(documents)
    count = len(documents)
    exact = set(rng.sample(range(count // 2), count * 3 // 100))
    near = set(rng.sample(sorted(set(range(count // 2)) - exact), count * 3 // 100))
    # each line's place is a sort key: a copy's is drawn after its original's (inserting copies one by
    # one at random places once let 15 land before their originals, which were then the "duplicates")
    placed = [(float(index), text, "original", None) for index, text in enumerate(documents)]
    for index in sorted(exact | near):
        if index in exact:
            copy, kind, score = "  ".join(documents[index].upper().split()), "exact", 1.0
        else:
            words = documents[index].split()
            edit = rng.choice(("date", "signature", "both"))
            if edit != "signature":
                for place in rng.sample(range(len(words)), max(1, len(words) // 100)):
                    words[place] = str(rng.randrange(1900, 2030))
            copy = " ".join(words) + (" " + SIGNATURE if edit != "date" else "")
            kind, score = "near", round(jaccard(documents[index], copy), 4)
        placed.append((rng.uniform(index + 0.5, count), copy, kind, score))
    placed.sort(key=lambda line: line[0])
    lines, kinds, similarity = ([line[field] for line in placed] for field in (1, 2, 3))
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(path + ".kinds.json", "w") as handle:
        json.dump({"kinds": kinds, "similarity": similarity}, handle)
    return {"documents": len(lines), "originals": count, "kjv_documents": len(kjv), "exact": len(exact),
            "near": len(near), "bytes": os.path.getsize(path)}


def ingest(corpus: str, out: str, dedup: str) -> dict:
    measured = run_checked(nextword("ingest", corpus, "--out", out, "--overwrite", "--json", "--dedup", dedup,
                                    "--workers", "2", "--text-unit", "line", "--vocab-size", "20000"), unique=True)
    return {"seconds": measured.seconds, "rss_mb": measured.peak_rss_bytes / 2**20,
            "unique_mb": measured.peak_unique_bytes / 2**20, "summary": measured.json()}


def quality(corpus: str, spill: str, dedup: str) -> dict:
    """Which documents were dropped: the decision re-derived with the library's own functions (the
    caller checks its count against the ingest's), and for each removed original the similarity to
    the first document sharing a key with it."""
    sys.path.insert(0, REPO)
    from nextword.ingest.dedup import BANDS, DuplicateFinder
    from nextword.ingest.tokenizing import BatchTokenizer
    from nextword.ingest.sources import iter_documents, resolve_inputs

    truth = json.load(open(corpus + ".kinds.json"))
    kinds, similarity = truth["kinds"], truth["similarity"]
    finder = DuplicateFinder(dedup, spill)
    tokenizer = BatchTokenizer()
    first_with_key: dict[int, int] = {}
    partner: dict[int, int] = {}
    documents = 0
    for batch in iter_documents(resolve_inputs([corpus], "auto", None, "line"), "strict", 1 << 20):
        if batch.texts:
            lengths, _, _, joined, prints = (t.numpy() for t in tokenizer.keyed_count(dedup == "near", False)(batch.texts))
            records = finder.records(batch.first_index, lengths, joined, prints)
            finder.add(records)
            for kind in records:  # in memory: fine for a bench corpus of ~55K documents
                for key, position in zip(records[kind]["key"].tolist(), records[kind]["position"].tolist()):
                    earlier = first_with_key.setdefault(key, position)
                    if earlier != position:
                        partner.setdefault(position, earlier)
            documents += len(batch.texts)
    removed = finder.removed(documents)
    finder.close()
    dropped = ~removed.keep(0, documents)
    total = {kind: kinds.count(kind) for kind in ("exact", "near", "original")}
    found = {kind: sum(1 for index, flag in enumerate(dropped) if flag and kinds[index] == kind) for kind in total}
    result = {"exact_recall": found["exact"] / total["exact"], "near_recall": found["near"] / total["near"],
              "false_positive_share": found["original"] / total["original"], "false_positives": found["original"],
              "removed": int(dropped.sum()), "bands": BANDS}
    bins = [(0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01)]
    result["near_recall_by_similarity"] = {
        f"{low:.1f}-{min(high, 1.0):.1f}": [sum(1 for i, k in enumerate(kinds) if k == "near" and low <= similarity[i] < high and dropped[i]),
                                            sum(1 for i, k in enumerate(kinds) if k == "near" and low <= similarity[i] < high)]
        for low, high in bins}
    lines = open(corpus).read().splitlines() if found["original"] else []
    result["removed_originals"] = [
        {"position": index, "jaccard_with_earlier": round(jaccard(lines[index], lines[partner[index]]), 3),
         "excerpt": lines[index][:100], "earlier_excerpt": lines[partner[index]][:100]}
        for index, flag in enumerate(dropped) if flag and kinds[index] == "original" and index in partner]
    return result


def bare_import_rss_mb() -> float:
    """Peak RSS of a process that imports TensorFlow + TF Text and exits (what a tokenizing process loads)."""
    from real_text_bench import bare_import

    return bare_import()[0] / 2**20


def _share(value: float) -> str:
    return f"{100 * value:.3g}%"


def quality_table(figures: dict) -> list[str]:
    """RESULTS.md's quality table (generated into the hand-written dedup section): per --dedup mode, what it found."""
    corpus, lines = figures["corpus"], ["| `--dedup` | exact copies found | near copies found | originals removed | all removed |",
                                        "| --- | ---: | ---: | ---: | ---: |"]
    for mode, found in figures.get("quality", {}).items():
        exact, near = round(found["exact_recall"] * corpus["exact"]), round(found["near_recall"] * corpus["near"])
        lines.append(f"| {mode} | {exact:,} / {corpus['exact']:,} ({_share(found['exact_recall'])}) | "
                     + (f"{near:,} / {corpus['near']:,} ({_share(found['near_recall'])})" if near else "0")
                     + f" | {found['false_positives']:,} ({_share(found['false_positive_share'])}) | {found['removed']:,} |")
    return lines


def rounds_table(figures: dict) -> list[str]:
    """RESULTS.md's table of every round (generated into the hand-written dedup section)."""
    unique = any("unique_mb" in row for row in figures["rounds"])  # runs before it measured the RSS sum only
    bare = min(figures["bare_import_rss_mb"]) if unique else None
    lines = ["| round | `--dedup` | seconds | MB/s | " + ("peak unique MB (tree; over bare import) | " if unique else "")
             + "peak RSS MB (tree) | load | removed | leakage |",
             "| ---: | --- | ---: | ---: | " + ("---: | " if unique else "") + "---: | ---: | ---: | ---: |"]
    for row in figures["rounds"]:
        leakage = "–" if row["leakage"] is None else f"{row['leakage']:.2%}"
        held = f"{row['unique_mb']:,} (+{(row['unique_mb'] - bare) / 1024:.2f} GB) | " if unique else ""
        lines.append(f"| {row['round']} | {row['dedup']} | {row['seconds']:.2f} | {row['mb_per_s']:.2f} | {held}{row['rss_mb']:,} | "
                     f"{row['load']:.2f} | {row['removed']:,} | {leakage} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/dedup-bench")
    parser.add_argument("--run", default="latest", help="record the figures as this run of benchmark \"dedup\" in the "
                        "results store (the committed ones: after_fixes, before_fixes)")
    parser.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    parser.add_argument("--skip-quality", action="store_true")
    arguments = parser.parse_args()
    measured = store.stamp()
    os.makedirs(arguments.work, exist_ok=True)
    corpus = os.path.join(arguments.work, "kjv-gcide-dups.txt")
    shape = build_corpus(corpus)
    print(json.dumps({"corpus": shape}), flush=True)
    bare = [bare_import_rss_mb() for _ in range(2)]
    print(json.dumps({"bare_import_rss_mb": [round(value) for value in bare]}), flush=True)
    sides = ["none", "exact", "near"]
    rounds = []
    for number in range(arguments.rounds):
        order = sides if number % 2 == 0 else sides[::-1]
        for dedup in order:
            result = ingest(corpus, os.path.join(arguments.work, f"out-{dedup}"), dedup)
            row = {"round": number + 1, "dedup": dedup, "seconds": round(result["seconds"], 2),
                   "mb_per_s": round(shape["bytes"] / 1e6 / result["seconds"], 3),
                   "rss_mb": round(result["rss_mb"]), "unique_mb": round(result["unique_mb"]),
                   "load": round(os.getloadavg()[0], 2),
                   "removed": (result["summary"].get("dedup") or {}).get("documents_removed", 0),
                   "leakage": (result["summary"].get("leakage") or {}).get("share")}
            rounds.append(row)
            print(json.dumps(row), flush=True)
    medians = {}
    for dedup in sides:
        mine = [row for row in rounds if row["dedup"] == dedup]
        medians[dedup] = {"seconds": statistics.median(row["seconds"] for row in mine),
                          "mb_per_s": statistics.median(row["mb_per_s"] for row in mine),
                          "rss_mb": statistics.median(row["rss_mb"] for row in mine),
                          "max_rss_mb": max(row["rss_mb"] for row in mine),
                          "unique_mb": statistics.median(row["unique_mb"] for row in mine),
                          "max_unique_mb": max(row["unique_mb"] for row in mine)}
    # each round's ratio (sides run back to back), then their median: less exposed to a shared machine's drift
    ratios = {dedup: statistics.median(
        [next(r["mb_per_s"] for r in rounds if r["round"] == n and r["dedup"] == dedup)
         / next(r["mb_per_s"] for r in rounds if r["round"] == n and r["dedup"] == "none")
         for n in range(1, arguments.rounds + 1)]) for dedup in ("exact", "near")}
    print(json.dumps({"medians": medians, "throughput_vs_none_median_of_rounds": ratios,
                      "unique_over_bare_import_mb": {d: round(medians[d]["max_unique_mb"] - min(bare)) for d in sides}}),
          flush=True)
    figures = {"corpus": shape, "bare_import_rss_mb": bare, "rounds": rounds, "medians": medians, "ratios": ratios}
    if not arguments.skip_quality:
        figures["quality"] = {}
        for mode in ("exact", "near"):
            figures["quality"][mode] = found = quality(corpus, os.path.join(arguments.work, f"q-{mode}"), mode)
            ingested = [row["removed"] for row in rounds if row["dedup"] == mode]
            found["matches_ingest"] = all(count == found["removed"] for count in ingested)
            print(json.dumps({"quality": {mode: found}}), flush=True)
    store.record("dedup", arguments.run, figures, {"command": "bench/dedup_bench.py " + " ".join(sys.argv[1:]),
                                                   "rounds": arguments.rounds}, arguments.store, measured)


if __name__ == "__main__":
    main()
