"""bench/store.py, the one results store, and bench/gather.py, which reads the report's sections out of it."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import gather  # noqa: E402
import store  # noqa: E402

STAMP = {"date": "2026-12-05 10:00 UTC", "versions": {"tensorflow": "2.21", "code": "abc1234"}, "machine": {"nproc": 2}}


def test_an_entry_holds_date_versions_machine_settings_and_figures_and_a_rerun_replaces_only_its_run(tmp_path):
    path = str(tmp_path / "results.json")
    assert store.load(path) == {"format": store.FORMAT, "benchmarks": {}}  # no file yet: an empty store
    first = store.record("arch", "builtin/lstm/180", {"perplexity": 60.0}, {"budget_s": 180}, path)
    assert set(first) == {"date", "versions", "machine", "settings", "figures"}
    assert first["versions"]["code"] and "tensorflow" in first["versions"] and first["machine"]["nproc"] == os.cpu_count()
    store.record("arch", "vim/lstm/180", {"perplexity": 200.0}, path=path, measured=STAMP)
    store.record("tune", "candidates", {"winner": "1"}, path=path, measured=STAMP)
    store.record("arch", "builtin/lstm/180", {"perplexity": 58.0}, path=path, measured=STAMP)  # the rerun of one cell
    runs = store.entries("arch", path)
    assert list(runs) == ["builtin/lstm/180", "vim/lstm/180"]
    assert store.figures("arch", "builtin/lstm/180", path) == {"perplexity": 58.0}
    assert runs["builtin/lstm/180"]["date"] == STAMP["date"] and store.figures("tune", "candidates", path) == {"winner": "1"}
    assert store.figures("arch", "nonesuch", path) is None and store.entries("nonesuch", path) == {}
    assert store.forget("arch", "vim/lstm/180", path) and not store.forget("arch", "vim/lstm/180", path)
    assert list(store.entries("arch", path)) == ["builtin/lstm/180"]
    text = open(path).read()
    assert json.loads(text) == store.load(path)
    assert sum(line.lstrip().startswith('"builtin/lstm/180": {"date"') for line in text.splitlines()) == 1  # an entry a line
    assert os.listdir(tmp_path) == ["results.json"]  # no temp or lock file left beside it


def _record(arguments):
    path, index = arguments
    store.record("concurrent", f"run-{index}", {"index": index}, path=path, measured=STAMP)


def test_scripts_recording_at_the_same_time_all_land(tmp_path):
    path = str(tmp_path / "results.json")
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pool.map(_record, [(path, index) for index in range(30)])
    assert sorted(entry["figures"]["index"] for entry in store.entries("concurrent", path).values()) == list(range(30))


@pytest.mark.parametrize("content, said", [
    ({"rows": []}, "is not a bench results store: expected"),
    ({"format": 2, "benchmarks": {}}, "has store format 2, this checkout reads up to 1"),
])
def test_a_file_that_is_not_this_store_is_refused_with_what_to_do(tmp_path, content, said):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    with pytest.raises(store.StoreError, match=said):
        store.load(str(path))
    with pytest.raises(store.StoreError):
        store.record("arch", "x", {}, path=str(path), measured=STAMP)
    assert json.loads(path.read_text()) == content  # left as it was


def _entry(date: str, figures: dict, **settings) -> dict:
    return {**STAMP, "date": date, "settings": settings, "figures": figures}


def test_a_partial_rerun_renders_each_section_with_its_own_run_and_says_so():
    data = {"format": 1, "benchmarks": {
        "ingest": {"full": _entry("2026-12-01 10:00 UTC", {"corpora": []}), "smoke": _entry("2026-12-05 09:00 UTC", {"x": 1})},
        "quality": {"full": _entry("2026-12-05 10:00 UTC", {"rows": {}})},
        "bench-run": {"full": _entry("2026-12-05 10:00 UTC", {"load_start": "1", "load_end": "2", "total_seconds": 60,
                                                              "seconds": {"quality": 50.0}, "sections": ["quality"]},
                                     smoke=False)}}}
    results = gather.run_sections(data, "full")
    assert results["ingest"] == {"corpora": []} and results["quality"] == {"rows": {}}
    meta = results["meta"]
    assert meta["date"] == "2026-12-05 10:00 UTC" and meta["smoke"] is False
    assert meta["rerun_sections"] == ["quality"] and meta["first_run"] == "2026-12-01 10:00 UTC"
    assert meta["machine"]["versions"]["code"] == "abc1234" and results["seconds"] == {"quality": 50.0}
    assert "meta" not in gather.run_sections(data, "smoke")  # no bench-run entry for it: nothing to head the report


def test_the_standalone_scripts_runs_gather_into_the_shapes_their_tables_take():
    data = {"format": 1, "benchmarks": {
        "arch": {"builtin/lstm/180": _entry("2026-11-30 02:00 UTC", {"arm": "lstm"}),
                 "vim/lstm/600": _entry("2026-11-30 05:00 UTC", {"arm": "lstm"}),
                 "five_gram/vim": _entry("2026-11-30 01:00 UTC", {"perplexity": 229.0}),
                 "speed": _entry("2026-11-30 06:00 UTC", {"words": 200})},
        "tune": {"candidates": _entry("2026-11-28 10:00 UTC", {"winner": "1"})},
        "eval_memory": {"latest": _entry("2026-11-29 10:00 UTC", {"vocab": {}})},
        "context": {"builtin": _entry("2026-11-29 11:00 UTC", {"horizon": 300})},
        "recipe": {"kjv/default/180/0": _entry("2026-12-05 04:00 UTC", {"arm": "default"}),
                   "five_gram/kjv": _entry("2026-12-05 03:00 UTC", {"perplexity": 22.65}),
                   "corpus/kjv": _entry("2026-12-05 03:00 UTC", {"description": "31,102 documents"})}}}
    arch = gather.arch(data)
    assert set(arch["quality"]) == {"builtin/lstm/180", "vim/lstm/600"} and arch["quality_date"] == "2026-11-30 05:00 UTC"
    assert arch["baselines"] == {"vim": {"perplexity": 229.0}} and arch["speed"] == {"words": 200}
    assert gather.tune(data) == {"winner": "1", "date": "2026-11-28 10:00 UTC"}
    hardening = gather.hardening(data)
    assert hardening["eval_memory"]["versions"] == "TensorFlow 2.21, Keras None" and hardening["eval_memory"]["vocab"] == {}
    assert hardening["context"] == [{"label": "builtin", "date": "2026-11-29 11:00 UTC", "horizon": 300}]
    assert gather.recipe(data) == {"rows": [{"arm": "default"}], "baselines": {"kjv": {"perplexity": 22.65}},
                                   "corpora": {"kjv": "31,102 documents"}}
    empty = {"format": 1, "benchmarks": {}}
    assert gather.arch(empty) is None and gather.tune(empty) is None and gather.hardening(empty) is None
