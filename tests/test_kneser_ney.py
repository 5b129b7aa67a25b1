"""bench/kneser_ney.py, the command line over model/ngram.py (whose own tests are tests/test_ngram.py), run as the
script it is: its output and its cache on a real tiny dataset. (bench/report.py's table of the baseline is tested
in bench/tests, beside the code it renders.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nextword.model import ngram
from nextword.tfrecords.manifest import load_manifest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "kneser_ney.py")


def kneser_ney(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *arguments], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_the_command_line_prints_the_figures_and_caches_them(tiny_dataset, tmp_path):
    cache = str(tmp_path / "kneser-ney")  # not the repository's bench/work
    recounted = kneser_ney(tiny_dataset, "--json", "--no-cache", "--cache-dir", cache)
    assert recounted.returncode == 0, recounted.stderr[-2000:]
    assert not os.path.exists(cache)  # --no-cache writes nothing
    counted = kneser_ney(tiny_dataset, "--json", "--cache-dir", cache)
    assert counted.returncode == 0, counted.stderr[-2000:]
    recounted, counted = json.loads(recounted.stdout), json.loads(counted.stdout)
    timings = ("seconds", "read_seconds", "count_seconds", "score_seconds")
    assert {k: v for k, v in counted.items() if k not in timings} == {k: v for k, v in recounted.items() if k not in timings}
    assert counted["order"] == 5 and counted["windows"] == load_manifest(tiny_dataset).split("val").windows
    with open(ngram.cache_path(load_manifest(tiny_dataset).fingerprint, 5, cache)) as handle:
        assert json.load(handle) == counted
    other = kneser_ney(tiny_dataset, "--order", "3", "--cache-dir", cache)  # another order: counted, not the 5-gram's
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.startswith(f"3-gram Kneser-Ney on {tiny_dataset}: perplexity ") and "val windows" in other.stdout
    assert len(os.listdir(cache)) == 2
    refused = kneser_ney(tiny_dataset, "--order", "10", "--cache-dir", cache)
    assert refused.returncode == 2  # the tiny dataset's windows have 8 context ids
    assert "a 10-gram needs 9 context ids, the dataset's windows have 8" in refused.stdout
