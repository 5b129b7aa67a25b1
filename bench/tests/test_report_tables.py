"""bench/report.py's tables and the 5-gram beside each (issue 19), and bench/arms.py `five_gram`, which measures
it: tiny fake results dicts and a faked `bench/kneser_ney.py` process (no training, no ingest)."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/: its modules

import arms  # noqa: E402
import common  # noqa: E402
import markdown  # noqa: E402
import report  # noqa: E402

NOT_MEASURED = "not measured in this run"


def five_gram(perplexity: float = 80.0, top1: float = 0.25, fingerprint: str = "f" * 32) -> dict:
    """An entry as arms.five_gram stores it (model.ngram.baseline's figures plus the stamp)."""
    return {"perplexity": perplexity, "loss": 4.38, "top1": top1, "top5": 0.5, "windows": 8328, "order": 5,
            "train_events": 57389, "vocab_size": 500, "seconds": 3.0, "read_seconds": 2.0, "count_seconds": 0.5,
            "score_seconds": 0.5, "dataset_fingerprint": fingerprint, "data_dir": "/w/builtin-v500",
            "date": "2026-12-02 18:00 UTC"}


def _model(arch: str = "lstm") -> dict:
    return {"layers": 1, "bidirectional": False, "arch": arch, "units": 8, "embedding_dim": 8, "dropout": 0.1,
            "objective": "all", "heads": 2, "ff_dim": None}


# ---- the quality section (bench/train_bench.py) -------------------------------------------------

def quality(**extra) -> dict:
    rows = {name: {"val": {"perplexity": perplexity, "top1": top1}, "steps": 10, "batch_size": 8, "optimizer": "adam",
                   "learning_rate": 1e-3, "model": _model()}
            for name, perplexity, top1 in (("notebook", 120.0, 0.2), ("default", 60.0, 0.3))}
    return {"budget_seconds": 4, "rows": rows, "accuracy_ratio": 1.5, "perplexity_ratio": 0.5,
            "reference": {"accuracy_ratio": 2.7, "perplexity_ratio": 0.2, "note": "n"}, **extra}


def test_the_quality_table_has_the_five_gram_row_and_each_recipe_against_it():
    table = "\n".join(report.quality_lines(quality(
        baseline=five_gram(), vs_baseline={"notebook": {"accuracy_ratio": 0.8, "perplexity_ratio": 1.5},
                                           "default": {"accuracy_ratio": 1.2, "perplexity_ratio": 0.75}})))
    assert "| 5-gram baseline (`bench/kneser_ney.py`) | interpolated modified Kneser-Ney" in table
    assert "counted on the same train windows (57,389), scored on the same 8,328 val windows" in table
    assert "| 0.2500 | 80.00 |" in table
    assert "| **ratio notebook / 5-gram** | | | | **0.80x** | **1.500x** |" in table
    assert NOT_MEASURED not in table


@pytest.mark.parametrize("baseline", [None, {"error": "bench/kneser_ney.py /w/builtin-v500: exit 2: boom"}])
def test_a_quality_section_without_the_five_gram_says_it_was_not_measured(baseline):
    section = quality() if baseline is None else quality(baseline=baseline, vs_baseline={})
    lines = report.quality_lines(section)
    table = "\n".join(lines)
    assert "5-gram: not measured in this run" in table and "5-gram baseline" not in table
    assert ("counting it failed: bench/kneser_ney.py /w/builtin-v500: exit 2: boom" in table) == (baseline is not None)
    index = next(i for i, line in enumerate(lines) if NOT_MEASURED in line)
    assert lines[index - 1] == "" and lines[index - 2].startswith("| **ratio default / notebook** |")  # right under it


# ---- the default-recipe candidates (bench/tune_defaults.py) --------------------------------------

def tune(**extra) -> dict:
    def row(index, perplexity, top1):
        candidate = {"arch": "lstm", "layers": 1, "units": 8, "embedding_dim": 8, "dropout": 0.1, "learning_rate": 1e-3,
                     "batch_size": 8}
        return {"index": index, "candidate": candidate, "val": {"perplexity": perplexity, "top1": top1}, "steps": 10,
                "windows_per_second": 100.0, "load_before": "1.00, 1.00, 1.00"}

    return {"date": "2026-12-02", "rule": "r", "budget_seconds": 60, "final_budget_seconds": 180,
            "rows": [row(0, 110.0, 0.26), row(1, 100.0, 0.27)], "final_rows": [row("1", 70.0, 0.29)], "winner": "1",
            **extra}


def test_both_tuning_tables_end_with_the_five_gram():
    lines = report.tune_lines(tune(baseline=five_gram(68.32, 0.2601)))
    rows = [line for line in lines if line.startswith("| **5-gram** |")]
    assert len(rows) == 2  # stage 1 and stage 2, on the same dataset
    assert rows[0].endswith("| **0.2601** | **68.32** | |")
    assert rows[0].count("|") == lines[lines.index(rows[0]) - 1].count("|")  # as many cells as the candidates' rows
    assert NOT_MEASURED not in "\n".join(lines)


def test_tuning_results_of_an_earlier_run_say_the_five_gram_was_not_measured():
    lines = report.tune_lines(tune())
    assert [line for line in lines if NOT_MEASURED in line] == ["5-gram: not measured in this run."] * 2
    assert not any(line.startswith("| **5-gram**") for line in lines)


# ---- transformer vs LSTM (bench/arch_bench.py) --------------------------------------------------

def arch(**extra) -> dict:
    def row(corpus, arm, perplexity, top1, fingerprint=None):
        return {"corpus": corpus, "arm": arm, "budget_s": 180, "model": _model("transformer" if "transformer" in arm else "lstm"),
                "parameters": 1000, "steps": 10, "windows_per_second": 100.0, "target_tokens_per_second": 4400.0,
                "perplexity": perplexity, "top1": top1, "top5": 0.5, "load_before": "1.00, 1.00, 1.00",
                **({"dataset_fingerprint": fingerprint} if fingerprint else {})}

    rows = [row("builtin", "notebook", 110.0, 0.2), row("builtin", "lstm", 63.0, 0.3), row("builtin", "transformer", 60.0, 0.31),
            row("vim", "lstm", 50.0, 0.35, "a" * 32), row("vim", "transformer", 40.0, 0.4, "b" * 32)]
    return {"quality_date": "2026-12-02", "quality": {f"{r['corpus']}/{r['arm']}/180": r for r in rows}, **extra}


def test_the_arch_table_has_a_five_gram_row_per_corpus_and_each_arms_ratio():
    lines = report.arch_lines(arch(baselines={"builtin": five_gram(68.0, 0.26), "vim": five_gram(229.0, 0.184, "a" * 32)}))
    table = [line for line in lines if line.startswith("| ")]
    five = [i for i, line in enumerate(table) if "| **5-gram** |" in line]
    assert [table[i].split(" | ")[0] for i in five] == ["| builtin", "| vim"]
    assert table[five[0] - 1].startswith("| builtin | transformer |")  # after its corpus's arms
    assert "| **68.00** | **0.2600** | 0.5000 | – |" in table[five[0]]
    assert table[five[0]].count("|") == table[0].count("|")
    text = "\n".join(lines)
    assert "- builtin, each arm / the 5-gram (perplexity 68.00, top-1 0.2600): notebook 180 s perplexity ×1.618" in text
    assert "transformer 180 s perplexity ×0.882, top-1 ×1.192." in text
    # a vim row trained on data of another fingerprint than the 5-gram's is flagged, not compared silently
    assert "(**not comparable** for transformer: trained on a dataset of another fingerprint" in text
    assert NOT_MEASURED not in text


def test_arch_results_without_a_five_gram_say_so_per_corpus():
    lines = report.arch_lines(arch(baselines={"vim": five_gram(229.0, 0.184)}))
    assert "5-gram (builtin): not measured in this run." in lines
    assert sum("| **5-gram** |" in line for line in lines) == 1
    older = report.arch_lines(arch())  # a JSON from before the 5-gram was stored
    assert "5-gram (builtin, vim): not measured in this run." in older
    assert not any("each arm / the 5-gram" in line for line in older)


# ---- word vs wordpiece (bench/tokenizer_bench.py) -----------------------------------------------

def tokenizer(baseline: dict | None) -> dict:
    held_out = {"word": {"documents": 8, "tokens": 8336, "words": 8336, "vocab_size": 500, "unk_share": 0.19},
                "wordpiece": {"documents": 8, "tokens": 17208, "words": 8336, "vocab_size": 500, "unk_share": 0.0}}
    runs = [{"round": 1, "tokenizer": tok, "steps": 10, "windows_per_second": 100.0, "tokens_per_word": tpw,
             "perplexity": ppl, "word_perplexity": wppl, "top1": top1, "load_before": "1.00, 1.00, 1.00"}
            for tok, tpw, ppl, wppl, top1 in (("word", 1.0, 130.0, 130.0, 0.2), ("wordpiece", 2.06, 82.6, 9109.3, None))]
    medians = {run["tokenizer"]: run for run in runs}
    corpus = {"held_out": held_out, "runs": runs, "median": medians, "ratio": 9109.3 / 130.0,
              **({"five_gram": baseline} if baseline is not None else {})}
    return {"budget_s": 180, "rounds": 1, "model": ["--arch", "transformer"], "corpora": {"builtin": corpus}}


def test_the_tokenizer_table_has_the_word_datasets_five_gram_and_says_it_is_word_only():
    lines = report.tokenizer_lines(tokenizer(five_gram(68.32, 0.2601)))
    row = next(line for line in lines if "5-gram" in line and line.startswith("| "))
    assert row.startswith("| builtin | – | **5-gram, `word` dataset only**: interpolated modified Kneser-Ney")
    assert row.endswith("| 500 | – | – | 1.000 | 68.32 | **68.32** | 0.2601 | – |")
    assert row.count("|") == lines[lines.index(row) - 1].count("|")
    text = "\n".join(lines)
    assert "the 5-gram of the `word` dataset 68.32: word / 5-gram ×1.903 (wordpiece has no 5-gram to compare with)" in text
    assert NOT_MEASURED not in text


def test_tokenizer_results_without_the_five_gram_say_not_measured():
    lines = report.tokenizer_lines(tokenizer(None))
    assert "5-gram (builtin; it applies to the `word` datasets only): not measured in this run." in lines
    assert not any("5-gram" in line and line.startswith("| ") for line in lines)


# ---- measuring it: bench/arms.py five_gram -------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path):
    with open(tmp_path / "dataset.json", "w") as handle:
        json.dump({"fingerprint": "c" * 32}, handle)
    return str(tmp_path)


def fake_kneser_ney(monkeypatch, returncode: int = 0, stdout: str = "") -> list:
    calls = []

    def run_measured(argv, **kwargs):
        calls.append(argv)
        return common.Measured(returncode, 1.0, 0, stdout, "")

    monkeypatch.setattr(arms, "run_measured", run_measured)
    return calls


def test_five_gram_stores_the_figures_with_the_datasets_fingerprint(monkeypatch, data_dir):
    figures = {k: v for k, v in five_gram().items() if k not in ("dataset_fingerprint", "data_dir", "date")}
    calls = fake_kneser_ney(monkeypatch, stdout=json.dumps(figures))
    stored = arms.five_gram(data_dir, log=lambda message: None)
    assert calls[0][1:] == [os.path.join(common.BENCH, "kneser_ney.py"), data_dir, "--order", "5", "--json"]
    assert {k: stored[k] for k in figures} == figures
    assert stored["dataset_fingerprint"] == "c" * 32 and stored["data_dir"] == data_dir
    assert report.five_gram_measured(stored)
    again = arms.five_gram(data_dir, known=stored, log=lambda message: None)
    assert again is stored and len(calls) == 1  # the same dataset: the stored figures, no new process
    arms.five_gram(data_dir, known={**stored, "dataset_fingerprint": "d" * 32}, log=lambda message: None)
    assert len(calls) == 2  # another dataset under the same name: counted again


def test_a_five_gram_that_fails_is_stored_as_not_measured_and_does_not_raise(monkeypatch, data_dir):
    fake_kneser_ney(monkeypatch, returncode=2, stdout="error: a 5-gram needs 4 context ids")
    stored = arms.five_gram(data_dir, log=lambda message: None)
    assert "a 5-gram needs 4 context ids" in stored["error"] and stored["dataset_fingerprint"] == "c" * 32
    assert not report.five_gram_measured(stored)
    assert report.five_gram_missing(stored).startswith("5-gram: not measured in this run (counting it failed: ")
    calls = fake_kneser_ney(monkeypatch, stdout=json.dumps(five_gram()))
    arms.five_gram(data_dir, known=stored, log=lambda message: None)
    assert len(calls) == 1  # a failed entry is counted again


# ---- the training-loop section's utilisation (issue 23) ----------------------------------------------

def test_the_loop_section_states_each_networks_utilisation_and_older_results_say_nothing():
    def row(rate: float, **extra) -> dict:
        return {"windows_per_second": rate, "windows_per_second_runs": [rate], "input_wait_share": 0.01,
                "batch_size": 128, **extra}

    measured = {"training_flops_per_window": 177_300_000, "peak_flops_per_second": 500e9, "peak_source": "float32 matmul",
                "utilisation": 0.386}
    loop = {"ours": row(900, **{**measured, "training_flops_per_window": 20_000_000, "utilisation": 0.036}),
            "fit": row(600), "default_recipe": row(1085, **measured), "ratio": 1.5, "target_ratio": 1.5}
    text = "\n".join(report.loop_lines(loop, None))
    assert "notebook network 20.0 MFLOP a window, 4%; default recipe 177.3 MFLOP a window, 39%." in text
    older = {**loop, "ours": row(900), "default_recipe": row(1085)}
    assert "Utilisation" not in "\n".join(report.loop_lines(older, None))


def test_the_quality_table_shows_each_recipe_against_the_five_gram():
    lines = report.quality_lines(quality(baseline=five_gram(), vs_baseline={
        "notebook": {"accuracy_ratio": 0.8, "perplexity_ratio": 1.5}, "default": {"accuracy_ratio": 1.2, "perplexity_ratio": 0.75}}))
    table = "\n".join(lines)
    assert "| **ratio default / 5-gram** | | | | **1.20x** | **0.750x** |" in table
    assert "| **ratio notebook / 5-gram** | | | | **0.80x** | **1.500x** |" in table


# ---- tables generated into the sections written by hand --------------------------------------------

def test_a_hand_written_section_keeps_its_prose_and_its_marked_tables_are_generated_anew():
    lines = ["## Dedup (issue 22)", "", "Prose written by hand.", "<!-- table: rounds -->", "| old | table |",
             "| stale | 1 |", "<!-- end table -->", "", "More prose.", "<!-- table: quality -->", "<!-- end table -->"]
    tables = {"rounds": lambda: "| round | seconds |\n| ---: | ---: |\n| 1 | 11.61 |\n", "quality": lambda: "| found |"}
    filled = markdown.fill_generated_tables(lines, tables)
    assert filled == ["## Dedup (issue 22)", "", "Prose written by hand.", "<!-- table: rounds -->", "| round | seconds |",
                      "| ---: | ---: |", "| 1 | 11.61 |", "<!-- end table -->", "", "More prose.", "<!-- table: quality -->",
                      "| found |", "<!-- end table -->"]
    assert markdown.fill_generated_tables(filled, tables) == filled  # a second render changes nothing


@pytest.mark.parametrize("lines, said", [
    (["<!-- table: rounds -->", "| old |"], "has no `<!-- end table -->` after it"),
    (["<!-- table: nonesuch -->", "<!-- end table -->"], "no benchmark renders a table named 'nonesuch'"),
])
def test_a_broken_marker_is_refused_before_any_prose_is_lost(lines, said):
    with pytest.raises(ValueError, match=said):
        markdown.fill_generated_tables(lines, {"rounds": lambda: "| new |"})


def test_the_dedup_tables_render_every_round_and_each_modes_findings():
    import dedup_bench

    corpus = {"exact": 1567, "near": 1567, "originals": 52242}
    quality = {"exact": {"exact_recall": 1.0, "near_recall": 0.0, "false_positives": 0, "false_positive_share": 0.0, "removed": 1567},
               "near": {"exact_recall": 1.0, "near_recall": 0.9061901723037652, "false_positives": 20,
                        "false_positive_share": 0.0003828337353087554, "removed": 3007}}
    rounds = [{"round": 1, "dedup": "none", "seconds": 11.61, "mb_per_s": 2.743, "rss_mb": 1082, "load": 4.33, "removed": 0,
               "leakage": 0.1021}]
    table = dedup_bench.quality_table({"corpus": corpus, "quality": quality})
    assert table[2:] == ["| exact | 1,567 / 1,567 (100%) | 0 | 0 (0%) | 1,567 |",
                         "| near | 1,567 / 1,567 (100%) | 1,420 / 1,567 (90.6%) | 20 (0.0383%) | 3,007 |"]
    assert dedup_bench.rounds_table({"rounds": rounds})[2:] == ["| 1 | none | 11.61 | 2.74 | 1,082 | 4.33 | 0 | 10.21% |"]
    measured = [dict(rounds[0], unique_mb=1003)]  # runs that measured the tree's unique memory too
    assert dedup_bench.rounds_table({"rounds": measured, "bare_import_rss_mb": [760, 755]})[2:] == [
        "| 1 | none | 11.61 | 2.74 | 1,003 (+0.24 GB) | 1,082 | 4.33 | 0 | 10.21% |"]


def test_a_rerun_keeps_the_file_s_section_order_and_the_notes_added_to_its_header(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("\n".join([
        "# nextword benchmarks vs the seed notebook's recipe", "", "Generated by `bench/run` on then.",
        "Machine: old.", "Load average (1, 5, 15 min) at start: 1.", "", "A note added by hand.", "",
        "## Ingest (issue 2)", "", "old ingest table", "",
        "## Serve (issue 24)", "", "Prose written by hand.", "<!-- table: rounds -->", "| stale |", "<!-- end table -->", "",
        "## Generation (issue 4)", "", "old generation", "", "## Charts", "", "![old.png](charts/old.png)", ""]))
    generated = [("Ingest (issue 2)", ["new ingest table"]), ("Generation (issue 4)", ["new generation"]),
                 ("Scale-out (issue 6)", ["new scale"])]
    merged = markdown.merged_sections(str(path), generated, {"rounds": lambda: "| fresh |"}, dropped=("Charts",))
    titles = [line for line in merged if line.startswith("## ")]
    assert titles == ["## Ingest (issue 2)", "## Serve (issue 24)", "## Generation (issue 4)", "## Scale-out (issue 6)"]
    assert "old ingest table" not in merged and "new ingest table" in merged
    assert merged[merged.index("<!-- table: rounds -->") + 1] == "| fresh |" and "Prose written by hand." in merged
    assert markdown.hand_header(str(path), report.HEADER_PREFIXES) == ["A note added by hand.", ""]


def test_rendering_the_results_twice_changes_nothing(tmp_path):
    path = tmp_path / "RESULTS.md"
    results = {"meta": {"machine": {"nproc": 2, "cpu": "cpu", "ram_gb": 1, "python": "3.11", "versions": {}},
                        "smoke": False, "date": "today", "total_seconds": 60, "load_start": 1, "load_end": 1}}
    path.write_text("# nextword benchmarks vs the seed notebook's recipe\n\nA note.\n\n## Serve (issue 24)\n\nprose\n")
    report.write_results_md(str(path), results, [])
    first = path.read_text()
    report.write_results_md(str(path), results, [])
    assert path.read_text() == first
    assert first.index("A note.") < first.index("## Serve (issue 24)") < first.index("## Ingest (issue 2)")
