"""RESULTS.md's tables, from the figures bench/gather.py gathers out of the results store (bench/store.py)."""

from __future__ import annotations

import math
import os

from markdown import Column, hand_header, merged_sections, table
from markdown import number as _fmt
from report_layout import layout_lines

GB = 1 << 30


def five_gram_measured(baseline: dict | None) -> bool:
    """Whether a stored 5-gram entry (bench/arms.py `five_gram`) holds figures."""
    return bool(baseline) and "error" not in baseline and "perplexity" in baseline


def five_gram_label(baseline: dict, train: str = "the same train windows") -> str:
    """What the 5-gram row of a quality table is: model, where its figures come from, what it counted."""
    windows = f" {baseline['windows']:,}" if baseline.get("windows") is not None else ""
    return (f"interpolated modified Kneser-Ney (`bench/kneser_ney.py`), counted on {train} "
            f"({baseline['train_events']:,}), scored on the same{windows} val windows")


def five_gram_missing(baseline: dict | None, where: str = "") -> str:
    """The line under a quality table whose results JSON has no 5-gram figures (older runs: none stored;
    a failed count: its error). Nothing is recounted here: the data of that run may be gone."""
    error = " ".join(str(baseline["error"]).split())[-300:] if baseline and "error" in baseline else ""
    why = f" (counting it failed: {error})" if error else ""
    return f"5-gram{f' ({where})' if where else ''}: not measured in this run{why}."


def ratio_to(value: float | None, baseline: dict, key: str) -> str:
    """×value / the 5-gram's, for a ratio cell or line ("–" when the arm has no such figure)."""
    return "–" if value is None or not baseline.get(key) else f"×{value / baseline[key]:.3f}"


