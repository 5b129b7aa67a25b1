"""bench/real_text_bench.py: one measured ingest of a tiny wrapped text, and the report made of such rows."""

from __future__ import annotations

import os
import random
import sys
import textwrap

from nextword.synthetic import word_types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import real_text_bench  # noqa: E402


def synthetic_documents(count: int, seed: int, min_words: int, max_words: int = 60) -> list[str]:
    """Zipf-ish documents of min_words..max_words words."""
    rng = random.Random(seed)
    words = word_types(200, seed)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(min_words, max_words))) for _ in range(count)]


def test_a_measured_ingest_reports_speed_memory_and_where_the_cpu_went(tmp_path):
    corpus = tmp_path / "book.txt"
    corpus.write_text("\n".join(textwrap.fill(text, 60) + "\n" for text in synthetic_documents(300, seed=8, min_words=20)))
    rows = []
    for workers in (1, 2):
        row = real_text_bench.measured_ingest(str(corpus), "paragraph", workers, str(tmp_path / "out"), import_cpu=0.0)
        rows.append({"corpus": "gcide-paragraph", "round": 0, "mb": 0, **row})
        assert row["windows"] > 1000 and row["documents"] == 300 and row["median_document_words"] >= 20
        assert row["peak_rss_main"] > 30 << 20 and row["peak_rss_tree"] >= row["peak_rss_main"]  # --workers 2: no TensorFlow in main
        assert row["cpu_seconds"]["main_thread"] > 0 and 0 < row["serial_fraction"] <= 1
        assert (row["cpu_seconds"]["workers"] > 0) == (workers == 2)  # --workers 1 encodes in-process
    assert not os.path.exists(tmp_path / "out")  # the dataset is removed after each run
    report = real_text_bench.report_markdown({"runs": rows, "bare_import_rss": 700 << 20, "bare_import_cpu_seconds": 0.0,
                                              "date": "2026-12-05 07:00 UTC"})
    assert "| gcide-paragraph | 0 |" in report and "projected 16 cores" in report
    assert report.count("| 0 | gcide-paragraph |") == 2  # every run listed
