"""Transformer generation per word against the LSTM recipe's, in one process (issue 23 item 4).

    python bench/transformer_gen_bench.py [--rounds 5] [--repeats 3] [--export NAME=EXPORT_DIR ...] [--run NAME]

Random-weight exports of this checkout (gen_bench.demo_export: vocabulary 508, context 44): "lstm" (the
LSTM recipe) and "transformer" (the transformer recipe, `nextword train`'s default), with --compiled the
same two loaded to run their loop compiled by XLA (`gen --compiled`; with --mixture the mixed exports too, through
their `advance_compilable`), plus any --export
(e.g. one written by another checkout, to compare two versions of the graph). Every round times each
export in turn, the order rotating from round to round (the machine is shared and noisy): words/s of one
`generate` call at 1 x 200 and 64 x 200 words (the median of `repeats` calls after a warm-up; wall time,
and the process's CPU time beside it, which other processes' load disturbs less), and, unless
--no-first-word, the seconds from launching `gen` to its first word (gen_bench.time_to_first_word).
The notebook loop (`model.predict` per word, 20 words) is timed on the transformer every round, for the ratio
targets (against its median).
Prints JSON: every round (with the 1-minute load average after it), the medians, and each export's words/s
over the LSTM's and over the notebook loop; with --run, records the same in bench/results.json (benchmark
"transformer_gen", that run name).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gen_bench import PROMPT, demo_export, notebook_words_per_second, time_to_first_word  # noqa: E402


def call_rates(generator, samples: int, words: int, repeats: int) -> tuple[float, float]:
    """(words/s by wall time, words/s by the process's CPU time): medians of `repeats` calls."""
    from nextword.generate.generator import GenerateSettings

    settings = GenerateSettings(words=words, seed=1)
    prompts = [PROMPT] * samples
    generator.generate(prompts, settings)  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        generator.generate(prompts, settings)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return samples * words / statistics.median(walls), samples * words / statistics.median(cpus)


def keep_one_export(directory: str) -> str:
    from nextword.model import export_graph

    make_decoder = export_graph.make_decoder
    export_graph.make_decoder = lambda model, config: export_graph.TransformerDecoder(model, config, keep=1)
    try:
        return demo_export("transformer-learned", directory)
    finally:
        export_graph.make_decoder = make_decoder


def mixed_export(kind: str, data_dir: str, directory: str) -> str:
    """A random-weight export of the LSTM recipe ("default"), the transformer recipe ("transformer"), or the
    transformer recipe with ALiBi or learned positions ("transformer-alibi", "transformer-learned") on DATA_DIR,
    mixed as `nextword train` exports it: with the 5-gram and the context cache counted on its train split."""
    from nextword.model.config import TRANSFORMER_DEFAULTS, ModelConfig
    from nextword.model.export import export_model
    from nextword.model.synthetic import random_model
    from nextword.tfrecords.manifest import load_manifest

    manifest = load_manifest(data_dir)
    settings = dict(TRANSFORMER_DEFAULTS, arch="transformer") if kind.startswith("transformer") else dict(arch="lstm")
    if kind in ("transformer-alibi", "transformer-learned"):
        settings["positions"] = kind.split("-")[1]
    config = ModelConfig(vocab_size=manifest.vocab_size, context_length=manifest.context_length, **settings)
    export_model(random_model(config), config, data_dir, directory, {"note": "random weights (speed only)"})
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--batch", default="64", help="rows besides 1, comma-separated (e.g. 8,64)")
    parser.add_argument("--compiled", action="store_true",
                        help="add 'lstm-compiled' and 'transformer-compiled': the same exports loaded with "
                        "Generator.load(compiled=True) (`gen --compiled`: the sampling loop compiled by XLA; the "
                        "warm-up call compiles, untimed)")
    parser.add_argument("--mixture", metavar="DATA_DIR",
                        help="add 'lstm-mixed' and 'transformer-mixed': the two recipes (random weights) exported "
                        "on DATA_DIR with the 5-gram and the context cache, as `nextword train` exports them (the "
                        "default export's gen; the synthetic exports above have no n-gram)")
    parser.add_argument("--alibi", action="store_true",
                        help="add 'transformer-alibi' (and with --mixture 'transformer-alibi-mixed'): the transformer "
                        "recipe with --positions alibi, whose cache slides instead of re-reading its window")
    parser.add_argument("--learned", action="store_true",
                        help="add 'transformer-learned' (and with --mixture 'transformer-learned-mixed'): the transformer "
                        "recipe with --positions learned, whose cache re-reads 3/4 of its window when it fills")
    parser.add_argument("--mixed-only", action="store_true",
                        help="with --mixture: time the mixed exports only (and with --compiled their compiled loops); "
                        "ratios are then over 'lstm-mixed', the LSTM recipe as `nextword train` exports it")
    parser.add_argument("--export", action="append", default=[], metavar="NAME=EXPORT_DIR")
    parser.add_argument("--run", help="record the figures in bench/results.json under this run name")
    parser.add_argument("--no-first-word", action="store_true", help="skip the subprocess launches of gen")
    parser.add_argument("--reread-bound", action="store_true",
                        help="add 'transformer-keep1': the transformer re-reading 1 word when its window fills, so "
                        "almost never: what a cache that slides without re-reading would cost (its words are not the "
                        "model's: a bound for speed only)")
    arguments = parser.parse_args()
    if arguments.mixed_only and not arguments.mixture:
        parser.error("--mixed-only times the exports --mixture DATA_DIR makes: pass --mixture too")
    from nextword.generate.generator import Generator

    with tempfile.TemporaryDirectory() as scratch:
        kinds = (("lstm", "default"), ("transformer", "transformer"))
        if arguments.alibi:
            kinds += (("transformer-alibi", "transformer-alibi"),)
        if arguments.learned:
            kinds += (("transformer-learned", "transformer-learned"),)
        exports = {} if arguments.mixed_only else {kind: demo_export(demo, os.path.join(scratch, kind)) for kind, demo in kinds}
        if arguments.mixture:
            for kind, recipe in kinds:
                exports[f"{kind}-mixed"] = mixed_export(recipe, arguments.mixture, os.path.join(scratch, f"{kind}-mixed"))
        if arguments.reread_bound:
            exports["transformer-keep1"] = keep_one_export(os.path.join(scratch, "keep1"))
        exports.update(dict(item.split("=", 1) for item in arguments.export))
        generators = {name: Generator.load(directory) for name, directory in exports.items()}
        if arguments.compiled:  # the recipes' exports; a mixed one compiles its advance_compilable
            recipes = [kind for kind, _ in kinds] + ([f"{kind}-mixed" for kind, _ in kinds] if arguments.mixture else [])
            for kind in [name for name in recipes if name in exports]:
                exports[f"{kind}-compiled"] = exports[kind]
                generators[f"{kind}-compiled"] = Generator.load(exports[kind], compiled=True)
        batches = [1] + [int(rows) for rows in arguments.batch.split(",")]
        sizes = {f"{rows}x{arguments.words}": rows for rows in batches}
        rounds = []
        names = list(exports)
        transformer = "transformer-mixed" if arguments.mixed_only else "transformer"  # the notebook loop runs its network
        for index in range(arguments.rounds):
            order = names[index % len(names):] + names[: index % len(names)]
            figures = {}
            for name in order:
                figures[name] = {}
                for size, samples in sizes.items():
                    wall, cpu = call_rates(generators[name], samples, arguments.words, arguments.repeats)
                    figures[name][f"{size}_words_per_s"] = round(wall)
                    figures[name][f"{size}_cpu_words_per_s"] = round(cpu)
                if not arguments.no_first_word:
                    figures[name]["first_word_s"] = round(
                        time_to_first_word(exports[name], compiled=name.endswith("-compiled")), 2)
            figures["notebook_words_per_s"] = round(notebook_words_per_second(generators[transformer], 20), 1)
            rounds.append({"order": order, "load_average": round(os.getloadavg()[0], 2), **figures})
            print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
    medians = {name: {key: statistics.median(round_[name][key] for round_ in rounds) for key in rounds[0][name]}
               for name in names}
    notebook = statistics.median(round_["notebook_words_per_s"] for round_ in rounds)
    lstm = "lstm-mixed" if arguments.mixed_only else "lstm"
    ratios = {name: {size: round(medians[name][f"{size}_words_per_s"] / medians[lstm][f"{size}_words_per_s"], 2)
                     for size in sizes} for name in names}
    cpu_ratios = {name: {size: round(medians[name][f"{size}_cpu_words_per_s"] / medians[lstm][f"{size}_cpu_words_per_s"], 2)
                         for size in sizes} for name in names}
    vs_notebook = {name: {size: round(medians[name][f"{size}_words_per_s"] / notebook) for size in sizes}
                   for name in names}
    results = {"notebook_words_per_s": round(notebook, 1), "rounds": rounds, "medians": medians,
               "ratios_over": lstm, "words_per_s_over_lstm": ratios, "cpu_words_per_s_over_lstm": cpu_ratios,
               "words_per_s_over_notebook": vs_notebook}
    print(json.dumps(results, indent=1))
    if arguments.run:
        import store

        store.record("transformer_gen", arguments.run, results,
                     {"command": "bench/transformer_gen_bench.py " + " ".join(sys.argv[1:]), "rounds": arguments.rounds,
                      "repeats": arguments.repeats, "words": arguments.words, "batch": arguments.batch})


if __name__ == "__main__":
    main()
