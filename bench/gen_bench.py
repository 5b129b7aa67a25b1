"""gen vs the notebook's generation loop, on the same model, in one run.

    python bench/gen_bench.py EXPORT_DIR          # an existing export (e.g. a trained demo model)
    python bench/gen_bench.py --demo notebook     # a random-weight export of the notebook's network
    python bench/gen_bench.py --demo default      # ... of nextword's default network

The notebook loop (`model.predict` on the pre-padded window once per word, numpy sampling)
runs on a Keras model rebuilt from the export's own weights, so both sides use the same
network. `benchmark_generation(export_dir)` returns the figures as a dict for bench/run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROMPT = "last night i went on a date with"


def keras_model_from_export(generator):
    """The export's network as a Keras model (weights copied from the SavedModel's variables)."""
    from nextword.model.builder import build_model
    from nextword.model.config import ModelConfig

    config = ModelConfig.from_dict(generator.card["model"])
    model = build_model(config)
    weights = [variable.numpy() for variable in generator.loaded.keras_weights]
    model.set_weights(weights)
    return model, config


def notebook_words_per_second(generator, words: int) -> float:
    """The notebook's `generate_text`: predict on the padded window for every word."""
    import tensorflow as tf

    model, config = keras_model_from_export(generator)
    window = generator.loaded.signatures["tokenize"](prompts=tf.constant([PROMPT]))["window"].numpy()
    rng = np.random.default_rng(0)
    model.predict(window, verbose=0)  # warm-up, as a notebook cell would have done
    started = time.perf_counter()
    for _ in range(words):
        logits = model.predict(window, verbose=0).reshape(-1, config.vocab_size)[-1].astype("float64")
        probabilities = np.exp(logits - logits.max())
        probabilities[:2] = 0  # the notebook crashed on id 0; mask it so the loop can run
        next_id = rng.choice(len(probabilities), p=probabilities / probabilities.sum())
        window = np.concatenate([window[:, 1:], [[next_id]]], axis=1).astype("int32")
    return words / (time.perf_counter() - started)


def gen_words_per_second(generator, samples: int, words: int, repeats: int = 3) -> float:
    from nextword.generate.generator import GenerateSettings

    settings = GenerateSettings(words=words, seed=1)
    generator.generate([PROMPT] * samples, settings)  # warm-up (first call builds kernels)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        generator.generate([PROMPT] * samples, settings)
        best = min(best, time.perf_counter() - started)
    return samples * words / best


def time_to_first_word(export_dir: str, compiled: bool = False) -> float:
    """Seconds from launching `gen` to its first byte on stdout (TF import + verify + load + call)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nextword.generate.cli", export_dir, PROMPT, "--words", "30", "--seed", "1", "--stream",
         *(["--compiled"] if compiled else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    process.stdout.read(1)
    elapsed = time.perf_counter() - started
    process.communicate()
    return elapsed


def benchmark_generation(export_dir: str, notebook_words: int = 20, words: int = 200, batch: int = 64) -> dict:
    from nextword.generate.generator import Generator

    generator = Generator.load(export_dir)
    notebook = notebook_words_per_second(generator, notebook_words)
    single = gen_words_per_second(generator, 1, words)
    batched = gen_words_per_second(generator, batch, words)
    return {
        "model": generator.card["model"],
        "notebook_words_per_s": notebook,
        f"gen_1x{words}_words_per_s": single,
        f"gen_{batch}x{words}_words_per_s": batched,
        "speedup_1_sample": single / notebook,
        f"speedup_{batch}_samples": batched / notebook,
        "targets": {"speedup_1_sample": 100, f"speedup_{batch}_samples": 1000},
        "time_to_first_word_s": time_to_first_word(export_dir),
    }


def demo_export(kind: str, directory: str) -> str:
    """A random-weight export: `notebook` (3 x BiLSTM 50, emb 8), `default` (the LSTM recipe), `transformer`
    (the transformer recipe), `transformer-alibi` / `transformer-learned` (the same with ALiBi positions: a
    sliding cache; with learned positions: a cache whose last 3/4 is re-read when the window fills), or
    `transformer-reread` (the transformer re-reading its whole window every word)."""
    from nextword.model import export_graph
    from nextword.model.config import NOTEBOOK_PRESET, TRANSFORMER_DEFAULTS, ModelConfig
    from nextword.model.export import export_model
    from nextword.model.synthetic import random_model, write_data_dir

    words = [f"w{index}" for index in range(498)] + ["last", "night", "i", "went", "on", "a", "date", "with"]
    data_dir = write_data_dir(os.path.join(directory, "data"), context_length=44, words=words)
    settings = {"notebook": NOTEBOOK_PRESET, "default": dict(arch="lstm"),
                "transformer-alibi": dict(TRANSFORMER_DEFAULTS, arch="transformer", positions="alibi"),
                "transformer-learned": dict(TRANSFORMER_DEFAULTS, arch="transformer", positions="learned")}.get(
        kind, dict(TRANSFORMER_DEFAULTS, arch="transformer"))
    config = ModelConfig(vocab_size=len(words) + 2, context_length=44, **settings)
    export_dir = os.path.join(directory, "export")
    make_decoder = export_graph.make_decoder
    if kind == "transformer-reread":  # learned positions, keep = context - 1: a whole window re-read for every word
        config = dataclasses.replace(config, positions="learned")
        export_graph.make_decoder = lambda model, config: export_graph.TransformerDecoder(
            model, config, keep=config.context_length - 1)
    try:
        export_model(random_model(config), config, data_dir, export_dir, {"note": "random weights (speed only)"})
    finally:
        export_graph.make_decoder = make_decoder
    return export_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", nargs="?")
    parser.add_argument("--demo", choices=["notebook", "default", "transformer", "transformer-reread"])
    parser.add_argument("--notebook-words", type=int, default=20)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        export_dir = arguments.export_dir or demo_export(arguments.demo or "notebook", scratch)
        results = benchmark_generation(export_dir, arguments.notebook_words, arguments.words, arguments.batch)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
