#!/usr/bin/env python3
"""Training step throughput by XLA (`--jit-compile`) and precision (`--precision`), per architecture.

    python bench/step_bench.py [--arch transformer,transformer-learned,lstm] [--sides float32+xla,float32,...] [--rounds 6] [--steps 20]

In one process per architecture: one `model.loop.Trainer` of the recipe's model per side (vocabulary --vocab,
context 44, batch 128, objective "all", the default strategy), all fed the same in-memory batch (half its
rows half padded), so the figure is the step, not the reader. A side is a precision, "+xla" compiled.
Rounds rotate which side runs first (the machine's speed drifts); every round is shown, the median per side,
its ratio to the first side, and its matmul FLOP/s as a share of the calibrated peak in the side's compute
dtype (model/flops.py). This is the measurement behind `TrainSettings.jit_compile_for` and
`model.strategy.choose_precision`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ENV, PYTHON  # noqa: E402

CONTEXT, BATCH = 44, 128
DEFAULT_SIDES = {"transformer": "float32+xla,float32,mixed_bfloat16+xla,mixed_bfloat16",
                 "transformer-learned": "float32+xla,float32",  # the recipe with learned positions (0.3's before ALiBi)
                 "lstm": "float32,float32+xla,mixed_bfloat16"}
COMPUTE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def measure(arch: str, sides: list[str], rounds: int, steps: int, vocab: int) -> dict:
    """In this process: windows/s per round for each side."""
    import numpy as np
    import tensorflow as tf

    from nextword.model import flops
    from nextword.model.config import TRANSFORMER_DEFAULTS, ModelConfig
    from nextword.model.loop import Trainer

    recipe = dict(TRANSFORMER_DEFAULTS) if arch.startswith("transformer") else {}
    if arch == "transformer-learned":
        recipe["positions"] = "learned"
    config = ModelConfig(vocab_size=vocab, context_length=CONTEXT, arch=arch.split("-")[0], objective="all",
                         **{key: value for key, value in recipe.items() if value is not None})
    rng = np.random.default_rng(0)
    context = rng.integers(2, vocab, size=(BATCH, CONTEXT)).astype(np.int32)
    context[: BATCH // 2, : CONTEXT // 2] = 0
    targets = np.roll(context, -1, axis=1)
    weights = (targets > 0).astype(np.float32)
    batches = tf.data.Dataset.from_tensors((context, targets, weights)).repeat()
    trainers = {}
    for side in sides:
        precision, _, compiled = side.partition("+")
        trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, precision=precision,
                          jit_compile=compiled == "xla")
        iterator = iter(batches)
        trainer.train_steps(iterator, 2)  # trace (and compile)
        trainers[side] = (trainer, iterator)
    rates = {side: [] for side in sides}
    for round_index in range(rounds):
        shift = round_index % len(sides)
        for side in sides[shift:] + sides[:shift]:
            trainer, iterator = trainers[side]
            start = time.perf_counter()
            loss, _ = trainer.train_steps(iterator, steps)
            float(loss)
            rates[side].append(BATCH * steps / (time.perf_counter() - start))
    per_window = flops.training_flops_per_window(config)
    peaks = {dtype: flops.measure_matmul_peak(dtype) for dtype in {COMPUTE_DTYPE[s.partition("+")[0]] for s in sides}}
    first = statistics.median(rates[sides[0]])
    return {"arch": arch, "parameters": int(trainers[sides[0]][0].model.count_params()), "flops_per_window": per_window,
            "peaks": {dtype: round(peak) for dtype, peak in peaks.items()},
            "sides": [{"side": side, "rounds": [round(rate) for rate in rates[side]],
                       "median": statistics.median(rates[side]), "ratio": statistics.median(rates[side]) / first,
                       "utilisation": statistics.median(rates[side]) * per_window / peaks[COMPUTE_DTYPE[side.partition("+")[0]]]}
                      for side in sides]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="transformer,lstm")
    parser.add_argument("--sides", help="comma-separated precision[+xla]; default per arch: " + str(DEFAULT_SIDES))
    parser.add_argument("--vocab", type=int, default=2000, help="vocabulary size (the demo's; 0.2's XLA figures used 500)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one arch in this process
    arguments = parser.parse_args()
    if arguments.one:
        sides = (arguments.sides or DEFAULT_SIDES[arguments.one]).split(",")
        print(json.dumps(measure(arguments.one, sides, arguments.rounds, arguments.steps, arguments.vocab)))
        return
    print("| arch | side | windows/s (rounds) | median | vs first side | matmul utilisation of its dtype's peak |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for arch in arguments.arch.split(","):
        done = subprocess.run([PYTHON, os.path.abspath(__file__), "--one", arch, "--rounds", str(arguments.rounds),
                               "--steps", str(arguments.steps), "--vocab", str(arguments.vocab), *(["--sides", arguments.sides] if arguments.sides else [])],
                              env=ENV, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        for side in row["sides"]:
            print(f"| {arch} ({row['parameters']:,} parameters) | {side['side']} | {', '.join(map(str, side['rounds']))} "
                  f"| {side['median']:,.0f} | ×{side['ratio']:.2f} | {side['utilisation']:.0%} |", flush=True)
        print(f"|  | peaks (GFLOP/s) | {', '.join(f'{d} {p / 1e9:,.0f}' for d, p in row['peaks'].items())} | | | |", flush=True)


if __name__ == "__main__":
    main()
