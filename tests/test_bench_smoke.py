"""bench/run --smoke (what CI runs), run as the script it is: every section measured, recorded in the results
store it was given (OUT/results.json, bench/store.py's format), rendered, and bench/RESULTS.md untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")

SECTIONS = ("ingest", "reader", "loop", "quality", "generation")


@pytest.mark.slow
def test_smoke_run_writes_every_section_and_chart_without_touching_results_md(tmp_path):
    committed = [os.path.join(BENCH, name) for name in ("RESULTS.md", "results.json")]
    before = [os.path.getmtime(path) for path in committed]
    out = tmp_path / "bench"
    # Not the scale section: its 2-worker training run is the product path tests/test_multiworker.py covers,
    # and it cost a minute of CI's 30-minute budget.
    sections = ",".join((*SECTIONS, "layout"))
    result = subprocess.run([sys.executable, os.path.join(BENCH, "run"), "--smoke", "--out", str(out), "--only", sections],
                            capture_output=True, text=True, cwd=REPO, timeout=900,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    with open(out / "results.json") as handle:
        stored = json.load(handle)["benchmarks"]  # {benchmark: {run: {"date", "versions", "machine", "settings", "figures"}}}
    results = {section: stored[section]["smoke"]["figures"] for section in (*SECTIONS, "layout") if section in stored}
    assert set(results) == {*SECTIONS, "layout"} and "bench-run" in stored
    entry = stored["quality"]["smoke"]
    assert entry["settings"]["smoke"] is True and entry["versions"]["tensorflow"] and entry["machine"]["nproc"]
    for section in SECTIONS:
        assert section in results and "error" not in results[section], (section, results.get(section))
    assert results["quality"]["rows"]["default"]["val"]["perplexity"] > 1
    assert results["generation"]["notebook_words_per_s"] > 0
    assert all(row["nextword"]["windows"] > 0 for row in results["ingest"]["corpora"])
    text = (out / "RESULTS.md").read_text()
    for heading in ("## Ingest", "## Reader and training loop", "## Quality at equal budget", "## Generation",
                    "## Scale-out", "Load average"):
        assert heading in text
    charts = sorted(os.listdir(out / "charts"))
    assert {"ingest.png", "loop.png", "quality.png", "generation.png"} <= set(charts)
    assert all(0 < os.path.getsize(out / "charts" / name) < 200_000 for name in charts)
    assert [os.path.getmtime(path) for path in committed] == before  # a smoke run writes only under --out
