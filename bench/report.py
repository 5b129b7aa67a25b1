"""RESULTS.md and the PNG charts, from the dict of figures bench/run collected."""

from __future__ import annotations

import os

GB = 1 << 30


def _fmt(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


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
    reference = quality["reference"]
    lines += [f"| **ratio default / notebook** | | | | **{quality['accuracy_ratio']:.2f}x** | "
              f"**{quality['perplexity_ratio']:.3f}x** (1/{1 / quality['perplexity_ratio']:.1f}) |",
              "", f"Reference to beat ({reference['note']}): {reference['accuracy_ratio']}x the accuracy, "
              f"{reference['perplexity_ratio']}x the perplexity."]
    return lines


def _tune_table(rows: list[dict], winner: str | None) -> list[str]:
    lines = ["| # | arch | layers | units | emb | dropout | lr | batch | steps | windows/s | held-out top-1 | perplexity | load |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in sorted(rows, key=lambda row: row["val"]["perplexity"]):
        c = row["candidate"]
        mark = " **(chosen)**" if winner is not None and str(row["index"]) == winner else ""
        lines.append(f"| {row['index']}{mark} | {c['arch']} | {c['layers']} | {c['units']} | {c['embedding_dim']} | "
                     f"{c['dropout']} | {c['learning_rate']:g} | {c['batch_size']} | {row['steps']:,} | "
                     f"{_fmt(row['windows_per_second'])} | {row['val']['top1']:.4f} | {row['val']['perplexity']:.2f} | "
                     f"{row['load_before']} |")
    return lines


def tune_lines(tune: dict | None) -> list[str]:
    if not tune:
        return ["bench/tune_results.json is missing: run `python bench/tune_defaults.py`."]
    final_rows = tune.get("final_rows") or []
    winner = str(tune["winner"])
    lines = [f"`bench/tune_defaults.py`, {tune['date']}. Rule: {tune['rule']}. Objective `all`, adam, every candidate "
             "in its own `nextword train` process; load average before each run in the last column (shared machine).", "",
             f"Stage 1: {tune['budget_seconds']:.0f} s of training per candidate.", ""]
    lines += _tune_table(tune["rows"], None if final_rows else winner)
    if final_rows:
        lines += ["", f"Stage 2: the best stage-1 candidates, as-is and with +0.2 dropout, "
                      f"{tune['final_budget_seconds']:.0f} s each (the quality benchmark's budget).", ""]
        lines += _tune_table(final_rows, winner)
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


def write_results_md(path: str, results: dict, charts: list[str]) -> None:
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
    out += ["## Charts", ""] + [f"![{os.path.basename(chart)}](charts/{os.path.basename(chart)})" for chart in charts] + [""]
    with open(path, "w") as handle:
        handle.write("\n".join(out))
