#!/usr/bin/env python3
"""Weighted blends (issue 22 item 4): do the windows trained hold each source in its weight, and what
does reading a blend cost against reading one source?

    python bench/blend_bench.py [--rounds 5] [--batches 1500] [--run NAME]   # figures: the results store, blend/NAME

Two real corpora sharing one vocabulary: the King James Bible one verse a document (31,102 short documents)
and Vim's help files (151 long documents), each ingested `--vocab-from` a vocabulary of 5,000 learned on both.

(a) Shares: one blend epoch of the reader training uses (tfrecords/blend.py, global batch 128, objective
    "all", the default shuffle buffer), each window tagged with its source as it leaves the stream; the
    share of each source over the epoch against its weight (target: within 1%), and the largest deviation
    of one batch from its share.
(b) Throughput: windows/s of the blend reader against each source's reader alone (the training reader,
    same batch, objective, seed), the sides alternating over several rounds in one process; the blend's
    ratio to the weighted mix of the two single rates (1 / sum(w_i / rate_i): what a free blend would
    read; target >= 80%) and to each source alone; the same ratio from CPU time a window (all threads of
    the process), which the machine's load disturbs less than wall clock.

Records the figures in the results store (bench/store.py) as blend/NAME; RESULTS.md's "Blends" section renders
its two tables from there (`<!-- table: blend-shares -->`, `<!-- table: blend-throughput -->`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import store  # noqa: E402
from common import WORK, median, nextword, run_checked  # noqa: E402
from markdown import Column, table  # noqa: E402
from real_corpora import kjv_text, vim_corpus  # noqa: E402

BATCH = 128
WEIGHTS = (0.7, 0.3)


def build_sources() -> tuple[str, str]:
    """The Bible and Vim's help as two datasets of one vocabulary: a vocabulary of 5,000 learned
    on both corpora together (bench/work/blend-joint), then each ingested `--vocab-from` it, as a
    user blending two corpora would."""
    os.makedirs(WORK, exist_ok=True)
    verses = os.path.join(WORK, "kjv-verses.jsonl")
    if not os.path.exists(verses):
        text = os.path.join(WORK, "kjv-verses.txt")
        if not os.path.exists(text):
            kjv_text(text)
        with open(text) as lines, open(verses + ".tmp", "w") as out:
            out.writelines(json.dumps({"text": line.strip()}) + "\n" for line in lines if line.strip())
        os.replace(verses + ".tmp", verses)
    vim = os.path.join(WORK, "vim-help.jsonl")
    if not os.path.exists(vim):
        vim_corpus(vim)
    joint = os.path.join(WORK, "blend-joint")
    made = []
    for out, inputs, extra in ((joint, [verses, vim], ["--vocab-size", "5000"]),
                               (os.path.join(WORK, "blend-kjv"), [verses], ["--vocab-from", joint]),
                               (os.path.join(WORK, "blend-vim"), [vim], ["--vocab-from", joint])):
        if not os.path.exists(os.path.join(out, "dataset.json")):
            run_checked(nextword("ingest", *inputs, "--column", "text", "--out", out, "--val-fraction", "0.1", *extra,
                                 "--json"))
        made.append(out)
    return made[1], made[2]


def blend_parts(data_dirs, weights, objective, seed=0):
    from nextword.tfrecords.blend import blend_source_epochs, load_sources, period_allocation, period_batches
    from nextword.tfrecords.reader import ReaderConfig

    sources = load_sources(tuple(data_dirs), weights)
    config = ReaderConfig(batch_size=BATCH, objective=objective, seed=seed)
    period = period_batches(BATCH, config.shuffle_buffer)
    allocation = period_allocation(weights, period * BATCH)
    return sources, config, period, allocation, blend_source_epochs(sources, config, allocation)


def measure_shares(data_dirs, weights, objective) -> dict:
    """One blend epoch (as BlendStepPlan counts it) read with each window's source."""
    import numpy as np

    from nextword.tfrecords.blend import make_blend_dataset

    sources, config, period, allocation, epochs = blend_parts(data_dirs, weights, objective)
    epoch_windows = [e.windows(0) for e in epochs]
    steps = sum(epoch_windows) // BATCH
    dataset = make_blend_dataset(sources, config, allocation, 0, -(-steps // period), 0, epochs, with_source=True)
    counts, worst = np.zeros(len(sources), np.int64), 0.0
    expected = np.array(weights) * BATCH
    for _, _, _, tags in dataset.take(steps).as_numpy_iterator():
        batch_counts = np.bincount(tags, minlength=len(sources))
        counts += batch_counts
        worst = max(worst, float(np.abs(batch_counts - expected).max()))
    shares = counts / counts.sum()
    return {"weights": list(weights), "objective": objective, "steps": steps, "windows": int(counts.sum()),
            "period_windows": list(allocation), "shares": [round(float(s), 6) for s in shares],
            "largest_share_error": round(float(np.abs(shares - np.array(weights)).max()), 6),
            "largest_batch_deviation_windows": worst,
            "source_epochs_read": [round(float(c) / w, 3) for c, w in zip(counts, epoch_windows)]}


def read_rate(dataset, batches: int) -> tuple[float, float]:
    """(windows/s, CPU microseconds a window: every thread of this process) reading `batches` batches
    (the pipeline built, its first batch excluded: start-up). CPU time is what a shared, loaded
    machine disturbs least: wall-clock rates here moved 2x between rounds at a load average of 11."""
    iterator = iter(dataset)
    next(iterator)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    windows = batches * BATCH
    return windows / (time.perf_counter() - started), (time.process_time() - cpu_started) * 1e6 / windows


def measure_throughput(data_dirs, weights, objective, rounds: int, batches: int) -> dict:
    from nextword.tfrecords.blend import make_blend_dataset
    from nextword.tfrecords.reader import make_epochs_dataset

    sources, config, period, allocation, epochs = blend_parts(data_dirs, weights, objective)
    needed_periods = -(-(batches + 1) // period)

    def single(index):  # the source's own training reader, as many of its epochs as the round reads
        source, epoch_windows = sources[index], epochs[index].windows(0)
        needed_epochs = -(-(batches + 1) * BATCH // epoch_windows) + 1
        return make_epochs_dataset(source.data_dir, "train", config, range(needed_epochs), manifest=source.manifest)

    sides = {"blend": lambda: make_blend_dataset(sources, config, allocation, 0, needed_periods, 0, epochs),
             sources[0].name: lambda: single(0), sources[1].name: lambda: single(1)}
    rates, cpu = {name: [] for name in sides}, {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))  # alternate who goes first
        for name in order:
            rate, microseconds = read_rate(sides[name](), batches)
            rates[name].append(round(rate))
            cpu[name].append(round(microseconds, 3))
        print(f"  round {round_index + 1} ({objective}): " + ", ".join(
            f"{name} {rates[name][-1]:,} w/s {cpu[name][-1]:.2f} us CPU/window" for name in sides), flush=True)
    names = [source.name for source in sources]
    per_round_mix = [1.0 / sum(w / rates[name][i] for w, name in zip(weights, names)) for i in range(rounds)]
    ratios = [rates["blend"][i] / per_round_mix[i] for i in range(rounds)]
    # CPU: the mix costs sum(w_i x cpu_i) a window; the blend's rate relative to it is mix / blend
    cpu_ratios = [sum(w * cpu[name][i] for w, name in zip(weights, names)) / cpu["blend"][i] for i in range(rounds)]
    return {"objective": objective, "batches_per_round": batches, "batch": BATCH, "rounds": rates,
            "cpu_microseconds_per_window": cpu,
            "blend_over_mix_by_cpu_per_round": [round(r, 3) for r in cpu_ratios],
            "median_blend_over_mix_by_cpu": round(median(cpu_ratios), 3),
            "weighted_mix_per_round": [round(x) for x in per_round_mix],
            "blend_over_mix_per_round": [round(r, 3) for r in ratios],
            "median_blend_over_mix": round(median(ratios), 3),
            **{f"median_blend_over_{name}": round(median([rates["blend"][i] / rates[name][i] for i in range(rounds)]), 3)
               for name in names}}


def shares_table(figures: dict) -> list[str]:
    """RESULTS.md's shares table: one row per weighting."""
    def pair(values, fmt):
        return " / ".join(fmt.format(value) for value in values)
    return table([
        Column("weights", lambda row: pair(row["weights"], "{}")),
        Column("shares measured", lambda row: pair(row["shares"], "{:.6f}")),
        Column("largest error", lambda row: f"{row['largest_share_error']:.4%}", numeric=True),
        Column("a batch off its share by at most", lambda row: f"{row['largest_batch_deviation_windows']:.1f} windows",
               numeric=True),
        Column("source epochs read", lambda row: ", ".join(f"{value:.3f}" for value in row["source_epochs_read"])),
    ], figures["shares"])


def throughput_table(figures: dict) -> list[str]:
    """RESULTS.md's throughput table: every round of each objective, then its medians."""
    rows = []
    for entry in figures["throughput"]:
        rounds = entry["rounds"]
        sources = [name for name in rounds if name != "blend"]
        for index, rate in enumerate(rounds["blend"]):
            rows.append({"objective": entry["objective"], "round": str(index + 1), "blend": f"{rate:,}",
                         **{name: f"{rounds[name][index]:,}" for name in sources},
                         "wall": f"{entry['blend_over_mix_per_round'][index]:.3f}",
                         "cpu": f"{entry['blend_over_mix_by_cpu_per_round'][index]:.3f}"})
        rows.append({"objective": f"**{entry['objective']}**", "round": "**median**", "blend": "",
                     **{name: "" for name in sources}, "wall": f"**{entry['median_blend_over_mix']:.3f}**",
                     "cpu": f"**{entry['median_blend_over_mix_by_cpu']:.3f}**"})
    sources = [name for name in figures["throughput"][0]["rounds"] if name != "blend"]
    return table([
        Column("objective", lambda row: row["objective"]), Column("round", lambda row: row["round"]),
        Column("blend w/s", lambda row: row["blend"], numeric=True),
        *[Column(f"{name.removeprefix('blend-')} w/s", lambda row, name=name: row[name], numeric=True)
          for name in sources],
        Column("blend / mix (wall)", lambda row: row["wall"], numeric=True),
        Column("blend / mix (CPU a window)", lambda row: row["cpu"], numeric=True),
    ], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=1500)
    parser.add_argument("--run", default="bible-vim", help="the run's name in the store (blend/NAME)")
    parser.add_argument("--store", default=store.STORE, help="the results store (default bench/results.json)")
    args = parser.parse_args()
    measured = store.stamp()
    data_dirs = build_sources()
    from nextword.quiet import load_tensorflow

    load_tensorflow()
    results = {"sources": {name: json.load(open(os.path.join(d, "dataset.json")))["splits"]["train"]["windows"]
                           for name, d in zip(("kjv", "vim"), data_dirs)}}
    results["shares"] = [measure_shares(data_dirs, weights, "all") for weights in (WEIGHTS, (0.9, 0.1))]
    for entry in results["shares"]:
        print(f"shares {entry['weights']}: {entry['shares']} over {entry['windows']:,} windows ({entry['steps']} steps); "
              f"largest error {entry['largest_share_error']:.4%}; a batch off its share by <= "
              f"{entry['largest_batch_deviation_windows']:.1f} windows; source epochs read {entry['source_epochs_read']}")
    results["throughput"] = [measure_throughput(data_dirs, WEIGHTS, objective, args.rounds, args.batches)
                             for objective in ("all", "last")]
    for entry in results["throughput"]:
        print(f"throughput ({entry['objective']}): blend / weighted mix per round {entry['blend_over_mix_per_round']}, "
              f"median {entry['median_blend_over_mix']}; by CPU a window {entry['blend_over_mix_by_cpu_per_round']}, "
              f"median {entry['median_blend_over_mix_by_cpu']}; " + ", ".join(
                  f"{key}: {value}" for key, value in entry.items() if key.startswith("median_blend_over_") and key != "median_blend_over_mix"))
    store.record("blend", args.run, results, {"command": "bench/blend_bench.py " + " ".join(sys.argv[1:]),
                                              "rounds": args.rounds, "batches": args.batches},
                 path=args.store, measured=measured)
    print("\n".join(["", *shares_table(results), "", *throughput_table(results)]))
    print(f"recorded blend/{args.run} in {args.store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
