"""bench/kneser_ney.py, the command line over model/ngram.py (whose own tests are tests/test_ngram.py):
its output and its cache on a real tiny dataset, and bench/report.py's table of the baseline."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import kneser_ney as cli  # noqa: E402

from nextword.model import ngram  # noqa: E402


def test_the_command_line_prints_the_figures_and_caches_them(tiny_dataset, tmp_path, monkeypatch, capsys):
    from nextword.tfrecords.manifest import load_manifest

    monkeypatch.setattr(cli, "CACHE_DIR", str(tmp_path / "kneser-ney"))  # not the repository's bench/work
    assert cli.main([tiny_dataset, "--json", "--no-cache"]) == 0
    recounted = json.loads(capsys.readouterr().out)
    assert not os.path.exists(cli.CACHE_DIR)  # --no-cache writes nothing
    assert cli.main([tiny_dataset, "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    timings = ("seconds", "read_seconds", "count_seconds", "score_seconds")
    assert {k: v for k, v in counted.items() if k not in timings} == {k: v for k, v in recounted.items()
                                                                       if k not in timings}
    assert counted["order"] == 5 and counted["windows"] == load_manifest(tiny_dataset).split("val").windows
    cached = ngram.cache_path(load_manifest(tiny_dataset).fingerprint, 5, cli.CACHE_DIR)
    with open(cached) as handle:
        assert json.load(handle) == counted
    assert cli.main([tiny_dataset, "--order", "3"]) == 0  # another order: counted, not the order-5 figures
    line = capsys.readouterr().out
    assert line.startswith(f"3-gram Kneser-Ney on {tiny_dataset}: perplexity ") and "val windows" in line
    assert len(os.listdir(cli.CACHE_DIR)) == 2


def test_an_order_the_windows_cannot_hold_is_a_user_error(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "CACHE_DIR", str(tmp_path))
    assert cli.main([tiny_dataset, "--order", "10"]) == 2  # the tiny dataset's windows have 8 context ids
    assert "a 10-gram needs 9 context ids, the dataset's windows have 8" in capsys.readouterr().out


def test_the_quality_table_shows_the_baseline_and_each_recipe_against_it():
    from report import quality_lines

    model = {"layers": 1, "bidirectional": False, "arch": "lstm", "units": 8, "embedding_dim": 8, "dropout": 0.0,
             "objective": "all"}
    rows = {name: {"val": {"perplexity": perplexity, "top1": top1}, "steps": 10, "batch_size": 8, "optimizer": "adam",
                   "learning_rate": 1e-3, "model": model}
            for name, perplexity, top1 in (("notebook", 120.0, 0.2), ("default", 60.0, 0.3))}
    quality = {"budget_seconds": 4, "rows": rows, "accuracy_ratio": 1.5, "perplexity_ratio": 0.5,
               "reference": {"accuracy_ratio": 2.7, "perplexity_ratio": 0.2, "note": "n"},
               "baseline": {"order": 5, "train_events": 1234, "seconds": 3.0, "top1": 0.25, "perplexity": 80.0},
               "vs_baseline": {"notebook": {"accuracy_ratio": 0.8, "perplexity_ratio": 1.5},
                               "default": {"accuracy_ratio": 1.2, "perplexity_ratio": 0.75}}}
    table = "\n".join(quality_lines(quality))
    assert "| 5-gram baseline (`bench/kneser_ney.py`) |" in table and "| 0.2500 | 80.00 |" in table
    assert "| **ratio default / 5-gram** | | | | **1.20x** | **0.750x** |" in table
    assert "| **ratio notebook / 5-gram** | | | | **0.80x** | **1.500x** |" in table
    del quality["baseline"], quality["vs_baseline"]  # results.json of earlier runs still render, and say so
    table = "\n".join(quality_lines(quality))
    assert "5-gram baseline" not in table and "/ 5-gram" not in table
    assert "5-gram: not measured in this run." in table
