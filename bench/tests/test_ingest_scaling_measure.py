"""bench/ingest_scaling_bench.py: CPU seconds per pass, main process vs workers, and the tree's memory."""

from __future__ import annotations

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import ingest_scaling_bench  # noqa: E402
from test_real_text_measure import synthetic_documents  # noqa: E402


def test_a_measured_ingest_splits_cpu_by_pass_and_by_process(tmp_path):
    corpus = tmp_path / "book.txt"
    corpus.write_text("\n".join(textwrap.fill(text, 60) + "\n" for text in synthetic_documents(12000, seed=8, min_words=20)))
    results = {"runs": [], "bare_import_rss": 700 << 20, "bare_import_cpu_seconds": 1.0, "bare_start_cpu_seconds": 0.1,
               "date": "2026-12-05 16:00 UTC"}
    for workers in (1, 2):
        row = ingest_scaling_bench.measured_ingest(str(corpus), "paragraph", workers, str(tmp_path / "out"))
        results["runs"].append({"corpus": "gcide-paragraph", "round": 0, "load": 1.0, "code": "this", **row})
        assert row["windows"] > 40_000 and row["documents"] == 12000
        assert list(row["passes"]) == ["pass 1", "pass 2", "pass 3"] or list(row["passes"]) == ["pass 1", "pass 2 + 3"]
        workers_cpu = sum(cpu["worker"] for cpu in row["passes"].values())
        assert (workers_cpu > 0) == (workers == 2)  # --workers 1 runs every job in the main process
        assert row["peak_unique_tree"] > 50 << 20 and row["peak_rss_main"] > 50 << 20  # sampled at different moments
        assert row["peak_rss_tree"] >= row["peak_rss_main"]
        split = ingest_scaling_bench.serial_split(row, ingest_scaling_bench.start_cost(row, results))
        assert split["all"][2] == 1.0 if workers == 1 else 0 < split["all"][2] < 1
    assert not os.path.exists(tmp_path / "out")
    report = ingest_scaling_bench.report_markdown(results)
    assert "| gcide-paragraph | this |" in report and report.count("| 0 | gcide-paragraph | this |") == 2
