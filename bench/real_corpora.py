#!/usr/bin/env python3
"""Three real corpora of different shapes as nextword DATA_DIRs under bench/work/ (idempotent).

    python bench/real_corpora.py [builtin,kjv,vim]     # build what is missing, print one line each

- builtin: the embedded corpus (Python's documentation topics), vocabulary 2,000, 10% of documents
  held out: what `nextword demo` trains on. 79 long documents, 66K words.
- kjv: the King James Bible from Debian's `bible-kjv` (`bible` prints one verse a line as
  "Ge1:1 In the beginning ..."), one verse per document: 31,102 short documents, ~790K words,
  vocabulary 500, ingest's default val fraction.
- vim: Vim's help files (/usr/share/vim/vim*/doc/*.txt), one file per document: 151 long
  documents, 1.29M words, vocabulary 5,000, 10% held out. Written as bench/work/vim-help.jsonl
  (column `text`) and ingested as bench/work/vim-v5000: the names bench/arch_bench.py and
  bench/tokenizer_bench.py already read.

A builder skips its ingest when DATA_DIR/dataset.json exists (ingest writes it last).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import WORK, ingest_builtin, nextword, run_checked  # noqa: E402

KJV_RANGE = "Genesis1:1-Revelation22:21"
VIM_DOCS = "/usr/share/vim/vim*/doc/*.txt"


class CorpusUnavailable(RuntimeError):
    """A corpus's source is not on this machine; the message says how to get it."""


def kjv_verse(line: str) -> str:
    """`bible`'s "Ge1:1 In the beginning ..." -> "In the beginning ..." (the reference is the first word)."""
    reference, _, verse = line.strip().partition(" ")
    return verse.strip()


def kjv_text(path: str) -> int:
    """Write the King James Bible to `path`, one verse a line; returns the verses written."""
    if shutil.which("bible") is None:
        raise CorpusUnavailable("the kjv corpus needs the `bible` command of Debian's package bible-kjv, which is "
                                "not on PATH: install it with `apt-get install bible-kjv` (then rerun)")
    printed = subprocess.run(["bible", "-f", KJV_RANGE], check=True, capture_output=True, text=True).stdout
    verses = [verse for verse in map(kjv_verse, printed.splitlines()) if verse]
    if len(verses) < 31_000:
        raise CorpusUnavailable(f"`bible -f {KJV_RANGE}` printed {len(verses):,} verses, expected 31,102: "
                                "is bible-kjv's text installed whole? (`apt-get install --reinstall bible-kjv`)")
    with open(path + ".tmp", "w") as handle:
        handle.write("\n".join(verses) + "\n")
    os.replace(path + ".tmp", path)
    return len(verses)


def vim_corpus(path: str) -> int:
    """Write Vim's help files to `path` as JSON lines {"name", "text"}, one file per line; returns the files."""
    files = sorted(glob.glob(VIM_DOCS))
    if not files:
        raise CorpusUnavailable(f"the vim corpus reads Vim's help files ({VIM_DOCS}), and there are none: "
                                "install them with `apt-get install vim-runtime` (then rerun)")
    with open(path + ".tmp", "w") as handle:
        for name in files:
            with open(name, encoding="utf-8", errors="replace") as source:
                handle.write(json.dumps({"name": os.path.basename(name), "text": source.read()}) + "\n")
    os.replace(path + ".tmp", path)
    return len(files)


def _ingest(source: list[str], out: str, vocab_size: int, val_fraction: float | None = None) -> None:
    fraction = ["--val-fraction", str(val_fraction)] if val_fraction is not None else []
    run_checked(nextword("ingest", *source, "--out", out, "--vocab-size", str(vocab_size), *fraction, "--json"))


def _finished(data_dir: str) -> bool:
    return os.path.exists(os.path.join(data_dir, "dataset.json"))


def build_builtin(work: str = WORK) -> str:
    data_dir = os.path.join(work, "builtin-v2000")
    if not _finished(data_dir):
        ingest_builtin(data_dir, vocab_size=2000)  # the demo's vocabulary and val fraction (0.1)
    return data_dir


def build_kjv(work: str = WORK) -> str:
    data_dir = os.path.join(work, "kjv-v500")
    if not _finished(data_dir):
        os.makedirs(work, exist_ok=True)
        text = os.path.join(work, "kjv-verses.txt")
        if not os.path.exists(text):
            kjv_text(text)
        _ingest([text, "--format", "text"], data_dir, 500)  # ingest's default val fraction
    return data_dir


def build_vim(work: str = WORK) -> str:
    data_dir = os.path.join(work, "vim-v5000")
    if not _finished(data_dir):
        os.makedirs(work, exist_ok=True)
        jsonl = os.path.join(work, "vim-help.jsonl")
        if not os.path.exists(jsonl):
            vim_corpus(jsonl)
        _ingest([jsonl, "--column", "text"], data_dir, 5000, val_fraction=0.1)  # as bench/tokenizer_bench.py's
    return data_dir


BUILDERS = {"builtin": build_builtin, "kjv": build_kjv, "vim": build_vim}


def describe(data_dir: str) -> str:
    """One line from the manifest: documents, words, vocabulary, what is held out."""
    with open(os.path.join(data_dir, "dataset.json")) as handle:
        manifest = json.load(handle)
    counters, train, val = manifest["counters"], manifest["splits"]["train"], manifest["splits"]["val"]
    return (f"{counters['documents']:,} documents, {counters['tokens']:,} words, vocabulary {manifest['vocab_size']:,} "
            f"({counters['oov_tokens'] / max(counters['tokens'], 1):.1%} of words <unk>); "
            f"{train['windows']:,} train windows, {val['windows']:,} val windows in {val['documents']:,} held-out documents")


def build(name: str, work: str = WORK) -> tuple[str, str]:
    """(DATA_DIR, one-line description) of corpus `name`, ingesting it first when missing."""
    if name not in BUILDERS:
        raise CorpusUnavailable(f"unknown corpus {name!r}: choose from {', '.join(BUILDERS)}")
    data_dir = BUILDERS[name](work)
    return data_dir, describe(data_dir)


def main() -> int:
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(BUILDERS)
    for name in names:
        try:
            data_dir, description = build(name)
        except CorpusUnavailable as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 1
        print(f"{name:8} {data_dir}: {description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
