#!/usr/bin/env python3
"""Training step throughput with and without XLA (`--jit-compile`), per architecture.

    python bench/jit_bench.py [--arch transformer,lstm] [--rounds 6] [--steps 20]

In one process per architecture: two `model.loop.Trainer`s of the recipe's model (vocabulary 500,
context 44, batch 128, objective "all", the default strategy), one compiled, one not, fed the
same in-memory batch (half its rows half padded), so the figure is the step, not the reader.
Rounds alternate which side runs first (ABBA: the machine's speed drifts); every round is shown,
and the median per side. This is the measurement behind `TrainSettings.jit_compile_for`.
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

VOCAB, CONTEXT, BATCH = 500, 44, 128


def measure(arch: str, rounds: int, steps: int) -> dict:
    """In this process: windows/s per round for (uncompiled, compiled)."""
    import numpy as np
    import tensorflow as tf

    from nextword.model.config import ModelConfig
    from nextword.model.loop import Trainer
    from nextword.model.config import TRANSFORMER_DEFAULTS

    recipe = dict(TRANSFORMER_DEFAULTS) if arch == "transformer" else {}
    config = ModelConfig(vocab_size=VOCAB, context_length=CONTEXT, arch=arch, objective="all",
                         **{key: value for key, value in recipe.items() if value is not None})
    rng = np.random.default_rng(0)
    context = rng.integers(2, VOCAB, size=(BATCH, CONTEXT)).astype(np.int32)
    context[: BATCH // 2, : CONTEXT // 2] = 0
    targets = np.roll(context, -1, axis=1)
    weights = (targets > 0).astype(np.float32)
    batches = tf.data.Dataset.from_tensors((context, targets, weights)).repeat()
    sides = {}
    for compiled in (False, True):
        trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, jit_compile=compiled)
        iterator = iter(batches)
        trainer.train_steps(iterator, 2)  # trace (and compile)
        sides[compiled] = (trainer, iterator)
    rates = {False: [], True: []}
    for round_index in range(rounds):
        for compiled in ((False, True) if round_index % 2 == 0 else (True, False)):
            trainer, iterator = sides[compiled]
            start = time.perf_counter()
            loss, _ = trainer.train_steps(iterator, steps)
            float(loss)
            rates[compiled].append(BATCH * steps / (time.perf_counter() - start))
    return {"arch": arch, "parameters": int(sides[False][0].model.count_params()),
            "uncompiled": [round(rate) for rate in rates[False]], "compiled": [round(rate) for rate in rates[True]],
            "ratio": statistics.median(rates[True]) / statistics.median(rates[False])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="transformer,lstm")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one arch in this process
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(measure(arguments.one, arguments.rounds, arguments.steps)))
        return
    print(f"| arch | parameters | uncompiled windows/s (rounds) | XLA windows/s (rounds) | median ratio |")
    print("| --- | ---: | --- | --- | ---: |")
    for arch in arguments.arch.split(","):
        done = subprocess.run([PYTHON, os.path.abspath(__file__), "--one", arch, "--rounds", str(arguments.rounds),
                               "--steps", str(arguments.steps)], env=ENV, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {arch} | {row['parameters']:,} | {', '.join(map(str, row['uncompiled']))} "
              f"| {', '.join(map(str, row['compiled']))} | ×{row['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
