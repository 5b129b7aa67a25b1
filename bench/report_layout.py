"""RESULTS.md's record-layout section (bench/layout_bench.py's figures): bytes a window, the windows-per-record
sweep, ingest against its ceiling, memory, the reader and the training loop's input wait."""

from __future__ import annotations

from markdown import number as _fmt

GB = 1 << 30


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
