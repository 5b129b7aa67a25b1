"""bench/recipe_bench.py and bench/real_corpora.py: the pure parts (no training, no ingest), and the grid's rows
in the results store."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import recipe_bench  # noqa: E402
import store  # noqa: E402
from gather import recipe as gathered  # noqa: E402
from real_corpora import kjv_verse  # noqa: E402

DEFAULT_RECIPE = {"model": {"arch": "transformer", "dropout": 0.1}, "optimization": {"learning_rate": 0.001}}


def row(arm: str, budget: float, seed: int, perplexity: float, top1: float, corpus: str = "kjv", **extra) -> dict:
    recipe = extra.pop("recipe", DEFAULT_RECIPE)
    return {"corpus": corpus, "arm": arm, "flags": recipe_bench.ARMS.get(arm, []), "budget_s": budget, "seed": seed,
            "steps": 1000 + seed, "stopped_by": "time_budget", "windows_per_second": 500.0, "parameters": 1,
            "model": recipe["model"], "optimization": recipe["optimization"], "perplexity": perplexity, "top1": top1,
            "top5": top1 + 0.2, "load_before": "1.00, 1.00, 1.00", "date": f"2026-12-0{seed + 1} 10:00 UTC", **extra}


@pytest.mark.parametrize("line, verse", [
    ("Ge1:1 In the beginning God created the heaven and the earth.", "In the beginning God created the heaven and the earth."),
    ("1Sa3:10 And the LORD came, and stood", "And the LORD came, and stood"),
    ("Rev22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n", "The grace of our Lord Jesus Christ be with you all. Amen."),
    ("Ps119:176 I have gone astray like a lost sheep; seek thy servant; for I do not forget thy commandments.",
     "I have gone astray like a lost sheep; seek thy servant; for I do not forget thy commandments."),
])
def test_kjv_reference_is_stripped(line, verse):
    assert kjv_verse(line) == verse


def test_a_rerun_of_the_same_cell_replaces_its_row_and_other_cells_stay(tmp_path):
    path = str(tmp_path / "results.json")
    stamp = {"date": "2026-12-05 10:00 UTC", "versions": {}, "machine": {}}
    for first in (row("default", 180, 0, 30.0, 0.25), row("default", 180, 1, 31.0, 0.24), row("default", 720, 0, 25.0, 0.27),
                  row("tied", 180, 0, 40.0, 0.22), row("default", 180, 0, 50.0, 0.20, corpus="vim"),
                  row("default", 180.0, 0, 29.0, 0.26)):  # the last: the first's cell again, budget as a float
        store.record(recipe_bench.BENCHMARK, recipe_bench.run_name(first), first, path=path, measured=stamp)
    rows = gathered(store.load(path))["rows"]
    assert len(rows) == 5
    kept = [r for r in rows if (r["corpus"], r["arm"], r["budget_s"], r["seed"]) == ("kjv", "default", 180.0, 0)]
    assert [r["perplexity"] for r in kept] == [29.0]
    assert sorted(r["perplexity"] for r in rows) == [25.0, 29.0, 31.0, 40.0, 50.0]


def test_plan_alternates_arms_and_reverses_odd_rounds():
    order = recipe_bench.plan(["builtin", "kjv"], ["default", "notebook", "tied"], [180, 720], [0, 1])
    assert len(order) == 2 * 3 * 2 * 2
    first_round = [(budget, arm) for corpus, budget, seed, arm in order if corpus == "builtin" and seed == 0]
    second_round = [(budget, arm) for corpus, budget, seed, arm in order if corpus == "builtin" and seed == 1]
    assert first_round[:3] == [(180, "default"), (180, "notebook"), (180, "tied")]
    assert second_round == first_round[::-1]
    assert [corpus for corpus, *_ in order] == ["builtin"] * 12 + ["kjv"] * 12  # one corpus's data at a time
    assert all(order[i][3] != order[i + 1][3] for i in range(len(order) - 1) if order[i][2] == order[i + 1][2])


def test_beats_needs_lower_perplexity_and_higher_top1():
    baseline = {"perplexity": 22.65, "top1": 0.334}
    assert recipe_bench.beats({"perplexity": 20.0, "top1": 0.34}, baseline) == (True, True)
    assert recipe_bench.beats({"perplexity": 20.0, "top1": 0.30}, baseline) == (True, False)
    assert recipe_bench.beats({"perplexity": 30.37, "top1": 0.35}, baseline) == (False, True)
    assert recipe_bench.beats({"perplexity": 22.65, "top1": 0.334}, baseline) == (False, False)  # a tie does not beat


def test_more_time_allows_equal_and_refuses_worse():
    assert recipe_bench.not_worse({"perplexity": 30.0}, {"perplexity": 30.0})
    assert recipe_bench.not_worse({"perplexity": 25.0}, {"perplexity": 30.0})
    assert not recipe_bench.not_worse({"perplexity": 30.01}, {"perplexity": 30.0})


def test_more_time_compares_the_seeds_both_budgets_ran():
    # the embedded corpus: seed 0 stopped early at the same step under both budgets, seed 1 ran 180 s only; medians
    # over unmatched seeds (292.19 vs 291.68) would call the identical model worse
    table = recipe_bench.cells([row("default", 180, 0, 292.19, 0.16), row("default", 180, 1, 291.17, 0.16),
                                row("default", 720, 0, 292.19, 0.16)])
    longer, shorter = table[("kjv", "default", 720.0)], table[("kjv", "default", 180.0)]
    assert recipe_bench.not_worse(longer, shorter)
    table = recipe_bench.cells([row("default", 180, 0, 292.19, 0.16), row("default", 720, 0, 292.20, 0.16)])
    assert not recipe_bench.not_worse(table[("kjv", "default", 720.0)], table[("kjv", "default", 180.0)])


def test_standing_target_against_the_notebook():
    notebook = {"perplexity": 111.0, "top1": 0.26}
    ratio, top1, perplexity_met, top1_met = recipe_bench.standing_ratios({"perplexity": 37.0, "top1": 0.39}, notebook)
    assert ratio == pytest.approx(1 / 3) and perplexity_met  # exactly a third meets ≤ 1/3
    assert top1 == pytest.approx(1.5) and top1_met
    _, _, perplexity_met, top1_met = recipe_bench.standing_ratios({"perplexity": 37.1, "top1": 0.389}, notebook)
    assert not perplexity_met and not top1_met


def results_for_report() -> dict:
    untied = {"model": {"arch": "transformer", "dropout": 0.1}, "optimization": {"learning_rate": 0.004}}
    rows = [row("default", 180, 0, 30.0, 0.25), row("default", 180, 1, 34.0, 0.23), row("default", 180, 2, 31.0, 0.26),
            row("default", 720, 0, 27.0, 0.28), row("notebook", 180, 0, 111.0, 0.26),
            row("lr-4e-3", 180, 0, 28.0, 0.27, recipe=untied),
            row("default", 180, 0, 300.0, 0.16, corpus="vim"), row("default", 720, 0, 320.0, 0.15, corpus="vim"),
            row("notebook", 180, 0, 900.0, 0.09, corpus="vim"), row("lr-4e-3", 180, 0, 330.0, 0.15, corpus="vim", recipe=untied)]
    return {"rows": rows, "corpora": {"kjv": "31,102 documents", "vim": "151 documents"},
            "baselines": {"kjv": {"perplexity": 22.65, "top1": 0.334, "top5": 0.608}, "vim": {"perplexity": 350.0, "top1": 0.14}}}


def test_report_medians_over_seeds_and_targets_per_corpus():
    text = recipe_bench.report_markdown(results_for_report())
    kjv = text[text.index("**kjv**"):text.index("**vim**")]
    vim = text[text.index("**vim**"):text.index("On every corpus")]
    # kjv default at 180 s: median of 30, 34, 31 over 3 seeds, its range beside
    assert "| **default** | – | 180 s | 3 | 31.00 (30.00–34.00) | 0.2500 |" in kjv
    assert "| lr-4e-3 | learning_rate 0.001 → 0.004 | 180 s | 1 | 28.00 |" in kjv
    assert "| **Kneser-Ney 5-gram** | counted on the train windows | – | – | **22.65** | **0.3340** | 0.6080 |" in kjv
    assert "| **350.00** | **0.1400** | – |" in vim  # no top-5 from the baseline: a dash, not nan
    assert "perplexity 31.00 vs 22.65 (beats: no), top-1 0.2500 vs 0.3340 (beats: no): **not met**" in kjv
    assert "over the 1 seed(s) both ran: perplexity 27.00 vs 30.00, top-1 0.2800 vs 0.2500 (at least as good: yes)" in kjv
    assert f"perplexity ×{31 / 111:.3f} (target ≤ ×0.333: met), top-1 ×{0.25 / 0.26:.2f} (target ≥ ×1.5: not met)" in kjv
    assert "perplexity 300.00 vs 350.00 (beats: yes), top-1 0.1600 vs 0.1400 (beats: yes): **met**" in vim
    assert "(at least as good: no)" in vim
    assert "- beat the 5-gram at 180 s: no (kjv)" in text
    assert "- 720 s at least as good as 180 s: no (vim)" in text
    assert "vs the notebook at 180 s: no (kjv)" in text  # vim: 300 / 900 is exactly a third, top-1 ×1.78
    assert "perplexity ×0.333 (target ≤ ×0.333: met), top-1 ×1.78 (target ≥ ×1.5: met)" in vim
    # the ranking: lr-4e-3 is 28/31 on kjv and 330/300 on vim
    assert f"| lr-4e-3 | ×{28 / 31:.3f} | ×{330 / 300:.3f} | ×{((28 / 31) * (330 / 300)) ** 0.5:.3f} (2) |" in text


def test_report_says_what_is_not_measured():
    results = results_for_report()
    results["rows"] = [r for r in results["rows"] if not (r["corpus"] == "vim" and r["budget_s"] == 720)]
    del results["baselines"]["vim"]
    text = recipe_bench.report_markdown(results)
    vim = text[text.index("**vim**"):text.index("On every corpus")]
    assert "default vs 5-gram: not measured (no 5-gram)" in vim
    assert "720 s vs 180 s, default: not measured" in vim
    assert "- 720 s at least as good as 180 s: yes where measured; not measured on vim" in text
    assert "- beat the 5-gram at 180 s: no (kjv); not measured on vim" in text
    assert "holds no `recipe` runs" in recipe_bench.report_markdown({"rows": []})


def test_changes_names_what_an_arm_changes():
    lr = {"model": {"arch": "transformer", "dropout": 0.1}, "optimization": {"learning_rate": 0.004}}
    assert recipe_bench.changes(lr, DEFAULT_RECIPE) == "learning_rate 0.001 → 0.004"
    assert recipe_bench.changes(DEFAULT_RECIPE, DEFAULT_RECIPE) == "same as default"


def test_arms_resolve_through_the_train_parser_without_tensorflow():
    default = recipe_bench.resolve([])
    faster = recipe_bench.resolve(["--learning-rate", "4e-3"])
    assert faster["optimization"]["learning_rate"] == 0.004
    assert recipe_bench.changes(faster, default) == f"learning_rate {default['optimization']['learning_rate']:g} → 0.004"
    assert recipe_bench.resolve(["--preset", "notebook"])["model"]["bidirectional"] is True
    # the settings keep weight decay for adamw only: alone, the flag changes nothing
    assert recipe_bench.resolve(["--optimizer", "adamw", "--weight-decay", "0.3"])["optimization"]["weight_decay"] == 0.3


def test_an_arm_with_flags_train_rejects_stops_before_training(monkeypatch):
    monkeypatch.setitem(recipe_bench.ARMS, "broken", ["--units", "130", "--heads", "4"])
    with pytest.raises(SystemExit, match="arm broken: `nextword train` rejects --units 130 --heads 4"):
        recipe_bench.resolve_arms(["default", "broken"])
    with pytest.raises(SystemExit, match="unknown arm"):
        recipe_bench.resolve_arms(["nonesuch"])
