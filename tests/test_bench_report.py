"""`bench/run --render`, run as the script it is: RESULTS.md rendered from a results store (bench/store.py's
format) keeps the sections written by hand, says which sections a partial rerun measured, and renders the
standalone benchmarks' figures from the committed store. (The tables themselves: bench/tests.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "bench", "run")
MACHINE = {"nproc": 2, "cpu": "cpu", "ram_gb": 24, "python": "3.11", "platform": "linux"}


def entry(date: str, figures: dict, settings: dict | None = None) -> dict:
    return {"date": date, "versions": {"tensorflow": "2.21", "code": "abc1234"}, "machine": MACHINE,
            "settings": settings or {"smoke": False}, "figures": figures}


def ingest(windows_per_second: float) -> dict:
    ours = {"runs": 1, "windows": 1000, "windows_per_second": windows_per_second, "peak_rss_bytes": 1 << 29,
            "bytes_per_window": 3.0}
    notebook = {"out_of_memory": True, "killed_at_bytes": 4 << 30, "wall_seconds": 42.0, "peak_rss_bytes": 4 << 30,
                "cap_bytes": 4 << 30}
    return {"corpora": [{"bytes": 2_000_000, "nextword": ours, "notebook": notebook}]}


def render(out) -> str:
    done = subprocess.run([sys.executable, RUN, "--render", "--out", str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return (out / "RESULTS.md").read_text()


def test_a_render_keeps_the_sections_written_by_hand_and_says_what_each_run_measured(tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "RESULTS.md").write_text("# old\n\n## Ingest (issue 2)\n\nold ingest table\n\n## Serve (issue 24)\n\nserved 5.1x\n\n"
                                    "## Recipe (issue 19)\n\n<!-- table: recipe -->\n<!-- end table -->\n\n"
                                    "## Charts\n\n![old](charts/old.png)\n\n## Dedup (issue 22)\n\nrecall 100%\n\n"
                                    "<!-- table: dedup-rounds -->\n| stale | table |\n<!-- end table -->\n\nwritten by hand\n")
    summary = {"load_start": "1.00, 1.00, 1.00", "load_end": "2.00, 2.00, 2.00", "total_seconds": 600,
               "seconds": {"scale": 60.0}, "sections": ["scale"]}
    scale = {"skipped": "not in this test"}
    store = {"format": 1, "benchmarks": {
        "ingest": {"full": entry("2026-12-01 10:00 UTC", ingest(123_456.0))},
        "scale": {"full": entry("2026-12-05 10:00 UTC", scale)},
        "bench-run": {"full": entry("2026-12-05 10:00 UTC", summary)}}}
    (out / "results.json").write_text(json.dumps(store))
    text = render(out)
    assert "old ingest table" not in text and text.count("## Ingest (issue 2)") == 1  # rewritten from the store
    assert "123,456" in text and "ran out of memory at 4.0 GB after 42 s" in text
    assert "(sections scale rerun then; the others from the run of 2026-12-01 10:00 UTC)" in text
    assert "tensorflow 2.21, code abc1234" in text and "Load average (1, 5, 15 min) at start: 1.00, 1.00, 1.00" in text
    assert "served 5.1x" in text and "recall 100%" in text  # kept, in their order, before the charts
    assert text.index("## Serve (issue 24)") < text.index("## Dedup (issue 22)") < text.index("## Charts")
    assert text.count("## Charts") == 1 and "old.png" not in text
    # a marked table in a hand-written section is generated from the committed store; the prose around it stays
    committed = json.load(open(os.path.join(REPO, "bench", "results.json")))["benchmarks"]
    rounds = committed["dedup"]["eager-final"]["figures"]["rounds"]  # the run bench/gather.py draws the dedup tables from
    start = text.index("<!-- table: dedup-rounds -->")
    dedup = text[start:text.index("<!-- end table -->", start)]
    assert "| stale |" not in text and "written by hand" in text
    assert dedup.count("\n| ") == 2 + len(rounds)  # the header, its rule, a row a round
    assert f"| {rounds[0]['round']} | {rounds[0]['dedup']} | {rounds[0]['seconds']:.2f} |" in dedup
    # the standalone scripts' figures come from the committed store (bench/results.json), whatever --out is
    winner = committed["tune"]["candidates"]["figures"]["winner"]
    assert f"| {winner} **(chosen)** |" in text
    assert "**Held-out quality at equal training time** (`bench/arch_bench.py quality`" in text
    assert "**Generation past the context** (`bench/context_bench.py`" in text and "holds no" not in text
    recipe_runs = [run for run in committed["recipe"] if run.count("/") == 3]
    recipe = text[text.index("<!-- table: recipe -->"):]
    assert recipe.startswith(f"<!-- table: recipe -->\n`bench/recipe_bench.py`, {len(recipe_runs)} runs from ")
    assert text.count(f"`bench/recipe_bench.py`, {len(recipe_runs)} runs from ") == 1  # not appended a second time


def test_a_render_without_a_run_of_bench_run_says_what_to_do(tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"format": 1, "benchmarks": {}}))
    done = subprocess.run([sys.executable, RUN, "--render", "--out", str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode != 0 and "holds no `bench-run/full` entry: run bench/run first" in done.stderr
    newer = {"format": 99, "benchmarks": {}}
    (out / "results.json").write_text(json.dumps(newer))
    done = subprocess.run([sys.executable, RUN, "--render", "--out", str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode != 0 and "has store format 99, this checkout reads up to 1" in done.stderr
