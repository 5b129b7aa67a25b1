#!/usr/bin/env python3
"""The worker side of the layout section (bench/layout_bench.py): each command runs in its own process.

    python bench/layout_worker.py ingest-many JOBS_JSON
        `ingest.pipeline.run_ingest` of each job ({corpus, out, layout, windows_per_record,
        val_fraction, keep}) in turn, in this one process; per job its summary and in-process seconds.
    python bench/layout_worker.py ceiling CORPUS SCRATCH [--vocab-size 20000]
        the ingest's read + tokenize + vocabulary lookup alone: pass 1 (`_count_pass` as is), then
        pass 2's `iter_documents` + `encode_arguments` (BatchTokenizer.to_ids) in a thread exactly as
        `_window_pass` runs it, without cutting, encoding or writing windows.
    python bench/layout_worker.py reader DATA_DIR... --objectives last[,all] --windows N --seed S
        windows/s (and tokens/s = sum of weights/s) of `make_dataset(..., training=True)`, batch 1,024,
        for each DATA_DIR in the order given.

Each prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from layout_bench import BATCH_SIZE, VOCAB_SIZE  # noqa: E402

def ingest_jobs(jobs: list[dict]) -> dict:
    from nextword.quiet import load_tensorflow

    load_tensorflow()
    from nextword.ingest.cli import summary_dict
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    out = []
    for job in jobs:
        shutil.rmtree(job["out"], ignore_errors=True)
        settings = IngestSettings(inputs=(job["corpus"],), out=job["out"], vocab_size=VOCAB_SIZE, layout=job["layout"],
                                  windows_per_record=job["windows_per_record"], val_fraction=job["val_fraction"],
                                  **({"workers": job["workers"]} if job.get("workers") else {}))
        started = time.perf_counter()
        manifest = run_ingest(settings)
        seconds = time.perf_counter() - started
        summary = summary_dict(manifest, job["out"], seconds)
        records = sum(split["records"] for split in summary["splits"].values())
        total_bytes = sum(split["bytes"] for split in summary["splits"].values())
        out.append({"windows": summary["windows"], "records": records, "bytes": total_bytes,
                    "bytes_per_window": total_bytes / summary["windows"], "seconds": seconds,
                    "windows_per_second": summary["windows"] / seconds})
        if not job.get("keep"):
            shutil.rmtree(job["out"], ignore_errors=True)
    return {"jobs": out}


def ceiling_run(corpus: str, scratch: str, vocab_size: int) -> dict:
    import concurrent.futures

    from nextword.quiet import load_tensorflow

    load_tensorflow()
    from nextword.ingest.pipeline import _count_pass, no_progress, window_plan
    from nextword.ingest.tokenizing import BatchTokenizer, encode_arguments, in_order
    from nextword.ingest.settings import IngestSettings
    from nextword.ingest.sources import iter_documents, resolve_inputs
    from nextword.ingest.worker_pool import worker_pool

    settings = IngestSettings(inputs=(corpus,), out=scratch, vocab_size=vocab_size)
    specs = resolve_inputs(list(settings.inputs), settings.format, settings.column, settings.text_unit)
    fingerprint = settings.fingerprint(specs)
    tokenizer = BatchTokenizer()
    started = time.perf_counter()
    with worker_pool(1) as pool:  # pass 1's jobs in one thread of this process, as `--workers 1` runs them
        summary = _count_pass(settings, specs, fingerprint, tokenizer, no_progress, pool=pool)
    counted = time.perf_counter()
    plan = window_plan(settings, summary["shard_counts"])
    tokenizer.use_vocabulary(summary["vocabulary"])

    def tokenize(batch):  # as _window_pass: in a thread, TensorFlow releases the GIL
        return encode_arguments(tokenizer, plan, batch.texts, settings.val_fraction)

    batches = (batch for batch in iter_documents(specs, settings.on_error, batch_bytes=settings.batch_bytes) if batch.texts)
    tokens = documents = 0
    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        for _, flat_ids, lengths, _, _ in in_order(threads, tokenize, batches, depth=2):
            tokens += len(flat_ids)
            documents += len(lengths)
    finished = time.perf_counter()
    windows = sum(split["windows"] for split in summary["splits"].values())
    return {"pass1_seconds": counted - started, "pass2_seconds": finished - counted, "tokens": tokens,
            "documents": documents, "windows": windows}


def read_rates(data_dirs: list[str], objectives: list[str], windows: int, seed: int) -> dict:
    import tensorflow as tf

    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    runs = []
    for data_dir in data_dirs:
        manifest = load_manifest(data_dir)
        for objective in objectives:
            config = ReaderConfig(batch_size=BATCH_SIZE, objective=objective, seed=seed, training=True)
            epochs = 1 if objective == "last" else 3  # "all" selects ~1/context of the windows an epoch
            dataset = make_dataset(data_dir, "train", config, manifest=manifest, epoch=0)
            for epoch in range(1, epochs):
                dataset = dataset.concatenate(make_dataset(data_dir, "train", config, manifest=manifest, epoch=epoch))
            limit = min(windows, manifest.splits["train"].windows - 2 * BATCH_SIZE)
            iterator = iter(dataset)
            next(iterator)  # pipeline start is not throughput
            seen = tokens = 0
            started = time.perf_counter()
            for _, _, weights in iterator:
                seen += BATCH_SIZE
                if objective == "all":
                    tokens += float(tf.reduce_sum(weights))
                if seen >= limit:
                    break
            seconds = time.perf_counter() - started
            runs.append({"data_dir": data_dir, "layout": manifest.layout, "objective": objective, "windows": seen,
                         "seconds": seconds, "windows_per_second": seen / seconds,
                         "tokens_per_second": (tokens if objective == "all" else seen) / seconds})
    return {"runs": runs, "shuffle_buffer": ReaderConfig().shuffle_buffer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ingest-many").add_argument("jobs")
    ceiling = commands.add_parser("ceiling")
    ceiling.add_argument("corpus")
    ceiling.add_argument("scratch")
    ceiling.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    reader = commands.add_parser("reader")
    reader.add_argument("data_dirs", nargs="+")
    reader.add_argument("--objectives", default="last")
    reader.add_argument("--windows", type=int, default=2_000_000)
    reader.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if arguments.command == "ingest-many":
        result = ingest_jobs(json.loads(arguments.jobs))
    elif arguments.command == "ceiling":
        result = ceiling_run(arguments.corpus, arguments.scratch, arguments.vocab_size)
    else:
        result = read_rates(arguments.data_dirs, arguments.objectives.split(","), arguments.windows, arguments.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
