"""`nextword ingest | inspect | verify`: the thin typer layer over ingest.pipeline and tfrecords.verify."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import List, Literal, Optional

import typer

from nextword.ingest.settings import DEFAULT_TOKENIZER, DEFAULT_VOCAB_SIZE, IngestSettings, default_workers
from nextword.ingest.sources import BUILTIN, FORMATS, TEXT_UNITS
from nextword.clihelp import Command
from nextword.errors import SettingsError
from nextword.quiet import load_tensorflow
from nextword.tfrecords.manifest import LAYOUTS, TOKENIZERS

# Choices the help lists and the parser enforces (IngestSettings checks the same values).
Format = Literal[("auto", *FORMATS)]
TextUnit = Literal[("auto", *TEXT_UNITS)]
Layout = Literal[LAYOUTS]
OnError = Literal["strict", "skip"]
Dedup = Literal["none", "exact", "near"]
Runner = Literal["local", "beam"]
Tokenizer = Literal[TOKENIZERS]


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _progress_reporter(console, session):
    """A rich progress bar on stderr, driven by the pipeline's progress callback; its rate counts
    the windows of this session (not those `session.windows_before` an earlier run wrote)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TextColumn("docs"),
        TextColumn("{task.fields[windows]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )
    tasks: dict[str, int] = {}
    started = time.monotonic()

    def report(stage: str, done: int, total: int | None, windows: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total, windows="")
        rate = (windows - session.windows_before) / max(time.monotonic() - started, 1e-9)
        label = f"{windows:,} windows ({rate:,.0f}/s)" if windows else ""
        progress.update(tasks[stage], completed=done, total=total, windows=label)

    return progress, report


def summary_dict(manifest, data_dir: str, seconds: float | None = None, windows_before: int = 0,
                 already_complete: bool = False) -> dict:
    """The dataset's numbers; with `seconds` (an ingest's), what this session did: the windows it
    wrote (all but `windows_before`, written by earlier interrupted sessions) and their rate.
    An ingest that found the dataset complete did nothing: no seconds, no rate."""
    splits = {name: {"documents": split.documents, "tokens": split.tokens, "windows": split.windows,
                     "records": split.records, "shards": len(split.shards),
                     "bytes": sum(shard.bytes for shard in split.shards)}
              for name, split in manifest.splits.items()}
    windows = sum(split["windows"] for split in splits.values())
    total_bytes = sum(split["bytes"] for split in splits.values())
    summary = {
        "data_dir": data_dir, "tokenizer": manifest.tokenizer_choice, "vocab_size": manifest.vocab_size, "context_length": manifest.context_length,
        "stride": manifest.stride, "layout": manifest.layout, "windows_per_record": manifest.windows_per_record,
        "splits": splits, "counters": dataclasses.asdict(manifest.counters),
        "windows": windows, "bytes_per_window": round(total_bytes / windows, 2) if windows else None,
    }
    if "words" in manifest.extra:  # wordpiece: tokens are pieces; these are the words they spell
        summary["words"] = manifest.extra["words"]
    from nextword.ingest.lengths import short_document_warning

    summary["inputs"] = [dict(entry) for entry in manifest.inputs]
    summary["vocab_source"] = dict(manifest.vocab_source) or None  # None: learned from the inputs
    summary["document_words"] = manifest.extra.get("document_words")  # None: written before 0.3
    summary["dedup"] = manifest.extra.get("dedup")  # None: --dedup none, or written before --dedup
    summary["leakage"] = manifest.extra.get("leakage")  # None: no val split, or written before the report
    warning = short_document_warning(summary["document_words"], manifest.context_length, summary["inputs"])
    summary["warnings"] = [warning] if warning else []
    if already_complete:
        summary["already_complete"] = True
    elif seconds is not None:
        written = windows - windows_before
        summary.update(already_complete=False, seconds=round(seconds, 2), windows_written=written,
                       windows_per_second=round(written / seconds) if written and seconds > 0 else None)
    return summary


def _print_histogram(console, histogram: dict) -> None:
    largest = max(histogram.values())
    for label, count in histogram.items():
        console.print(f"  {label:>11} words  {count:>12,}  {'█' * max(1, round(40 * count / largest))}", highlight=False)


def dedup_lines(summary: dict) -> list[str]:
    """The dedup and leakage lines of `ingest` and `inspect`."""
    lines = []
    dedup = summary.get("dedup")
    if dedup:
        lines.append(f"dedup {dedup['mode']}: {dedup['documents_removed']:,} documents removed "
                     f"({dedup['exact_duplicates']:,} exact, {dedup['near_duplicates']:,} near duplicates), "
                     f"{dedup['words_removed']:,} words, {dedup['windows_removed']:,} windows")
    leakage = summary.get("leakage")
    if leakage and leakage.get("share") is not None:
        sampled = f", a 1/{leakage['sample']} hash sample" if leakage["sample"] > 1 else ""
        lines.append(f"leakage: {leakage['share']:.2%} of val windows end in {leakage['ngram']} tokens that also occur "
                     f"in train ({leakage['leaked_windows']:,} of {leakage['val_windows_checked']:,} windows with "
                     f"{leakage['ngram']} tokens behind them{sampled})")
    return lines


def _print_summary(console, summary: dict, histogram: bool = False) -> None:
    from rich.table import Table

    if summary.get("already_complete"):
        console.print(f"already complete: {summary['data_dir']} holds this dataset ({summary['windows']:,} windows); "
                      "nothing to do", highlight=False)
    table = Table(title=f"dataset {summary['data_dir']}", show_edge=False)
    for column in ("split", "documents", "tokens", "windows", "shards", "MB"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for name, split in summary["splits"].items():
        table.add_row(name, f"{split['documents']:,}", f"{split['tokens']:,}", f"{split['windows']:,}",
                      str(split["shards"]), f"{split['bytes'] / 1e6:,.1f}")
    console.print(table)
    counters = ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in summary["counters"].items() if value)
    layout = summary["layout"] + (f" (up to {summary['windows_per_record']} windows a record)"
                                  if summary["layout"] != "windows" else "")
    unit = "pieces" if summary["tokenizer"] == "wordpiece" else "words"
    words, tokens = sum((summary.get("words") or {}).values()), sum(split["tokens"] for split in summary["splits"].values())
    per_word = f" ({tokens / words:.2f} a word)" if words else ""
    console.print(f"tokenizer {summary['tokenizer']}, vocabulary {summary['vocab_size']:,} {unit}{per_word}, "
                  f"context {summary['context_length']}, "
                  f"stride {summary['stride']}, layout {layout}, {summary['bytes_per_window']} bytes/window")
    source = summary.get("vocab_source")
    if source:
        console.print(f"vocabulary reused from {source['path']} (dataset {source['fingerprint']}, "
                      f"vocab sha256 {source['vocab_sha256'][:16]}…)", highlight=False)
    else:
        console.print("vocabulary learned from the inputs", highlight=False)
    console.print(f"counters: {counters}")
    lengths = summary.get("document_words")
    if lengths:
        from nextword.ingest.lengths import EXACT_BELOW

        quantiles = lengths["quantiles"]
        console.print(f"words a document: median {quantiles['p50']:,} (p10 {quantiles['p10']:,}, p90 {quantiles['p90']:,}), "
                      f"mean {lengths['mean']:,}, longest {quantiles['max']:,}"
                      + ("+" if quantiles["max"] >= EXACT_BELOW else "")
                      + (f"; {lengths['padding_share']:.0%} of context positions are padding"
                         if lengths.get("padding_share") is not None else ""), highlight=False)
        if histogram:
            _print_histogram(console, lengths["histogram"])
    for line in dedup_lines(summary):
        console.print(line, highlight=False)
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if "seconds" in summary and summary["windows_per_second"]:
        before = summary["windows"] - summary["windows_written"]
        console.print(f"{summary['windows_written']:,} windows written in {summary['seconds']} s "
                      f"({summary['windows_per_second']:,} windows/s)"
                      + (f"; {before:,} were written by an earlier, interrupted run" if before else ""))
    elif "seconds" in summary:
        console.print(f"finished in {summary['seconds']} s; every window was written by an earlier, interrupted run")


def ingest_command(
    inputs: Optional[List[str]] = typer.Argument(None, metavar="INPUT...", help="Corpus files: .csv .tsv .parquet .jsonl .txt (csv/tsv/jsonl/txt may be .gz)."),
    out: str = typer.Option(..., "--out", "-o", metavar="DATA_DIR", help="where to write the dataset (empty, new, or an unfinished ingest of the same command)."),
    builtin: bool = typer.Option(False, "--builtin", help="Use the embedded corpus: Python's documentation topics (pydoc_data, ~65K words)."),
    format: Format = typer.Option("auto", "--format", help="auto = by extension. text: see --text-unit."),
    text_unit: TextUnit = typer.Option(IngestSettings.text_unit, "--text-unit", help="What one document of a text input is (windows never cross documents). line: each line; paragraph: lines up to a blank line (wrapped prose, books, dictionaries); file: the whole file (up to 16 MB); auto: paragraph for a file whose first MB has at least 2% blank lines, else line. dataset.json records the unit each input was read by."),
    column: Optional[str] = typer.Option(None, "--column", help="Text column (CSV/TSV/Parquet/JSONL). Needed when there is more than one."),
    tokenizer: Optional[Tokenizer] = typer.Option(None, "--tokenizer", show_default=f"{DEFAULT_TOKENIZER}; with --vocab-from, the source's", help="word: one id per word, and a word outside the vocabulary is <unk>; wordpiece: subword pieces learned from the corpus's word counts (TF Text WordPiece; \"##\" marks a piece inside a word), so a rare word is spelled from known pieces instead of <unk>. Both split words the same way."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", show_default=f"{DEFAULT_VOCAB_SIZE}; with --vocab-from, the source's", help="ids: 0 <pad>, 1 <unk>, then the N-2 most frequent words (ties by word); wordpiece: the pieces' target size (the learner stays at or a little under N; dataset.json has the real size)."),
    vocab_from: Optional[str] = typer.Option(None, "--vocab-from", metavar="DATA_DIR", help="Reuse this finished dataset's tokenizer and vocabulary instead of learning one, so both datasets share ids (the same vocab_sha256): a word it does not know is <unk>. --tokenizer and --vocab-size are taken from it (refused if they differ); --context and the rest are free."),
    context: int = typer.Option(IngestSettings.context_length, "--context", help="Context length; each record holds context + 1 ids (the last is the target)."),
    stride: int = typer.Option(IngestSettings.stride, "--stride", help="Write every N-th window; 1 = every window."),
    layout: Layout = typer.Option(IngestSettings.layout, "--layout", help="packed: a record holds runs of consecutive windows of one or more documents as their ids, once, up to --windows-per-record windows in all (~2-4 bytes/window, short documents included); spans (format 2): a run of one document a record (a short line costs a record of its own); windows: one tf.train.Example per window (format 1, ~40-90 bytes/window)."),
    windows_per_record: int = typer.Option(IngestSettings.windows_per_record, "--windows-per-record", help="packed, spans: the most windows a record holds. Larger: fewer bytes and a faster reader; smaller: a finer shuffle grain."),
    shards: Optional[int] = typer.Option(None, "--shards", help="Train shards (default: sized to ~128 MB each; val is sized alike)."),
    val_fraction: float = typer.Option(IngestSettings.val_fraction, "--val-fraction", help="Share of whole documents held out, by a stable hash of their text."),
    seed: int = typer.Option(IngestSettings.seed, "--seed", help="Seeds the hash that spreads windows over shards."),
    on_error: OnError = typer.Option(IngestSettings.on_error, "--on-error", help="strict: stop at the first malformed row with its file and row; skip: drop and count it."),
    dedup: Dedup = typer.Option(IngestSettings.dedup, "--dedup", help="Drop duplicate documents before counting, keeping the first in input order. exact: the same words in the same order (case, punctuation and spacing ignored, as the tokenizer ignores them); near: also MinHash/LSH over word 5-grams, a pair at Jaccard 0.8 is caught 95% of the time, 0.5 6%; none: keep every document (datasets written before --dedup existed)."),
    workers: int = typer.Option(default_workers(), "--workers", help="Worker processes that tokenize, count and encode (default: all cores); 1: all in this process. Output is identical for any value."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different dataset already in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    runner: Runner = typer.Option("local", "--runner", help="local: processes on this machine (resumable); beam: the same ingest as an Apache Beam pipeline (needs the optional Beam extra)."),
    beam_option: Optional[List[str]] = typer.Option(None, "--beam-option", metavar="K=V", help="Passed to Beam as --K=V (repeatable), e.g. runner=FlinkRunner. Default: DirectRunner, --workers processes."),
    checkpoint_seconds: float = typer.Option(IngestSettings.checkpoint_seconds, "--checkpoint-seconds", hidden=True),
    batch_bytes: int = typer.Option(IngestSettings.batch_bytes, "--batch-bytes", hidden=True),
) -> None:
    """Stream a corpus into sharded TFRecords of every (context -> next word) window.

    Two passes over the input, memory flat in its size. Rerun the same command after a crash
    or kill to resume; it ends byte-identical to an uninterrupted run.
    """
    if beam_option and runner != "beam":
        raise SettingsError("--beam-option applies to --runner beam only", hint="add --runner beam")
    if runner == "beam" or workers == 1 or tokenizer == "wordpiece" or vocab_from is not None:
        load_tensorflow()  # else only the worker processes tokenize (ingest/worker_pool.py): this one reads and writes
    from nextword.ingest.pipeline import IngestSession, run_ingest
    from nextword.errors import Interrupted

    paths = list(inputs or [])
    if builtin:
        paths.append(BUILTIN)
    if not paths:
        raise SettingsError("no INPUT given", hint="name corpus files, or pass --builtin for the embedded corpus")
    settings = IngestSettings(
        inputs=tuple(paths), out=out, format=format, column=column, text_unit=text_unit, tokenizer=tokenizer, vocab_size=vocab_size, vocab_from=vocab_from, context_length=context,
        stride=stride, layout=layout, windows_per_record=windows_per_record, shards=shards, val_fraction=val_fraction, seed=seed, on_error=on_error, dedup=dedup, workers=workers,
        overwrite=overwrite, checkpoint_seconds=checkpoint_seconds, batch_bytes=batch_bytes,
    )
    console = _console()
    session = IngestSession(note=lambda message: console.print(message, highlight=False))
    progress, report = _progress_reporter(console, session)
    started = time.monotonic()
    try:
        with progress:
            if runner == "beam":
                from nextword.ingest.beam import run_beam_ingest

                manifest = run_beam_ingest(settings, beam_option or (), progress=report, session=session)
            else:
                manifest = run_ingest(settings, progress=report, session=session)
    except KeyboardInterrupt:
        again = "resume" if runner == "local" else "start it again (the Beam runner does not resume)"
        raise Interrupted(f"interrupted: run the same command to {again}") from None
    summary = summary_dict(manifest, out, time.monotonic() - started, session.windows_before, session.already_complete)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(console, summary)
        console.print(f"next: nextword inspect {out}   |   nextword train {out} --out RUN_DIR")


def inspect_command(
    data_dir: str = typer.Argument(..., metavar="DATA_DIR", help="A dataset written by `nextword ingest`."),
    windows: int = typer.Option(5, "--windows", help="How many windows to decode back to words."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON on stdout."),
) -> None:
    """Summarise a dataset's manifest and decode a few windows back to words.

    A wordpiece dataset's pieces are joined into words ("walk ##ing" -> walking); a target that
    continues the word before it is shown as its piece (##ing).
    """
    if windows < 0:
        raise SettingsError(f"--windows must be 0 (the summary only) or more, got {windows}",
                            hint="pass how many windows to decode back to words, e.g. --windows 5")
    load_tensorflow()
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.verify import sample_windows

    manifest = load_manifest(data_dir)
    summary = summary_dict(manifest, data_dir)
    samples = sample_windows(data_dir, manifest, windows)
    summary["samples"] = [{"context": " ".join(context), "target": target} for context, target in samples]
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console = _console()
    _print_summary(console, summary, histogram=True)
    for sample in summary["samples"]:
        console.print(f"  [dim]…{sample['context'][-70:]}[/dim] → [bold]{sample['target']}[/bold]", highlight=False)


def verify_command(
    data_dir: str = typer.Argument(..., metavar="DATA_DIR", help="A dataset written by `nextword ingest`."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Check every shard: CRCs, record count, size and sha256 against the manifest. Exit 1 naming each bad file."""
    load_tensorflow()
    from nextword.tfrecords.verify import verify_dataset

    console = _console()

    def show(report) -> None:
        if not as_json:
            mark = "[green]ok[/green]  " if report.ok else "[red]BAD[/red] "
            console.print(f"{mark} {report.file}  {report.records:,} records  {'; '.join(report.problems)}", highlight=False)

    _, reports = verify_dataset(data_dir, on_shard=show)
    bad = [report for report in reports if not report.ok]
    if as_json:
        typer.echo(json.dumps({"data_dir": data_dir, "ok": not bad,
                               "shards": [dataclasses.asdict(report) for report in reports]}, indent=2))
    elif bad:
        console.print(f"[red]{len(bad)} of {len(reports)} shards are damaged:[/red] {', '.join(r.file for r in bad)}")
        console.print("→ re-run `nextword ingest` into a new --out (or restore the files) before training on it")
    else:
        console.print(f"all {len(reports)} shards match the manifest")
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("ingest", cls=Command)(ingest_command)
    app.command("inspect", cls=Command)(inspect_command)
    app.command("verify", cls=Command)(verify_command)
