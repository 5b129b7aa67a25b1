"""RESULTS.md's tables, from the figures bench/gather.py gathers out of the results store (bench/store.py)."""

from __future__ import annotations

import math
import os
import re

GB = 1 << 30


def _fmt(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


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
    lines = ["| # | arch | layers | units | emb | dropout | lr | batch | steps | windows/s | held-out top-1 | perplexity | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in sorted(rows, key=lambda row: row["val"]["perplexity"]):
        c = row["candidate"]
        mark = " **(chosen)**" if winner is not None and str(row["index"]) == winner else ""
        lines.append(f"| {row['index']}{mark} | {c['arch']} | {c['layers']} | {c['units']} | {c['embedding_dim']} | "
                     f"{c['dropout']} | {c['learning_rate']:g} | {c['batch_size']} | {row['steps']:,} | "
                     f"{_fmt(row['windows_per_second'])} | {row['val']['top1']:.4f} | {row['val']['perplexity']:.2f} | "
                     f"{row['load_before']} |")
    if five_gram_measured(baseline):
        lines.append(f"| **{baseline['order']}-gram** | {five_gram_label(baseline)} | | | | | | | | | "
                     f"**{baseline['top1']:.4f}** | **{baseline['perplexity']:.2f}** | |")
    else:
        lines += ["", five_gram_missing(baseline)]
    return lines


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


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _layout_disk_lines(layout: dict) -> list[str]:
    rows = {(row["shape"], row["layout"]): row for row in layout["disk"]}
    targets = {"long": 4.0, "verse": 8.0}
    lines = [f"Bytes per window on disk (vocabulary {layout['vocab_size']:,}, context 44, stride 1, spans at 128 windows "
             "per record; Zipf words; no validation split) and ingest windows/s in process (one process ran them all):", "",
             "| corpus shape | corpus | windows | spans B/window | windows B/window | windows / spans | "
             "ingest windows/s spans | ingest windows/s windows | target (spans) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for shape in dict.fromkeys(row["shape"] for row in layout["disk"]):
        spans, windows = rows[(shape, "spans")], rows[(shape, "windows")]
        target = targets.get(shape)
        lines.append(f"| {spans['label']} | {spans['corpus_bytes'] / 1e6:,.1f} MB | {spans['windows']:,} | "
                     f"**{spans['bytes_per_window']:.2f}** | {windows['bytes_per_window']:.1f} | "
                     f"{windows['bytes_per_window'] / spans['bytes_per_window']:.0f}x | {_fmt(spans['windows_per_second'])} | "
                     f"{_fmt(windows['windows_per_second'])} | "
                     + (f"≤ {target:g}: {_mark(spans['bytes_per_window'] <= target)}" if target else "") + " |")
    return lines


def _layout_sweep_lines(sweep: dict) -> list[str]:
    lines = [f"`--windows-per-record` sweep on the {sweep['corpus_bytes'] / 1e6:,.0f} MB Zipf corpus "
             f"({sweep['windows']:,} windows). Reader: objective last, batch 1,024, training order, windows/s median "
             f"of {len(sweep['rows'][0]['reader_windows_per_second_runs'])} rounds (one process per round, order rotated). "
             f"Shuffle grain: the windows of one record are consecutive windows of one document; the reader permutes "
             f"chunks of {sweep['shuffle_buffer']:,} windows = {sweep['shuffle_buffer']:,} / windows-per-record records.", "",
             "| windows per record | B/window | ingest windows/s (in process) | reader windows/s | mean windows per record "
             "| records per shuffle chunk |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in sweep["rows"]:
        mark = " (default)" if row["windows_per_record"] == sweep["current_default"] else ""
        lines.append(f"| {row['windows_per_record']}{mark} | {row['bytes_per_window']:.2f} | "
                     f"{_fmt(row['ingest_windows_per_second'])} | {_fmt(row['reader_windows_per_second'])} | "
                     f"{row['windows_per_record_mean']:.1f} | {row['records_per_shuffle_chunk']:,} |")
    verdict = ("support the current default" if sweep["supported"] == sweep["current_default"]
               else f"do NOT support the current default {sweep['current_default']}")
    lines += ["", f"Rule: among the values whose reader is within 10% of the fastest, the largest (fewest bytes) whose "
                  f"shuffle chunk still holds a record per window of a default batch of 128 (chunk records >= 128: every "
                  f"window of a batch can come from a different record); when none is both, the fastest reader. "
                  f"These figures pick "
                  f"**{sweep['supported']}**: they {verdict}."]
    return lines


def _layout_throughput_lines(throughput: dict) -> list[str]:
    spans, windows, ceiling = throughput["spans"], throughput["windows"], throughput["ceiling"]
    share = throughput["share_of_ceiling"]
    met = spans["windows_per_second"] >= throughput["target_windows_per_second"] or share >= throughput["target_share"]
    label = f"{throughput['big_corpus_bytes'] / 1e6:,.0f} MB"
    return [
        f"Ingest end to end (process start to exit, as the ingest section measures) on the {label} Zipf corpus "
        f"({spans['windows']:,} windows), vocabulary 20,000, all cores:", "",
        "| run | windows/s end to end | seconds | peak RSS (process tree) | B/window |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| `nextword ingest --layout spans` (median of {spans['runs']}) | **{_fmt(spans['windows_per_second'])}** | "
        f"{spans['wall_seconds']:.1f} | {spans['peak_rss_bytes'] / GB:.2f} GB | {spans['bytes_per_window']:.2f} |",
        f"| `nextword ingest --layout windows` (1 run) | {_fmt(windows['windows_per_second'])} | "
        f"{windows['wall_seconds']:.1f} | {windows['peak_rss_bytes'] / GB:.2f} GB | {windows['bytes_per_window']:.1f} |",
        f"| ceiling: pass 1 as is + pass 2's read, tokenize and vocabulary lookup, no windows/encode/write "
        f"(median of {ceiling['runs']}; pass 1 {ceiling['pass1_seconds']:.1f} s, pass 2 {ceiling['pass2_seconds']:.1f} s) | "
        f"{_fmt(ceiling['windows_per_second'])} | {ceiling['wall_seconds']:.1f} | {ceiling['peak_rss_bytes'] / GB:.2f} GB | — |",
        f"| **spans / ceiling** | **{share:.0%}** | | | |",
        "", f"Target ≥ {throughput['target_windows_per_second'] / 1e6:.1f}M windows/s or ≥ {throughput['target_share']:.0%} "
            f"of the ceiling: {_mark(met)}. Spans runs (windows/s): "
            + ", ".join(_fmt(rate) for rate in spans["windows_per_second_runs"])
            + "; ceiling runs (s): " + ", ".join(f"{seconds:.1f}" for seconds in ceiling["wall_seconds_runs"]) + ".",
    ]


def _layout_memory_lines(throughput: dict) -> list[str]:
    memory, target = throughput["memory"], throughput["memory_target_gb"]
    bare = memory["bare_import"]
    rows = [(f"`nextword ingest --layout spans`, {throughput['reader_corpus_bytes'] / 1e6:,.0f} MB Zipf corpus", memory["reader_corpus"]),
            (f"`nextword ingest --layout spans`, {throughput['big_corpus_bytes'] / 1e6:,.0f} MB Zipf corpus (median)", memory["big_corpus"])]
    if "many_words" in memory:
        rows.append((f"`nextword ingest --layout spans`, {memory['many_words_distinct']:,} distinct words "
                     f"({memory['many_words_corpus_bytes'] / 1e6:,.0f} MB, {memory['many_words_windows']:,} windows)",
                     memory["many_words"]))
    lines = ["| peak RSS of the process tree | GB | above the bare import | target |", "| --- | ---: | ---: | --- |",
             f"| `python -c \"import tensorflow, tensorflow_text\"` (median of {len(memory['bare_import_runs'])}) | "
             f"{bare / GB:.2f} | — | |"]
    for label, peak in rows:
        lines.append(f"| {label} | {peak / GB:.2f} | {(peak - bare) / GB:+.2f} | "
                     f"≤ +{target} GB: {_mark((peak - bare) / GB <= target)} |")
    return lines


def _layout_reader_lines(reader: dict, wait: dict | None) -> list[str]:
    ratio_met = reader["ratio"] >= reader["target_ratio"]
    speed_met = reader["spans_windows_per_second"] >= reader["target_windows_per_second"]
    runs = reader["runs"]
    lines = [f"Reader on 2 cores, the same {reader['windows_measured']:,}-window stretch of one corpus ingested both ways: "
             f"`make_dataset(training=True)`, batch {reader['batch_size']:,}, parsed + shuffled + batched, iterated "
             f"from Python; medians of {reader['rounds']} alternating rounds, one process per side per round.", "",
             "| reader | windows/s | per round | target |", "| --- | ---: | --- | --- |",
             f"| windows layout, objective last | {_fmt(reader['windows_windows_per_second'])} | "
             + ", ".join(_fmt(run["windows_per_second"]) for run in runs["windows"]) + " | |",
             f"| spans, objective last | **{_fmt(reader['spans_windows_per_second'])}** | "
             + ", ".join(_fmt(run["windows_per_second"]) for run in runs["spans"])
             + f" | ≥ {reader['target_windows_per_second'] / 1e6:.0f}M: {_mark(speed_met)} |",
             f"| **spans / windows** | **{reader['ratio']:.2f}x** | | ≥ {reader['target_ratio']:g}x: {_mark(ratio_met)} |",
             "", f"Spans, objective all (each token a target once per epoch): **{_fmt(reader['spans_all_tokens_per_second'])} "
                 f"target tokens/s** (sum of weights), {_fmt(reader['spans_all_windows_per_second'])} windows/s."]
    if wait:
        lines += ["", _input_wait_line(wait)]
    return lines


def _input_wait_line(wait: dict) -> str:
    """One input-wait run of bench/train_worker.py wait: the chained feed training uses, and a
    pipeline per epoch (0.1.0's loop, and this version's before the chain) beside it."""
    runs = wait["runs"]
    epochs = wait["epochs"]
    where = (f"{epochs} epochs of ~{wait['steps_per_epoch']:.0f} steps" if wait.get("steps_per_epoch")
             else f"{runs['chained'][0]['steps']} steps of one long epoch")
    both = epochs > 1 and runs.get("per_epoch")
    line = (f"Input wait in the training loop ({wait['data_dir'].rstrip('/').split('/')[-1]}, default recipe, batch "
            f"{wait['batch_size']}, {where}; time in `next()` over step time, measured per step; "
            f"{len(runs['chained'])} rounds{' alternating the two feeds' if both else ''}): "
            + ("epochs chained through one iterator, as `nextword train` reads them, " if both else "")
            + f"**{wait['input_wait_share']:.2%}** (target < {wait['target']:.0%}: "
            f"{_mark(wait['input_wait_share'] < wait['target'])}; rounds "
            + ", ".join(f"{run['wait_share']:.2%}" for run in runs["chained"])
            + f", {wait['windows_per_second']:,.0f} windows/s)")
    if not both:
        return line + "."
    return (line + f"; a new pipeline per epoch (as the loop read before this version) "
            f"{wait['per_epoch_input_wait_share']:.2%} (rounds "
            + ", ".join(f"{run['wait_share']:.2%}" for run in runs["per_epoch"]) + ").")


def layout_lines(layout: dict) -> list[str]:
    throughput = layout["throughput"]
    return (_layout_disk_lines(layout) + [""] + _layout_sweep_lines(layout["sweep"]) + [""]
            + _layout_throughput_lines(throughput) + [""] + _layout_memory_lines(throughput) + [""]
            + _layout_reader_lines(layout["reader"], layout.get("input_wait"))
            + (["", _input_wait_line(layout["input_wait_long_epochs"])] if layout.get("input_wait_long_epochs") else []))


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
                  "44 positions at batch 1,024); after: the final position only, batch sized to 16M logits.", "",
                  "| vocabulary | peak RSS before | peak RSS after | eval s before | eval s after | rounds (peak GiB before / after) |",
                  "| ---: | ---: | ---: | ---: | ---: | --- |"]
        for vocab, row in memory["vocab"].items():
            before, after = row["baseline"], row["this"]
            rounds = ", ".join(f"{b['peak_gib']:.2f} / {a['peak_gib']:.2f}" for b, a in zip(before["rounds"], after["rounds"]))
            lines.append(f"| {int(vocab):,} | {before['median_peak_gib']:.2f} GiB | {after['median_peak_gib']:.2f} GiB | "
                         f"{before['median_eval_seconds']:.1f} | {after['median_eval_seconds']:.1f} | {rounds} |")
        lines.append("")
    for context in hardening.get("context", []):
        model = context["model"]
        lines += [f"**Generation past the context** (`bench/context_bench.py`, {context['date']}): {context['label']}: "
                  f"{model['arch'].upper()} {model['layers']} × {model['units']}, vocabulary {model['vocab_size']:,}; "
                  f"{context['start_points']} start points in {context['documents']} held-out documents; "
                  "perplexity of the word k words past the window, teacher-forced.", "",
                  "| k | carried state | re-read the last 44 words |", "| --- | ---: | ---: |"]
        for carried, reread in zip(context["carried"], context["reread"]):
            lines.append(f"| {carried['from']}–{carried['to']} | {carried['perplexity']:.2f} | {reread['perplexity']:.2f} |")
        lines += [f"| all {context['horizon'] + 1} | {math.exp(context['mean_loss']['carried']):.2f} | "
                  f"{math.exp(context['mean_loss']['reread']):.2f} |", ""]
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
             "Targets/s counts every trained next-word target (objective `all`: 44 per window; `last`: 1).", "",
             "| corpus | arm | budget | model | parameters | steps | windows/s | targets/s | perplexity | top-1 | top-5 | load before |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = arch["quality"]
    baselines = arch.get("baselines") or {}  # corpus -> its 5-gram; absent from results of earlier runs
    corpora = list(dict.fromkeys(row["corpus"] for row in rows.values()))
    missing = []
    for corpus in corpora:
        for row in (row for row in rows.values() if row["corpus"] == corpus):
            model = row["model"]
            shape = (f"{model['layers']} × {model['units']} (heads {model['heads']}, ff {model['ff_dim'] or 4 * model['units']})"
                     if model["arch"] == "transformer" else
                     f"{model['layers']} × {'Bi' if model['bidirectional'] else ''}{model['arch'].upper()} {model['units']}, emb {model['embedding_dim']}")
            lines.append(f"| {row['corpus']} | {row['arm']} | {row['budget_s']:.0f} s | {shape}, dropout {model['dropout']}, "
                         f"{model['objective']} | {row['parameters']:,} | {row['steps']:,} | {row['windows_per_second']:,.0f} | "
                         f"{row['target_tokens_per_second']:,.0f} | {row['perplexity']:.2f} | {row['top1']:.4f} | {row['top5']:.4f} | "
                         f"{row['load_before']} |")
        baseline = baselines.get(corpus)
        if five_gram_measured(baseline):
            lines.append(f"| {corpus} | **{baseline['order']}-gram** | – | {five_gram_label(baseline)} | – | – | – | – | "
                         f"**{baseline['perplexity']:.2f}** | **{baseline['top1']:.4f}** | {_fmt(baseline.get('top5'), 4)} | – |")
        else:
            missing.append(corpus)
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
                  "notebook's loop is `model.predict` on the whole window once per word, on the same model.", "",
                  f"| model | gen 1 × {words} words/s | gen {batch} × {words} words/s | notebook loop words/s | "
                  f"1 × {words} vs notebook loop on the notebook model |", "| --- | ---: | ---: | ---: | ---: |"]
        notebook = speed["rows"]["notebook"]["notebook_loop_words_per_s"]
        for name, row in speed["rows"].items():
            lines.append(f"| {name} | {row['gen_1_words_per_s']:,.0f} | {row['gen_batch_words_per_s']:,.0f} | "
                         f"{row['notebook_loop_words_per_s']:.1f} | ×{row['gen_1_words_per_s'] / notebook:,.0f} |")
    return lines


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
             "favours `word` where many targets are `<unk>` (its share is given).", "",
             "| corpus | round | tokenizer | vocabulary | steps | windows/s | tokens/word | per-token perplexity | "
             "per-word perplexity | top-1 | load before |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    missing = []
    for corpus, row in tokenizer["corpora"].items():
        for run in row["runs"]:
            vocabulary = row["held_out"][run["tokenizer"]]["vocab_size"]
            top1 = f"{run['top1']:.4f}" if run.get("top1") is not None else "—"
            lines.append(f"| {corpus} | {run['round']} | {run['tokenizer']} | {vocabulary:,} | {run['steps']:,} | "
                         f"{run['windows_per_second']:,.0f} | {run['tokens_per_word']:.3f} | {run['perplexity']:.2f} | "
                         f"**{run['word_perplexity']:.2f}** | {top1} | {run['load_before']} |")
        baseline = row.get("five_gram")  # the `word` dataset's; absent from results of earlier runs
        if five_gram_measured(baseline):
            lines.append(f"| {corpus} | – | **{baseline['order']}-gram, `word` dataset only**: "
                         f"{five_gram_label(baseline, 'the `word` train windows')}; no 5-gram of pieces | "
                         f"{_fmt(baseline.get('vocab_size'))} | – | – | 1.000 | {baseline['perplexity']:.2f} | "
                         f"**{baseline['perplexity']:.2f}** | {baseline['top1']:.4f} | – |")
        else:
            missing.append(corpus)
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
    """RESULTS.md at `path`: bench/run's sections from `results`, then the sections written by hand (kept from the
    file, their generated tables filled from `tables`: name -> a function returning markdown), then the charts."""
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
    sections = [
        ("Ingest (issue 2)", lambda s: ingest_table(s), "ingest"),
        ("Reader and training loop (issue 3)", None, "loop"),
        ("Quality at equal budget (issue 3)", lambda s: quality_lines(s), "quality"),
        ("Generation (issue 4)", lambda s: generation_lines(s), "generation"),
        ("Scale-out (issue 6)", lambda s: scale_lines(s), "scale"),
        ("Record layout: spans vs one Example per window", lambda s: layout_lines(s), "layout"),
        ("word vs wordpiece at equal model size and training time (issue 12)", lambda s: tokenizer_lines(s), "tokenizer"),
    ]
    for title, render, key in sections:
        out += [f"## {title}", ""]
        if key == "loop":
            if "error" in results.get("reader", {}) or "error" in results.get("loop", {}):
                out += [f"error: {results.get('reader', {}).get('error') or results['loop']['error']}"]
            else:
                out += loop_lines(results.get("loop"), results.get("reader"))
        elif "error" in results.get(key, {}):
            out += [f"error: {results[key]['error']}"]
        elif key in results:
            out += render(results[key])
        out.append("")
    out += ["## Choosing the default recipe", ""] + tune_lines(results.get("tune")) + [""]
    out += ["## Transformer vs LSTM (issue 11)", ""] + arch_lines(results.get("arch")) + [""]
    out += ["## Hardening (issue 10): validation memory, generation past the context", ""]
    out += hardening_lines(results.get("hardening")) + [""]
    written = {line[3:] for line in out if line.startswith("## ")} | {"Charts", RECIPE_TITLE}
    out += fill_generated_tables(kept_sections(path, written), tables or {})
    out += ["## Charts", ""] + [f"![{os.path.basename(chart)}](charts/{os.path.basename(chart)})" for chart in charts] + [""]
    with open(path, "w") as handle:
        handle.write("\n".join(out))


# bench/run appended bench/recipe_bench.py's report under this title before the recipe section generated it
# (`<!-- table: recipe -->`): a rerun drops such a section.
RECIPE_TITLE = "Recipe by measurement and the 5-gram (bench/recipe_bench.py)"
TABLE_START = re.compile(r"<!-- table: (\S+) -->")
TABLE_END = "<!-- end table -->"


def fill_generated_tables(lines: list[str], tables: dict) -> list[str]:
    """A hand-written section's generated tables, rendered anew: the lines between `<!-- table: NAME -->` and
    `<!-- end table -->` are replaced by tables[NAME]() (markdown), so prose stays as written and figures come from
    the results store. A marker without its end, or a name no benchmark renders, is refused before anything is lost."""
    out, index = [], 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        started = TABLE_START.fullmatch(line.strip())
        if not started:
            continue
        name = started.group(1)
        try:
            end = next(at for at in range(index, len(lines)) if lines[at].strip() == TABLE_END)
        except StopIteration:
            raise ValueError(f"RESULTS.md: `{line.strip()}` has no `{TABLE_END}` after it: add it where the table "
                             "ends (everything between the two is generated)") from None
        if name not in tables:
            raise ValueError(f"RESULTS.md: no benchmark renders a table named {name!r} (`{line.strip()}`); "
                             f"known: {', '.join(sorted(tables)) or 'none'}")
        out += tables[name]().strip("\n").splitlines()
        index = end  # the end marker is copied next
    return out


def kept_sections(path: str, written: set[str]) -> list[str]:
    """The `## ` sections of the RESULTS.md at `path` that this report does not write (written by hand
    from a benchmark of their own: serve, dedup, precision, ...), as they are, in their order: a rerun of
    bench/run must not drop them."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        lines = handle.read().splitlines()
    kept, keeping = [], False
    for line in lines:
        if line.startswith("## "):
            keeping = line[3:] not in written
        if keeping:
            kept.append(line)
    return kept + ([""] if kept and kept[-1] else [])
