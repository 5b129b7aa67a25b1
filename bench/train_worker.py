#!/usr/bin/env python3
"""nextword's side of the reader and training-loop benchmarks (bench/run runs it in a subprocess).

    python bench/train_worker.py reader DATA_DIR --windows 1000000 --batch-size 1024 --repeats 3
        windows/s through `tfrecords.reader.make_dataset` alone, and the ceiling of the raw
        `TFRecordDataset` over the same files, batched (no shuffle, no parse) in the same process.

    python bench/train_worker.py loop DATA_DIR [--preset notebook] --batch-size 512 --steps 64 --repeats 3
        steady-state windows/s of `model.loop.Trainer` fed by the real reader, and the same steps
        fed from batches already in memory: the difference is the time the step waits on input.

    python bench/train_worker.py wait DATA_DIR --epochs 6 [--max-steps N] --repeats 3
        the default recipe's input wait measured directly (time in next() / step time), over
        several epochs, for the chained-epochs iterator training uses and a pipeline per epoch.

One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def timed_windows(dataset, windows: int, batch_size: int) -> float:
    """Iterate until `windows` windows have passed; windows/s (first batch excluded: pipeline start)."""
    iterator = iter(dataset)
    next(iterator)
    seen, started = 0, time.perf_counter()
    for batch in iterator:
        seen += batch_size
        if seen >= windows:
            break
    return seen / (time.perf_counter() - started)


def reader_benchmark(data_dir: str, windows: int, batch_size: int, repeats: int) -> dict:
    import tensorflow as tf

    from nextword import storage
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(data_dir)
    files = [storage.join(data_dir, shard.file) for shard in manifest.split("train").shards]
    total = manifest.splits["train"].windows
    windows = min(windows, total - 2 * batch_size)
    # raw: records/s of TFRecordDataset alone, as windows/s (span records hold many windows each)
    per_record = total / max(manifest.splits["train"].records, 1)
    raw, reader = [], []
    for repeat in range(repeats):
        raw_dataset = tf.data.TFRecordDataset(files).batch(batch_size).prefetch(tf.data.AUTOTUNE)
        raw.append(per_record * timed_windows(raw_dataset, int(windows / per_record), batch_size))
        # objective last: every window of an epoch (objective all selects ~1 in context_length of them)
        config = ReaderConfig(batch_size=batch_size, objective="last", seed=repeat)
        reader.append(timed_windows(make_dataset(data_dir, "train", config, manifest=manifest), windows, batch_size))
    return {"windows": windows, "batch_size": batch_size, "shards": len(files),
            "raw_windows_per_second_runs": raw, "reader_windows_per_second_runs": reader,
            "raw_windows_per_second": statistics.median(raw), "reader_windows_per_second": statistics.median(reader)}


def loop_benchmark(data_dir: str, preset: str | None, batch_size: int | None, steps: int, repeats: int) -> dict:
    import tensorflow as tf

    from nextword.model import flops
    from nextword.model.loop import Trainer
    from nextword.model.settings import TrainSettings
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(data_dir)
    settings = TrainSettings(data_dir=data_dir, out="unused", preset=preset, batch_size=batch_size)
    config = settings.model_config(manifest.vocab_size, manifest.context_length)
    batch = settings.training_choice("batch_size")
    strategy = tf.distribute.get_strategy()
    # compiled as `nextword train` compiles it (XLA for the transformer), in its CPU precision (float32)
    trainer = Trainer(strategy, config, settings.training_choice("optimizer"), settings.training_choice("learning_rate"),
                      jit_compile=settings.jit_compile_for(config.arch))
    reader_config = ReaderConfig(batch_size=batch, objective=config.objective)
    steps_per_call = 8

    def dataset(epoch: int):
        # Repeat epochs so a long measurement never runs dry on a small split.
        return make_dataset(data_dir, "train", reader_config, manifest=manifest, epoch=epoch).repeat()

    def rate(iterator) -> float:
        trainer.train_steps(iterator, steps_per_call)  # warm-up: trace, and fill the prefetch buffer
        done, started = 0, time.perf_counter()
        while done < steps:
            loss, _ = trainer.train_steps(iterator, steps_per_call)
            done += steps_per_call
        float(loss)  # wait for the last step
        return done * batch / (time.perf_counter() - started)

    from_reader, from_memory = [], []
    in_memory = dataset(0).take(steps_per_call * 4).cache().repeat()
    list(in_memory.take(steps_per_call * 4))  # fill the cache before timing
    for repeat in range(repeats):
        from_reader.append(rate(iter(dataset(repeat))))
        from_memory.append(rate(iter(in_memory)))
    reader_rate, memory_rate = statistics.median(from_reader), statistics.median(from_memory)
    per_window, peak = flops.training_flops_per_window(config), flops.matmul_peak("float32")
    return {"preset": preset or "default", "model": config.to_dict(), "batch_size": batch, "steps": steps,
            "jit_compile": trainer.jit_compile, "training_flops_per_window": per_window,
            "peak_flops_per_second": peak["flops_per_second"], "peak_source": peak["source"],
            "utilisation": flops.utilisation(reader_rate, per_window, peak["flops_per_second"])[1],
            "windows_per_second_runs": from_reader, "in_memory_windows_per_second_runs": from_memory,
            "windows_per_second": reader_rate, "in_memory_windows_per_second": memory_rate,
            # Share of step time spent waiting on the reader (clipped at 0: noise can make it negative).
            "input_wait_share": max(0.0, 1.0 - reader_rate / memory_rate)}


def wait_benchmark(data_dir: str, epochs: int, max_steps: int, repeats: int) -> dict:
    """Input wait measured where the training loop waits: each step, the time `next()` takes to
    hand over a batch (wait) and then the step itself (a tf.function, synced), over `epochs`
    epochs. Two feeds, alternating per round, in one process: the chain of epochs training
    reads (`make_epochs_dataset`, one iterator) and a new `make_dataset` pipeline per epoch
    (its Python build and start fall inside `next()` at every epoch boundary). The very first
    batch of a feed (tracing, the run's one pipeline start) is outside the timing."""
    import tensorflow as tf

    from nextword.model.loop import Trainer
    from nextword.model.settings import TrainSettings
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset, make_epochs_dataset

    manifest = load_manifest(data_dir)
    settings = TrainSettings(data_dir=data_dir, out="unused")
    config = settings.model_config(manifest.vocab_size, manifest.context_length)
    batch = settings.training_choice("batch_size")
    strategy = tf.distribute.get_strategy()
    trainer = Trainer(strategy, config, settings.training_choice("optimizer"), settings.training_choice("learning_rate"))
    step = tf.function(lambda context, targets, weights: strategy.run(trainer.replica_step, args=(context, targets, weights)))
    reader_config = ReaderConfig(batch_size=batch, objective=config.objective)

    def chained(first: int):
        yield from make_epochs_dataset(data_dir, "train", reader_config, range(first, first + epochs), manifest=manifest)

    def per_epoch(first: int):
        for epoch in range(first, first + epochs):
            yield from make_dataset(data_dir, "train", reader_config, epoch=epoch, manifest=manifest)

    def measure(batches) -> dict:
        float(step(*next(batches))[0])
        wait = total = 0.0
        steps = 0
        while steps < max_steps:
            started = time.perf_counter()
            try:
                context, targets, weights = next(batches)
            except StopIteration:
                break
            handed = time.perf_counter()
            float(step(context, targets, weights)[0])
            wait, total, steps = wait + handed - started, total + time.perf_counter() - started, steps + 1
        return {"steps": steps, "wait_seconds": wait, "seconds": total, "wait_share": wait / total,
                "windows_per_second": steps * batch / total}

    feeds = {"chained": chained, "per_epoch": per_epoch} if epochs > 1 else {"chained": chained}  # 1 epoch: the same
    runs: dict = {name: [] for name in feeds}
    for repeat in range(repeats):
        for name in (list(feeds) if repeat % 2 == 0 else list(feeds)[::-1]):
            runs[name].append(measure(feeds[name](repeat * epochs)))
    medians = {name: statistics.median(run["wait_share"] for run in rounds) for name, rounds in runs.items()}
    medians.setdefault("per_epoch", medians["chained"])
    return {"batch_size": batch, "epochs": epochs, "max_steps": max_steps, "model": config.to_dict(),
            "steps_per_epoch": runs["chained"][0]["steps"] / epochs if runs["chained"][0]["steps"] < max_steps else None,
            "runs": runs, "input_wait_share": medians["chained"], "per_epoch_input_wait_share": medians["per_epoch"],
            "windows_per_second": statistics.median(run["windows_per_second"] for run in runs["chained"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    reader = commands.add_parser("reader")
    reader.add_argument("data_dir")
    reader.add_argument("--windows", type=int, default=1_000_000)
    reader.add_argument("--batch-size", type=int, default=1024)
    reader.add_argument("--repeats", type=int, default=3)
    loop = commands.add_parser("loop")
    loop.add_argument("data_dir")
    loop.add_argument("--preset", default=None)
    loop.add_argument("--batch-size", type=int, default=None)
    loop.add_argument("--steps", type=int, default=64)
    loop.add_argument("--repeats", type=int, default=3)
    wait = commands.add_parser("wait")
    wait.add_argument("data_dir")
    wait.add_argument("--epochs", type=int, default=6)
    wait.add_argument("--max-steps", type=int, default=1_000_000)
    wait.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    if arguments.command == "wait":
        result = wait_benchmark(arguments.data_dir, arguments.epochs, arguments.max_steps, arguments.repeats)
    elif arguments.command == "reader":
        result = reader_benchmark(arguments.data_dir, arguments.windows, arguments.batch_size, arguments.repeats)
    else:
        result = loop_benchmark(arguments.data_dir, arguments.preset, arguments.batch_size, arguments.steps, arguments.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