def ingest_table(section: dict) -> list[str]:
    lines = ["| corpus | recipe | windows | windows/s (end to end) | peak RSS (process tree) | bytes/window on disk |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in section["corpora"]:
        ours, notebook = row["nextword"], row["notebook"]
        label = f"{row['bytes'] / 1e6:,.0f} MB"
        lines.append(f"| {label} | nextword ingest (median of {ours['runs']}) | {ours['windows']:,} | "
                     f"{_fmt(ours['windows_per_second'])} | {ours['peak_rss_bytes'] / GB:.2f} GB | {ours['bytes_per_window']:.1f} |")
        if notebook["out_of_memory"]:
            lines.append(f"| {label} | notebook (pandas + Tokenizer + all windows + pad_sequences) | — | "
                         f"ran out of memory at {notebook['killed_at_bytes'] / GB:.1f} GB after {notebook['wall_seconds']:.0f} s "
                         f"(killed at the {notebook['cap_bytes'] / GB:.1f} GB cap) | ≥ {notebook['peak_rss_bytes'] / GB:.1f} GB | — |")
        else:
            lines.append(f"| {label} | notebook (pandas + Tokenizer + all windows + pad_sequences) | {notebook['windows']:,} | "
                         f"{_fmt(notebook['windows_per_second'])} | {notebook['peak_rss_bytes'] / GB:.2f} GB | "
                         f"{notebook['bytes_per_window']:.1f} (its CSV; {notebook['array_bytes_per_window']:.0f} in RAM) |")
            lines.append(f"| {label} | **ratio nextword / notebook** | | "
                         f"**{ours['windows_per_second'] / notebook['windows_per_second']:.1f}x** | "
                         f"**{ours['peak_rss_bytes'] / notebook['peak_rss_bytes']:.2f}x** | "
                         f"{ours['bytes_per_window'] / notebook['bytes_per_window']:.2f}x |")
    return lines


def loop_lines(loop: dict, reader: dict | None) -> list[str]:
    lines = []
    if reader:
        lines += [
            f"| reader ({reader['windows']:,} windows of the first ingest corpus, {reader['shards']} shards, "
            f"batch {reader['batch_size']:,}, median of {len(reader['reader_windows_per_second_runs'])}) | windows/s |",
            "| --- | ---: |",
            f"| raw `TFRecordDataset(files).batch(1024)` ceiling | {_fmt(reader['raw_windows_per_second'])} |",
            f"| `tfrecords.reader.make_dataset` (files in turn, chunks parsed and permuted whole, batches, prefetch) | "
            f"{_fmt(reader['reader_windows_per_second'])} ({reader['share_of_ceiling']:.0%} of the ceiling) |",
            "",
        ]
    if loop:
        ours, fit, default = loop["ours"], loop["fit"], loop["default_recipe"]
        lines += [
            "| training loop, the notebook's network (3 x BiLSTM 50), batch 512 | windows/s |",
            "| --- | ---: |",
            f"| notebook: `model.fit` on numpy arrays, one-hot targets | {_fmt(fit['windows_per_second'])} |",
            f"| nextword: `model.loop.Trainer` fed by the tf.data reader | {_fmt(ours['windows_per_second'])} |",
            f"| **ratio** (target ≥ {loop['target_ratio']}x) | **{loop['ratio']:.2f}x** |",
            "",
            "Medians of alternating rounds, one process per side per round; per round, ours "
            + ", ".join(_fmt(rate) for rate in ours.get("windows_per_second_runs", []))
            + "; fit " + ", ".join(_fmt(rate) for rate in fit.get("windows_per_second_runs", []))
            + ". `model.fit`'s speed is bimodal between processes on this shared VM (~2,200 or ~1,200 windows/s, "
            "same code): a single pair of runs can show anything from 1.0x to 2.0x.",
            "",
            f"Share of training step time waiting on input (reader-fed vs the same steps on batches already in memory; "
            f"target < 5%): notebook network {ours['input_wait_share']:.1%}, default recipe "
            f"(batch {default['batch_size']}, {default['windows_per_second']:,.0f} windows/s) {default['input_wait_share']:.1%}.",
        ]
        if "utilisation" in default:  # results written before 0.3 have no FLOP figures
            lines += ["", "Utilisation of the float32 matmul peak (model/flops.py: matmul FLOPs a training window × "
                          "windows/s ÷ the calibrated peak, " + default["peak_source"] + "): " + "; ".join(
                              f"{name} {row['training_flops_per_window'] / 1e6:,.1f} MFLOP a window, "
                              f"{row['utilisation']:.0%}" for name, row in (("notebook network", ours), ("default recipe", default))
                              if "utilisation" in row) + "."]
    return lines


def quality_lines(quality: dict) -> list[str]:
    rows = quality["rows"]
    lines = [f"Embedded corpus (Python's documentation topics), 500-word vocabulary, 10% of documents held out, "
             f"{quality['budget_seconds']:.0f} s of training each on this machine.", "",
             "| recipe | model | batch, optimizer, lr | steps | held-out top-1 | held-out perplexity |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for name, row in rows.items():
        model = row["model"]
        shape = (f"{model['layers']} x {'Bi' if model['bidirectional'] else ''}{model['arch'].upper()} {model['units']}, "
                 f"emb {model['embedding_dim']}, dropout {model['dropout']}, objective {model['objective']}")
        lines.append(f"| {'--preset notebook' if name == 'notebook' else 'nextword default'} | {shape} | "
                     f"{row['batch_size']}, {row['optimizer']}, {row['learning_rate']:g} | {row['steps']:,} | "
                     f"{row['val']['top1']:.4f} | {row['val']['perplexity']:.2f} |")
    baseline = quality.get("baseline")  # absent from results of earlier runs; {"error": ...} when it failed
    measured = five_gram_measured(baseline)
    if measured:
        lines.append(f"| {baseline['order']}-gram baseline (`bench/kneser_ney.py`) | {five_gram_label(baseline)} | — | "
                     f"{baseline['seconds']:.0f} s to read, count and score | {baseline['top1']:.4f} | {baseline['perplexity']:.2f} |")
    reference = quality["reference"]
    lines.append(f"| **ratio default / notebook** | | | | **{quality['accuracy_ratio']:.2f}x** | "
                 f"**{quality['perplexity_ratio']:.3f}x** (1/{1 / quality['perplexity_ratio']:.1f}) |")
    ratios = (quality.get("vs_baseline") or {}) if measured else {}
    for name, ratio in ratios.items():
        lines.append(f"| **ratio {name} / {baseline['order']}-gram** | | | | **{ratio['accuracy_ratio']:.2f}x** | "
                     f"**{ratio['perplexity_ratio']:.3f}x** |")
    if not measured:
        lines += ["", five_gram_missing(baseline)]
    lines += ["", f"Reference to beat ({reference['note']}): {reference['accuracy_ratio']}x the accuracy, "
              f"{reference['perplexity_ratio']}x the perplexity."]
    return lines


def _tune_table(rows: list[dict], winner: str | None, baseline: dict | None) -> list[str]:
    def candidate(header: str, key: str, show=str) -> Column:
        return Column(header, lambda row: show(row["candidate"][key]), numeric=key != "arch")

    columns = [Column("#", lambda row: f"{row['index']}" + (" **(chosen)**" if winner is not None and str(row["index"]) == winner else "")),
               candidate("arch", "arch"), candidate("layers", "layers"), candidate("units", "units"),
               candidate("emb", "embedding_dim"), candidate("dropout", "dropout"),
               candidate("lr", "learning_rate", lambda value: f"{value:g}"), candidate("batch", "batch_size"),
               Column("steps", lambda row: f"{row['steps']:,}", True),
               Column("windows/s", lambda row: _fmt(row["windows_per_second"]), True),
               Column("held-out top-1", lambda row: f"{row['val']['top1']:.4f}", True),
               Column("perplexity", lambda row: f"{row['val']['perplexity']:.2f}", True),
               Column("load", lambda row: row["load_before"])]
    ranked = sorted(rows, key=lambda row: row["val"]["perplexity"])
    if not five_gram_measured(baseline):
        return table(columns, ranked) + ["", five_gram_missing(baseline)]
    return table(columns, [*ranked, [f"**{baseline['order']}-gram**", five_gram_label(baseline), *[""] * 8,
                                     f"**{baseline['top1']:.4f}**", f"**{baseline['perplexity']:.2f}**", ""]])


def tune_lines(tune: dict | None) -> list[str]:
    if not tune:
        return ["The results store (bench/results.json) holds no `tune` run: run `python bench/tune_defaults.py`."]
    final_rows = tune.get("final_rows") or []
    winner = str(tune["winner"])
    lines = [f"`bench/tune_defaults.py`, {tune['date']}. Rule: {tune['rule']}. Objective `all`, adam, every candidate "
             "in its own `nextword train` process; load average before each run in the last column (shared machine).", "",
             f"Stage 1: {tune['budget_seconds']:.0f} s of training per candidate.", ""]
    baseline = tune.get("baseline")  # the 5-gram of the same dataset; absent from results of earlier runs
    lines += _tune_table(tune["rows"], None if final_rows else winner, baseline)
    if final_rows:
        lines += ["", f"Stage 2: the best stage-1 candidates, as-is and with +0.2 dropout, "
                      f"{tune['final_budget_seconds']:.0f} s each (the quality benchmark's budget).", ""]
        lines += _tune_table(final_rows, winner, baseline)
    return lines


def generation_lines(gen: dict) -> list[str]:
    words, batch = gen["words"], gen["batch"]
    return [
        "| generation (the quality section's default-recipe export) | words/s | ratio | target |",
        "| --- | ---: | ---: | ---: |",
        f"| notebook loop (`model.predict` on the padded window per word) | {gen['notebook_words_per_s']:,.1f} | 1x | |",
        f"| `gen`, 1 sample x {words} words | {gen[f'gen_1x{words}_words_per_s']:,.0f} | "
        f"**{gen['speedup_1_sample']:,.0f}x** | ≥ 100x |",
        f"| `gen`, {batch} samples x {words} words in one call | {gen[f'gen_{batch}x{words}_words_per_s']:,.0f} | "
        f"**{gen[f'speedup_{batch}_samples']:,.0f}x** | ≥ 1,000x |",
        "", f"Time from launching `gen` to its first word on stdout: {gen['time_to_first_word_s']:.2f} s.",
    ]


def scale_lines(scale: dict | None) -> list[str]:
    if not scale or "skipped" in scale:
        reason = (scale or {}).get("skipped", "not run")
        return [f"Not measured: {reason}. Hook: bench/train_bench.py `scale_section` calls "
                "`bench/scale_bench.py` `benchmark_beam_ingest(corpus_path)` and `benchmark_workers(data_dir)` "
                "when that file exists."]
    lines = []
    beam = scale.get("benchmark_beam_ingest", {})
    if "error" in beam:
        lines += [f"Beam ingest: error: {beam['error']}", ""]
    elif beam:
        local, direct = beam["local"], beam["beam_directrunner"]
        lines += [f"| ingest, {beam['corpus_mb']} MB corpus ({beam['windows']:,} windows) | windows/s | peak RSS |",
                  "| --- | ---: | ---: |",
                  f"| local `nextword ingest` | {local['windows_per_second']:,} | {local['peak_rss_mb_max']:,.0f} MB |",
                  f"| `--runner beam` (DirectRunner, {beam['workers']} workers) | {direct['windows_per_second']:,} | "
                  f"{direct['peak_rss_mb_max']:,.0f} MB |",
                  f"| **Beam time / local time** | **{beam['beam_over_local_time']}x** | |", "",
                  f"Same dataset byte for byte: {beam['identical_manifest']}. {beam['note']}.", ""]
    workers = scale.get("benchmark_workers", {})
    if "error" in workers:
        lines += [f"Workers: error: {workers['error']}"]
    elif workers:
        single = workers["single_process"]["steady_windows_per_second"]
        lines += [f"| training ({workers['model']}, global batch {workers['global_batch']}, {workers['steps']} steps) | "
                  "steady windows/s | vs one process |", "| --- | ---: | ---: |"]
        for label in ("single_process", "1_worker", "2_workers"):
            row = workers[label]
            lines.append(f"| {label.replace('_', ' ')} ({row['strategy']}, {row['replicas']} replica(s)) | "
                         f"{row['steady_windows_per_second']:,} | {row['steady_windows_per_second'] / single:.2f}x |")
        lines += ["", f"{workers['note']}."]
    return lines


def hardening_lines(hardening: dict | None) -> list[str]:
    if not hardening:
        return ["The results store (bench/results.json) holds no `eval_memory` or `context` run: run "
                "`python bench/eval_memory.py` and `python bench/context_bench.py`."]
    lines = []
    memory = hardening.get("eval_memory")
    if memory:
        lines += [f"**Validation and eval memory** (`bench/eval_memory.py`, {memory['date']}; {memory['versions']}): "
                  "`nextword eval` of an objective-`all` model (LSTM 32) on a val split of a few thousand windows, each "
                  "run in its own process, trees alternating over rounds; peak RSS includes the "
                  f"{memory['bare_import_gib']:.2f} GiB of importing TensorFlow. Before: the code before this change (logits for all "
                  "44 positions at batch 1,024); after: the final position only, batch sized to 16M logits.", ""]
        columns = [Column("vocabulary", lambda item: f"{int(item[0]):,}", True),
                   Column("peak RSS before", lambda item: f"{item[1]['baseline']['median_peak_gib']:.2f} GiB", True),
                   Column("peak RSS after", lambda item: f"{item[1]['this']['median_peak_gib']:.2f} GiB", True),
                   Column("eval s before", lambda item: f"{item[1]['baseline']['median_eval_seconds']:.1f}", True),
                   Column("eval s after", lambda item: f"{item[1]['this']['median_eval_seconds']:.1f}", True),
                   Column("rounds (peak GiB before / after)", lambda item: ", ".join(
                       f"{b['peak_gib']:.2f} / {a['peak_gib']:.2f}"
                       for b, a in zip(item[1]["baseline"]["rounds"], item[1]["this"]["rounds"])))]
        lines += table(columns, [(vocab, row) for vocab, row in memory["vocab"].items()])
        lines.append("")
    for context in hardening.get("context", []):
        model = context["model"]
        lines += [f"**Generation past the context** (`bench/context_bench.py`, {context['date']}): {context['label']}: "
                  f"{model['arch'].upper()} {model['layers']} × {model['units']}, vocabulary {model['vocab_size']:,}; "
                  f"{context['start_points']} start points in {context['documents']} held-out documents; "
                  "perplexity of the word k words past the window, teacher-forced.", ""]
        columns = [Column("k", lambda pair: f"{pair[0]['from']}–{pair[0]['to']}"),
                   Column("carried state", lambda pair: f"{pair[0]['perplexity']:.2f}", True),
                   Column("re-read the last 44 words", lambda pair: f"{pair[1]['perplexity']:.2f}", True)]
        everything = [f"all {context['horizon'] + 1}", *(f"{math.exp(context['mean_loss'][way]):.2f}" for way in ("carried", "reread"))]
        lines += table(columns, [*zip(context["carried"], context["reread"]), everything]) + [""]
    return lines


def arch_lines(arch: dict | None) -> list[str]:
    """bench/arch_bench.py's runs (gather.arch): transformer vs LSTM vs the notebook preset."""
    if not arch or "quality" not in arch:
        return ["The results store (bench/results.json) holds no `arch` run: run `python bench/arch_bench.py quality` "
                "and `... speed`."]
    lines = [f"**Held-out quality at equal training time** (`bench/arch_bench.py quality`, {arch['quality_date']}): each "
             "arm trains in its own `nextword train` process for the same seconds of training (`--time-budget`), then "
             "`nextword eval` scores the window's final word on the held-out 10% of documents. Corpora: the embedded "
             "corpus (vocabulary 500) and this machine's Vim help files (151 documents, 1.29M words, vocabulary 5,000). "
             "Targets/s counts every trained next-word target (objective `all`: 44 per window; `last`: 1).", ""]
    rows = arch["quality"]
    baselines = arch.get("baselines") or {}  # corpus -> its 5-gram; absent from results of earlier runs
    corpora = list(dict.fromkeys(row["corpus"] for row in rows.values()))
    columns = [Column("corpus", lambda row: row["corpus"]), Column("arm", lambda row: row["arm"]),
               Column("budget", lambda row: f"{row['budget_s']:.0f} s", True),
               Column("model", lambda row: f"{_shape(row['model'])}, dropout {row['model']['dropout']}, {row['model']['objective']}"),
               Column("parameters", lambda row: f"{row['parameters']:,}", True), Column("steps", lambda row: f"{row['steps']:,}", True),
               Column("windows/s", lambda row: f"{row['windows_per_second']:,.0f}", True),
               Column("targets/s", lambda row: f"{row['target_tokens_per_second']:,.0f}", True),
               Column("perplexity", lambda row: f"{row['perplexity']:.2f}", True), Column("top-1", lambda row: f"{row['top1']:.4f}", True),
               Column("top-5", lambda row: f"{row['top5']:.4f}", True), Column("load before", lambda row: row["load_before"])]
    listed, missing = [], []
    for corpus in corpora:
        listed += [row for row in rows.values() if row["corpus"] == corpus]
        baseline = baselines.get(corpus)
        if five_gram_measured(baseline):
            listed.append([corpus, f"**{baseline['order']}-gram**", "–", five_gram_label(baseline), "–", "–", "–", "–",
                           f"**{baseline['perplexity']:.2f}**", f"**{baseline['top1']:.4f}**", _fmt(baseline.get("top5"), 4), "–"])
        else:
            missing.append(corpus)
    lines += table(columns, listed)
    lines.append("")
    if missing:
        lines += [five_gram_missing(baselines.get(missing[0]) if len(missing) == 1 else None, ", ".join(missing)), ""]
    for corpus in sorted({row["corpus"] for row in rows.values()}):
        pick = {row["arm"]: row for row in rows.values() if row["corpus"] == corpus and row["budget_s"] == 180}
        if {"notebook", "lstm", "transformer"} <= set(pick):
            ours, notebook, lstm = pick["transformer"], pick["notebook"], pick["lstm"]
            lines.append(f"- {corpus}, 180 s: transformer vs the notebook preset: top-1 ×{ours['top1'] / notebook['top1']:.2f} "
                         f"(target ≥ ×1.5), perplexity ×{ours['perplexity'] / notebook['perplexity']:.3f} (target ≤ ×0.333); "
                         f"vs the LSTM recipe: top-1 ×{ours['top1'] / lstm['top1']:.2f}, perplexity "
                         f"×{ours['perplexity'] / lstm['perplexity']:.3f}.")
    for corpus in corpora:
        baseline = baselines.get(corpus)
        if not five_gram_measured(baseline):
            continue
        against = [row for row in rows.values() if row["corpus"] == corpus]
        lines.append(f"- {corpus}, each arm / the {baseline['order']}-gram (perplexity {baseline['perplexity']:.2f}, top-1 "
                     f"{baseline['top1']:.4f}): " + "; ".join(
                         f"{row['arm']} {row['budget_s']:.0f} s perplexity {ratio_to(row['perplexity'], baseline, 'perplexity')}, "
                         f"top-1 {ratio_to(row['top1'], baseline, 'top1')}" for row in against)
                     + _fingerprint_note(against, baseline) + ".")
    speed = arch.get("speed")
    if speed:
        words, batch = speed["words"], speed["batch"]
        lines += ["", f"**Generation speed** (`bench/arch_bench.py speed`, {arch['speed_date']}): one process, random-weight "
                  f"exports (vocabulary 506, context 44), {words} words per sample, median of {speed['repeats']} rounds; the "
                  "notebook's loop is `model.predict` on the whole window once per word, on the same model.", ""]
        notebook = speed["rows"]["notebook"]["notebook_loop_words_per_s"]
        columns = [Column("model", lambda item: item[0]),
                   Column(f"gen 1 × {words} words/s", lambda item: f"{item[1]['gen_1_words_per_s']:,.0f}", True),
                   Column(f"gen {batch} × {words} words/s", lambda item: f"{item[1]['gen_batch_words_per_s']:,.0f}", True),
                   Column("notebook loop words/s", lambda item: f"{item[1]['notebook_loop_words_per_s']:.1f}", True),
                   Column(f"1 × {words} vs notebook loop on the notebook model",
                          lambda item: f"×{item[1]['gen_1_words_per_s'] / notebook:,.0f}", True)]
        lines += table(columns, speed["rows"].items())
    return lines


def _shape(model: dict) -> str:
    """A model's shape as the arch table names it: "2 × 128 (heads 4, ff 512)" or "1 × LSTM 256, emb 128"."""
    if model["arch"] == "transformer":
        return f"{model['layers']} × {model['units']} (heads {model['heads']}, ff {model['ff_dim'] or 4 * model['units']})"
    return f"{model['layers']} × {'Bi' if model['bidirectional'] else ''}{model['arch'].upper()} {model['units']}, emb {model['embedding_dim']}"


def _fingerprint_note(rows: list[dict], baseline: dict) -> str:
    """A warning when rows record a dataset fingerprint other than the 5-gram's (trained on other data)."""
    other = [row for row in rows if row.get("dataset_fingerprint") not in (None, baseline.get("dataset_fingerprint"))]
    return (f" (**not comparable** for {', '.join(row['arm'] for row in other)}: trained on a dataset of another "
            "fingerprint than the 5-gram's)") if other else ""


def tokenizer_lines(tokenizer: dict) -> list[str]:
    """bench/run's tokenizer section (bench/tokenizer_bench.py): word vs wordpiece at equal size and time."""
    measured = f"Measured {tokenizer['date']} by {tokenizer['how']}. " if tokenizer.get("date") else ""
    lines = [f"{measured}Each corpus ingested twice with the same `--vocab-size` (so both models have the same parameters): "
             f"`--tokenizer word` and `--tokenizer wordpiece`; the default recipe (`{' '.join(tokenizer['model'])}`) "
             f"trains {tokenizer['budget_s']:.0f} s in its own process, {tokenizer['rounds']} round(s) per side (A B, "
             "then B A), then `nextword eval` scores every held-out window (the same held-out documents on both "
             "sides). **Per-word perplexity** = exp(total NLL / held-out words) decides; per-token perplexity is "
             "per word for `word`, per piece for `wordpiece`. A word model scores every word outside its "
             "vocabulary as one cheap `<unk>` class, which a wordpiece model has to spell out, so the comparison "
             "favours `word` where many targets are `<unk>` (its share is given).", ""]
    columns = [Column("corpus", lambda run: run["corpus"]), Column("round", lambda run: f"{run['round']}", True),
               Column("tokenizer", lambda run: run["tokenizer"]), Column("vocabulary", lambda run: f"{run['vocabulary']:,}", True),
               Column("steps", lambda run: f"{run['steps']:,}", True),
               Column("windows/s", lambda run: f"{run['windows_per_second']:,.0f}", True),
               Column("tokens/word", lambda run: f"{run['tokens_per_word']:.3f}", True),
               Column("per-token perplexity", lambda run: f"{run['perplexity']:.2f}", True),
               Column("per-word perplexity", lambda run: f"**{run['word_perplexity']:.2f}**", True),
               Column("top-1", lambda run: f"{run['top1']:.4f}" if run.get("top1") is not None else "—", True),
               Column("load before", lambda run: run["load_before"])]
    listed, missing = [], []
    for corpus, row in tokenizer["corpora"].items():
        listed += [{**run, "corpus": corpus, "vocabulary": row["held_out"][run["tokenizer"]]["vocab_size"]} for run in row["runs"]]
        baseline = row.get("five_gram")  # the `word` dataset's; absent from results of earlier runs
        if five_gram_measured(baseline):
            listed.append([corpus, "–", f"**{baseline['order']}-gram, `word` dataset only**: "
                           f"{five_gram_label(baseline, 'the `word` train windows')}; no 5-gram of pieces",
                           _fmt(baseline.get("vocab_size")), "–", "–", "1.000", f"{baseline['perplexity']:.2f}",
                           f"**{baseline['perplexity']:.2f}**", f"{baseline['top1']:.4f}", "–"])
        else:
            missing.append(corpus)
    lines += table(columns, listed)
    lines.append("")
    if missing:
        only = tokenizer["corpora"][missing[0]].get("five_gram") if len(missing) == 1 else None
        lines += [five_gram_missing(only, ", ".join(missing) + "; it applies to the `word` datasets only"), ""]
    for corpus, row in tokenizer["corpora"].items():
        word, pieces = row["median"]["word"], row["median"]["wordpiece"]
        held_out = row["held_out"]["word"]
        better = "wordpiece" if row["ratio"] < 1 else "word"
        baseline = row.get("five_gram")
        against = (f"; the 5-gram of the `word` dataset {baseline['perplexity']:.2f}: word / 5-gram "
                   f"{ratio_to(word['word_perplexity'], baseline, 'perplexity')} (wordpiece has no 5-gram to compare with)"
                   if five_gram_measured(baseline) else "")
        lines.append(f"- {corpus} (held out: {held_out['documents']:,} documents, {held_out['words']:,} words; `word` "
                     f"turns {row['held_out']['word']['unk_share']:.1%} of the corpus's tokens into `<unk>`, `wordpiece` "
                     f"{row['held_out']['wordpiece']['unk_share']:.2%}): median per-word perplexity word "
                     f"{word['word_perplexity']:.2f}, wordpiece {pieces['word_perplexity']:.2f} (×{row['ratio']:.3f}: "
                     f"**{better}** is better){against}; wordpiece trains "
                     f"{pieces['windows_per_second'] / word['windows_per_second']:.2f}× "
                     f"the windows/s at {pieces['tokens_per_word']:.2f} pieces a word.")
    if tokenizer.get("skipped"):
        lines.append(f"- skipped: {tokenizer['skipped']}")
    return lines


def write_results_md(path: str, results: dict, charts: list[str], tables: dict | None = None) -> None:
    """RESULTS.md at `path`: bench/run's sections from `results` and the sections written by hand (kept from the
    file, their generated tables filled from `tables`: name -> a function returning markdown), in the file's order,
    then the charts. Header lines added by hand are kept (`HEADER_PREFIXES` are the generated ones)."""
    meta = results["meta"]
    machine = meta["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    out = [
        "# nextword benchmarks vs the seed notebook's recipe", "",
        f"Generated by `bench/run{' --smoke' if meta['smoke'] else ''}` on {meta['date']} in {meta['total_seconds'] / 60:.1f} min"
        + (f" (sections {', '.join(meta['rerun_sections'])} rerun then; the others from the run of {meta['first_run']})."
           if meta.get("rerun_sections") else "."),
        f"Machine: {machine['nproc']} cores (`nproc`), {machine['cpu']}, {machine['ram_gb']} GB RAM, no GPU; "
        f"Python {machine['python']}; {versions}.",
        f"Load average (1, 5, 15 min) at start: {meta['load_start']}; at end: {meta['load_end']}. The machine is shared "
        "with other work, so absolute figures are noisy; every comparison is a ratio measured in the same run.", "",
    ]
    out += hand_header(path, HEADER_PREFIXES)
    sections = [
        ("Ingest (issue 2)", lambda s: ingest_table(s), "ingest"),
        ("Reader and training loop (issue 3)", None, "loop"),
        ("Quality at equal budget (issue 3)", lambda s: quality_lines(s), "quality"),
        ("Generation (issue 4)", lambda s: generation_lines(s), "generation"),
        ("Scale-out (issue 6)", lambda s: scale_lines(s), "scale"),
        ("Record layout: spans vs one Example per window", lambda s: layout_lines(s), "layout"),
        ("word vs wordpiece at equal model size and training time (issue 12)", lambda s: tokenizer_lines(s), "tokenizer"),
    ]
    generated = []
    for title, render, key in sections:
        if key == "loop":
            if "error" in results.get("reader", {}) or "error" in results.get("loop", {}):
                lines = [f"error: {results.get('reader', {}).get('error') or results['loop']['error']}"]
            else:
                lines = loop_lines(results.get("loop"), results.get("reader"))
        elif "error" in results.get(key, {}):
            lines = [f"error: {results[key]['error']}"]
        else:
            lines = render(results[key]) if key in results else []
        generated.append((title, lines))
    generated += [("Choosing the default recipe", tune_lines(results.get("tune"))),
                  ("Transformer vs LSTM (issue 11)", arch_lines(results.get("arch"))),
                  ("Hardening (issue 10): validation memory, generation past the context",
                   hardening_lines(results.get("hardening")))]
    out += merged_sections(path, generated, tables or {}, dropped=("Charts", RECIPE_TITLE))
    out += ["## Charts", ""] + [f"![{os.path.basename(chart)}](charts/{os.path.basename(chart)})" for chart in charts] + [""]
    with open(path, "w") as handle:
        handle.write("\n".join(out))


# The lines of the header bench/run writes; any other line there was added by hand and is kept.
HEADER_PREFIXES = ("# nextword benchmarks", "Generated by `bench/run", "Machine: ", "Load average (1, 5, 15 min)")

# bench/run appended bench/recipe_bench.py's report under this title before the recipe section generated it
# (`<!-- table: recipe -->`): a rerun drops such a section.
RECIPE_TITLE = "Recipe by measurement and the 5-gram (bench/recipe_bench.py)"
