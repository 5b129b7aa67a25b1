"""Layout section: span records vs one tf.train.Example per window (disk, ingest, memory, reader).

bench/run calls `layout_section`; the heavy parts run in subprocesses of bench/layout_worker.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GB = 1 << 30
VOCAB_SIZE = 20_000
BATCH_SIZE = 1024


@dataclass(frozen=True)
class LayoutSizes:
    shape_mb: float  # each synthetic corpus shape
    many_words_shape: int  # distinct rare words of the many-words shape corpus
    sweep: tuple[int, ...]  # --windows-per-record values
    reader_mb: float  # corpus of the sweep and of spans vs windows in the reader
    big_mb: float  # end-to-end throughput and ceiling corpus
    big_repeats: int
    memory_distinct: int  # distinct words of the memory corpus; 0: no such run
    reader_windows: int
    rounds: int
    loop_steps: int  # steps of the long-epoch input-wait run; 0: skip the input-wait measurement
    ingest_workers: int | None = None  # in-process ingests: None = all cores (as the CLI)


FULL_SIZES = LayoutSizes(shape_mb=12, many_words_shape=1_000_000, sweep=(16, 32, 64, 128, 256, 512), reader_mb=20,
                         big_mb=200, big_repeats=3, memory_distinct=10_000_000, reader_windows=2_000_000, rounds=3,
                         loop_steps=24)
SMOKE_SIZES = LayoutSizes(shape_mb=0.2, many_words_shape=20_000, sweep=(32, 128), reader_mb=2, big_mb=2,
                          big_repeats=1, memory_distinct=0, reader_windows=20_000, rounds=1,
                          loop_steps=0,  # no input-wait run: the loop section trains on spans in smoke too
                          ingest_workers=1)  # no worker pool to spawn per tiny ingest

# (key, label, fewest words, most words per document): uniform lengths, Zipf words
SHAPES = (("long", "long documents (a book per line, 5,000-50,000 words)", 5_000, 50_000),
          ("verse", "verse-length documents (15-35 words)", 15, 35),
          ("tweet", "tweet-length documents (6-18 words)", 6, 18))


# ------------------------------------------------------------------ corpora

def write_shaped_corpus(path: str, target_bytes: int, fewest: int, most: int, seed: int = 0,
                        types: int = 50_000, exponent: float = 1.1) -> dict:
    """~target_bytes of Zipf words (corpus.word_types, as write_zipf_corpus) in documents of
    fewest..most words (uniform), one per line. Deterministic for a seed; kept when present."""
    from nextword.synthetic import word_types

    if os.path.exists(path) and abs(os.path.getsize(path) - target_bytes) < 0.05 * target_bytes:
        return {"bytes": os.path.getsize(path)}
    rng = np.random.default_rng(seed)
    vocabulary = np.array(word_types(types, seed), dtype=object)
    probabilities = np.arange(1, types + 1, dtype=np.float64) ** -exponent
    probabilities /= probabilities.sum()
    per_block = int(np.clip(target_bytes / (6.5 * (fewest + most) / 2) / 4, 1, 2000))
    written = 0
    with open(path + ".partial", "w", encoding="utf-8") as handle:
        while written < target_bytes:
            lengths = rng.integers(fewest, most + 1, size=per_block)
            tokens = vocabulary[rng.choice(types, size=int(lengths.sum()), p=probabilities)]
            starts = np.concatenate([[0], np.cumsum(lengths)])
            block = "".join(" ".join(tokens[start:end]) + "\n" for start, end in zip(starts[:-1], starts[1:]))
            handle.write(block)
            written += len(block.encode("utf-8"))
    os.replace(path + ".partial", path)
    return {"bytes": written}


def shape_corpora(work: str, sizes: LayoutSizes) -> list[tuple[str, str, str]]:
    """[(key, label, path)] of the corpus shapes (written once into work)."""
    from nextword.synthetic import write_many_words_corpus

    label = f"{sizes.shape_mb:g}".replace(".", "p")
    out = []
    for key, text, fewest, most in SHAPES:
        path = os.path.join(work, f"shape-{key}-{label}mb.txt")
        write_shaped_corpus(path, int(sizes.shape_mb * 1e6), fewest, most)
        out.append((key, text, path))
    path = os.path.join(work, f"shape-many-words-{sizes.many_words_shape}.txt")
    if not os.path.exists(path):
        write_many_words_corpus(path + ".partial", sizes.many_words_shape, chunk=min(sizes.many_words_shape, 1_000_000))
        os.replace(path + ".partial", path)
    out.append(("many_words", f"many distinct words ({sizes.many_words_shape:,} once each + as many Zipf words, "
                              "100 per line)", path))
    return out


# ------------------------------------------------------------------ orchestrating side

def cli_ingest(corpus: str, out: str, layout: str, keep: bool = False, windows_per_record: int | None = None) -> dict:
    """`nextword ingest` end to end (process start included), peak RSS of the process tree."""
    from common import nextword, run_measured

    shutil.rmtree(out, ignore_errors=True)
    options = ["--windows-per-record", str(windows_per_record)] if windows_per_record else []
    measured = run_measured(nextword("ingest", corpus, "--out", out, "--vocab-size", str(VOCAB_SIZE),
                                     "--layout", layout, *options, "--json"))
    if measured.returncode != 0:
        raise RuntimeError(f"nextword ingest --layout {layout} {corpus} failed: {measured.stderr[-2000:]}")
    summary = measured.json()
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return {"windows": summary["windows"], "wall_seconds": measured.seconds,
            "windows_per_second": summary["windows"] / measured.seconds,
            "windows_per_second_in_process": summary["windows_per_second"],
            "peak_rss_bytes": measured.peak_rss_bytes, "bytes_per_window": summary["bytes_per_window"]}


def worker(*arguments: str) -> dict:
    from common import python_script, run_checked

    return run_checked(python_script("layout_worker", *arguments)).json()


def ingest_many(jobs: list[dict]) -> list[dict]:
    return worker("ingest-many", json.dumps(jobs))["jobs"]


def disk_jobs(work: str, sizes: LayoutSizes) -> list[dict]:
    return [dict(corpus=path, out=os.path.join(work, f"layout-shape-{key}-{layout}"), layout=layout,
                 windows_per_record=128, val_fraction=0.0, keep=False, shape=key, label=label,
                 workers=sizes.ingest_workers)
            for key, label, path in shape_corpora(work, sizes) for layout in ("spans", "windows")]


def disk_part(jobs: list[dict], results: list[dict], log) -> list[dict]:
    rows = []
    for job, result in zip(jobs, results):
        rows.append({"shape": job["shape"], "label": job["label"], "layout": job["layout"],
                     "corpus_bytes": os.path.getsize(job["corpus"]), **result})
        log(f"  {job['shape']:>10} {job['layout']:>7}: {result['bytes_per_window']:.2f} B/window, "
            f"{result['windows_per_second']:,.0f} windows/s in process")
    return rows


DEFAULT_BATCH = 128  # the default recipe's global batch


def supported_default(sweep: list[dict], shuffle_buffer: int) -> int:
    """Among the windows-per-record values whose reader is within 10% of the sweep's fastest, the
    largest (fewest bytes) whose shuffle chunk still holds a record per window of a default batch
    (shuffle_buffer / W >= 128: every window of a batch can come from a different record); when
    none is both, the one with the fastest reader."""
    fastest = max(row["reader_windows_per_second"] for row in sweep)
    good = [row["windows_per_record"] for row in sweep
            if row["reader_windows_per_second"] >= 0.9 * fastest and shuffle_buffer // row["windows_per_record"] >= DEFAULT_BATCH]
    return max(good) if good else max(sweep, key=lambda row: row["reader_windows_per_second"])["windows_per_record"]


def sweep_jobs(corpus: str, work: str, sizes: LayoutSizes) -> list[dict]:
    return [dict(corpus=corpus, out=os.path.join(work, f"layout-sweep-{count}"), layout="spans",
                 windows_per_record=count, val_fraction=0.02, keep=True, workers=sizes.ingest_workers)
            for count in sizes.sweep]


def sweep_part(corpus: str, jobs: list[dict], ingested: list[dict], sizes: LayoutSizes, log) -> dict:
    """bytes/window and ingest speed (from the ingest-many run), then the reader over the sweep's
    datasets, one process per round measuring them all in an order rotated each round."""
    from common import median

    dirs = [job["out"] for job in jobs]
    rates: dict[str, list[float]] = {directory: [] for directory in dirs}
    shuffle_buffer = None
    for round_index in range(sizes.rounds):  # one process per round, the order rotated each round
        shift = round_index % len(dirs)
        order = dirs[shift:] + dirs[:shift]
        result = worker("reader", *order, "--objectives", "last", "--windows", str(sizes.reader_windows),
                        "--seed", str(round_index))
        shuffle_buffer = result["shuffle_buffer"]
        for run in result["runs"]:
            rates[run["data_dir"]].append(run["windows_per_second"])
    rows = []
    for count, job, result in zip(sizes.sweep, jobs, ingested):
        rows.append({"windows_per_record": count, "bytes_per_window": result["bytes_per_window"],
                     "ingest_windows_per_second": result["windows_per_second"],
                     "windows_per_record_mean": result["windows"] / result["records"],
                     "records_per_shuffle_chunk": max(1, shuffle_buffer // count),
                     "reader_windows_per_second_runs": rates[job["out"]],
                     "reader_windows_per_second": median(rates[job["out"]])})
        log(f"  --windows-per-record {count}: {result['bytes_per_window']:.2f} B/window, ingest "
            f"{result['windows_per_second']:,.0f}/s, reader {rows[-1]['reader_windows_per_second']:,.0f}/s")
    for directory in dirs:
        shutil.rmtree(directory, ignore_errors=True)
    return {"corpus_bytes": os.path.getsize(corpus), "windows": ingested[0]["windows"], "rows": rows,
            "shuffle_buffer": shuffle_buffer, "supported": supported_default(rows, shuffle_buffer), "current_default": 128}


def throughput_part(reader_corpus: str, big_corpus: str, work: str, sizes: LayoutSizes, log) -> dict:
    """spans end to end (median) alternating with the ceiling, windows once; peak RSS; the
    reader corpus ingested both ways and kept for the reader part."""
    from common import PYTHON, median, python_script, run_measured
    from nextword.synthetic import write_many_words_corpus

    runs: dict = {}

    def ingest(corpus: str, layout: str) -> dict:
        key = (corpus, layout)
        if key not in runs:
            out = os.path.join(work, f"layout-{os.path.basename(corpus)}-{layout}")
            runs[key] = cli_ingest(corpus, out, layout, keep=corpus == reader_corpus)
            runs[key]["data_dir"] = out
        return runs[key]

    reader_spans, reader_windows = ingest(reader_corpus, "spans"), ingest(reader_corpus, "windows")
    spans_runs, ceiling_runs = [], []
    scratch = os.path.join(work, "layout-ceiling")
    for round_index in range(sizes.big_repeats):
        pair = ["spans", "ceiling"] if round_index % 2 == 0 else ["ceiling", "spans"]
        for side in pair:
            if side == "spans":
                out = os.path.join(work, "layout-big-spans")
                spans_runs.append(runs.pop((big_corpus, "spans"), None) or cli_ingest(big_corpus, out, "spans"))
            else:
                shutil.rmtree(scratch, ignore_errors=True)
                measured = run_measured(python_script("layout_worker", "ceiling", big_corpus, scratch))
                if measured.returncode != 0:
                    raise RuntimeError(f"ceiling run failed: {measured.stderr[-2000:]}")
                ceiling_runs.append({**measured.json(), "wall_seconds": measured.seconds,
                                     "peak_rss_bytes": measured.peak_rss_bytes})
                shutil.rmtree(scratch, ignore_errors=True)
    windows_run = ingest(big_corpus, "windows") if big_corpus != reader_corpus else reader_windows
    spans = {key: median(run[key] for run in spans_runs) for key in
             ("wall_seconds", "windows_per_second", "windows_per_second_in_process", "peak_rss_bytes")}
    spans.update(windows=spans_runs[0]["windows"], runs=len(spans_runs), bytes_per_window=spans_runs[0]["bytes_per_window"],
                 windows_per_second_runs=[run["windows_per_second"] for run in spans_runs])
    ceiling_seconds = median(run["wall_seconds"] for run in ceiling_runs)
    ceiling = {"wall_seconds": ceiling_seconds, "runs": len(ceiling_runs),
               "wall_seconds_runs": [run["wall_seconds"] for run in ceiling_runs],
               "pass1_seconds": median(run["pass1_seconds"] for run in ceiling_runs),
               "pass2_seconds": median(run["pass2_seconds"] for run in ceiling_runs),
               "windows_per_second": spans["windows"] / ceiling_seconds,
               "peak_rss_bytes": median(run["peak_rss_bytes"] for run in ceiling_runs)}
    share = spans["windows_per_second"] / ceiling["windows_per_second"]
    log(f"  {sizes.big_mb:g} MB: spans {spans['windows_per_second']:,.0f} windows/s end to end = {share:.0%} of the "
        f"ceiling {ceiling['windows_per_second']:,.0f}; windows layout {windows_run['windows_per_second']:,.0f}")

    bare = [run_measured([PYTHON, "-c", "import tensorflow, tensorflow_text"]).peak_rss_bytes for _ in range(sizes.rounds)]
    memory = {"reader_corpus": reader_spans["peak_rss_bytes"], "big_corpus": spans["peak_rss_bytes"],
              "bare_import": median(bare), "bare_import_runs": bare}
    if sizes.memory_distinct:
        many = os.path.join(work, f"many-words-{sizes.memory_distinct}.txt")
        if not os.path.exists(many):
            write_many_words_corpus(many + ".partial", sizes.memory_distinct, chunk=min(sizes.memory_distinct, 1_000_000))
            os.replace(many + ".partial", many)
        many_run = cli_ingest(many, os.path.join(work, "layout-many-words"), "spans")
        memory.update(many_words=many_run["peak_rss_bytes"], many_words_distinct=sizes.memory_distinct,
                      many_words_corpus_bytes=os.path.getsize(many), many_words_windows=many_run["windows"],
                      many_words_windows_per_second=many_run["windows_per_second"])
    log(f"  peak RSS: {memory['reader_corpus'] / GB:.2f} GB ({sizes.reader_mb:g} MB), {memory['big_corpus'] / GB:.2f} GB "
        f"({sizes.big_mb:g} MB), {memory.get('many_words', 0) / GB:.2f} GB ({sizes.memory_distinct:,} distinct words); "
        f"bare import {memory['bare_import'] / GB:.2f} GB")
    return {"big_corpus_bytes": os.path.getsize(big_corpus), "reader_corpus_bytes": os.path.getsize(reader_corpus),
            "spans": spans, "windows": windows_run, "ceiling": ceiling, "share_of_ceiling": share,
            "target_windows_per_second": 1_500_000, "target_share": 0.8, "memory": memory, "memory_target_gb": 0.3,
            "reader_spans": reader_spans, "reader_windows": reader_windows}


def reader_part(spans_dir: str, windows_dir: str, sizes: LayoutSizes, log) -> dict:
    """objective last, spans vs windows of the same corpus: alternating rounds, one process per side
    per round (the spans process then also measures objective all)."""
    from common import median

    sides: dict[str, list[dict]] = {"spans": [], "windows": [], "spans_all": []}
    for round_index in range(sizes.rounds):
        order = ("spans", "windows") if round_index % 2 == 0 else ("windows", "spans")
        for side in order:
            directory = spans_dir if side == "spans" else windows_dir
            objectives = "last,all" if side == "spans" else "last"
            runs = worker("reader", directory, "--objectives", objectives, "--windows", str(sizes.reader_windows),
                          "--seed", str(round_index))["runs"]
            for run in runs:
                sides["spans_all" if run["objective"] == "all" else side].append(run)
    spans = median(run["windows_per_second"] for run in sides["spans"])
    windows = median(run["windows_per_second"] for run in sides["windows"])
    tokens = median(run["tokens_per_second"] for run in sides["spans_all"])
    log(f"  reader (last): spans {spans:,.0f} vs windows {windows:,.0f} windows/s = {spans / windows:.2f}x; "
        f"spans objective all {tokens:,.0f} tokens/s")
    return {"spans_windows_per_second": spans, "windows_windows_per_second": windows, "ratio": spans / windows,
            "spans_all_tokens_per_second": tokens,
            "spans_all_windows_per_second": median(run["windows_per_second"] for run in sides["spans_all"]),
            "runs": sides, "rounds": sizes.rounds, "windows_measured": sides["spans"][0]["windows"],
            "batch_size": BATCH_SIZE, "target_windows_per_second": 2_000_000, "target_ratio": 2.0}


def input_wait_part(data_dir: str, sizes: LayoutSizes, log, epochs: int, max_steps: int = 1_000_000) -> dict:
    from common import python_script, run_checked

    result = run_checked(python_script("train_worker", "wait", data_dir, "--epochs", str(epochs), "--max-steps",
                                       str(max_steps), "--repeats", str(sizes.rounds))).json()
    log(f"  training loop on spans (default recipe, batch {result['batch_size']}, {epochs} epoch(s)): input wait "
        f"{result['input_wait_share']:.2%} of step time chained, {result['per_epoch_input_wait_share']:.2%} "
        "with a pipeline per epoch")
    return {**result, "data_dir": data_dir, "target": 0.02}


def layout_section(sizes: LayoutSizes, work: str, builtin: str, log=print) -> dict:
    """{"disk", "sweep", "throughput", "reader", "input_wait"} (see bench/report.py layout_lines)."""
    from ingest_bench import corpus_path

    reader_corpus, big_corpus = corpus_path(work, sizes.reader_mb), corpus_path(work, sizes.big_mb)
    result: dict = {"vocab_size": VOCAB_SIZE, "sizes": sizes.__dict__, "seconds": {}}

    def timed(name: str, part) -> None:
        started = time.monotonic()
        result[name] = part()
        result["seconds"][name] = round(time.monotonic() - started, 1)

    jobs = disk_jobs(work, sizes), sweep_jobs(reader_corpus, work, sizes)
    started = time.monotonic()
    ingested = ingest_many(jobs[0] + jobs[1])  # one process: a TensorFlow import, not one per ingest
    result["seconds"]["in_process_ingests"] = round(time.monotonic() - started, 1)
    timed("disk", lambda: disk_part(jobs[0], ingested[:len(jobs[0])], log))
    timed("sweep", lambda: sweep_part(reader_corpus, jobs[1], ingested[len(jobs[0]):], sizes, log))
    timed("throughput", lambda: throughput_part(reader_corpus, big_corpus, work, sizes, log))
    spans_dir, windows_dir = (result["throughput"][f"reader_{layout}"]["data_dir"] for layout in ("spans", "windows"))
    timed("reader", lambda: reader_part(spans_dir, windows_dir, sizes, log))
    if sizes.loop_steps:
        # the embedded corpus: an "all" epoch is ~14 steps, so 6 epochs cross 5 epoch boundaries
        timed("input_wait", lambda: input_wait_part(builtin, sizes, log, epochs=6))
        # the 20 MB corpus, whose epochs are long: the steady state, no epoch boundary
        timed("input_wait_long_epochs", lambda: input_wait_part(spans_dir, sizes, log, epochs=1,
                                                                max_steps=sizes.loop_steps))
    log(f"  seconds per part: {result['seconds']}")
    return result
