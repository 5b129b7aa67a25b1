"""The benchmark plumbing bench/run relies on: the process-tree memory cap and peak RSS (bench/common.py), the
ingest table's out-of-memory row, the tuning rule, and the tokenizer comparison's fairness check and table."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules


def test_memory_cap_kills_the_whole_process_tree_and_says_so():
    from common import run_measured

    # A parent that starts a child, and the child grows past the cap: the sum over the tree must trip it.
    grower = "import time; block = bytearray(400 << 20); time.sleep(30)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grower!r}])"
    measured = run_measured([sys.executable, "-c", parent], memory_cap_bytes=200 << 20, timeout=60)
    assert measured.killed_at_bytes is not None and measured.killed_at_bytes > 200 << 20
    assert measured.seconds < 25
    assert measured.returncode != 0


def test_peak_rss_counts_children():
    from common import run_measured

    child = "import time; block = bytearray(150 << 20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    measured = run_measured([sys.executable, "-c", parent])
    assert measured.returncode == 0
    assert measured.peak_rss_bytes > 150 << 20


def test_peak_unique_memory_counts_each_child_s_private_pages_once():
    from common import run_measured

    # two children with 100 MB private each, plus the interpreter's shared pages once (not twice as an RSS sum)
    child = "import time; block = bytearray(100 << 20); block[::4096] = b'x' * len(block[::4096]); time.sleep(2)"
    parent = (f"import subprocess, sys; children = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]; "
              "[each.wait() for each in children]")
    measured = run_measured([sys.executable, "-c", parent], unique=True)
    assert measured.returncode == 0
    assert 200 << 20 < measured.peak_unique_bytes < measured.peak_rss_bytes


def test_report_says_when_the_notebook_ran_out_of_memory(tmp_path):
    from report import ingest_table

    ours = {"runs": 1, "windows": 1000, "windows_per_second": 5000.0, "peak_rss_bytes": 1 << 29, "bytes_per_window": 93.0}
    notebook = {"out_of_memory": True, "killed_at_bytes": 12 << 30, "wall_seconds": 42.0, "peak_rss_bytes": 12 << 30,
                "cap_bytes": 12 << 30}
    lines = "\n".join(ingest_table({"corpora": [{"bytes": 200_000_000, "nextword": ours, "notebook": notebook}]}))
    assert "ran out of memory at 12.0 GB after 42 s" in lines
    assert "200 MB" in lines


def test_tuning_picks_the_lowest_perplexity_and_breaks_near_ties_by_accuracy():
    from tune_defaults import best_candidate

    rows = [{"index": 0, "val": {"perplexity": 80.0, "top1": 0.30}},
            {"index": 1, "val": {"perplexity": 70.0, "top1": 0.28}},
            {"index": 2, "val": {"perplexity": 70.5, "top1": 0.29}}]
    assert best_candidate(rows)["index"] == 2
    assert best_candidate(rows[:2])["index"] == 1


def test_tokenizer_comparison_needs_the_same_held_out_text_and_renders_every_round_and_the_winner():
    """bench/run's tokenizer section (its real runs are bench figures, not CI): the fairness check and
    the table. Word-normalised perplexity decides, whichever tokenizer has the lower per-token one."""
    from report import tokenizer_lines
    from tokenizer_bench import same_held_out_text

    held = {"word": {"documents": 8, "words": 8336, "tokens": 8336, "vocab_size": 500, "unk_share": 0.25},
            "wordpiece": {"documents": 8, "words": 8336, "tokens": 17000, "vocab_size": 500, "unk_share": 0.0}}
    assert same_held_out_text("builtin", held) is held
    with pytest.raises(RuntimeError, match="hold out different text"):
        same_held_out_text("builtin", {**held, "wordpiece": {**held["wordpiece"], "words": 8300}})

    def run(tokenizer, round_, word_perplexity, perplexity, tokens_per_word):
        return {"round": round_, "tokenizer": tokenizer, "steps": 100, "windows_per_second": 120.0,
                "perplexity": perplexity, "word_perplexity": word_perplexity, "tokens_per_word": tokens_per_word,
                "top1": 0.2 if tokenizer == "word" else None, "load_before": "1.0, 1.0, 1.0"}

    runs = [run("word", 1, 90.0, 90.0, 1.0), run("wordpiece", 1, 80.0, 9.0, 2.0)]
    median = {"word": {"word_perplexity": 90.0, "perplexity": 90.0, "tokens_per_word": 1.0, "windows_per_second": 120.0},
              "wordpiece": {"word_perplexity": 80.0, "perplexity": 9.0, "tokens_per_word": 2.0, "windows_per_second": 60.0}}
    results = {"budget_s": 180, "rounds": 1, "model": ["--arch", "transformer"], "skipped": "vim: not in --smoke",
               "corpora": {"builtin": {"held_out": held, "runs": runs, "median": median, "ratio": 80.0 / 90.0}}}
    text = "\n".join(tokenizer_lines(results))
    assert text.count("| builtin | 1 |") == 2 and "**80.00**" in text and "| — |" in text
    assert "(×0.889: **wordpiece** is better)" in text and "25.0% of the corpus's tokens" in text
    assert "0.50× the windows/s at 2.00 pieces a word" in text and "skipped: vim: not in --smoke" in text
