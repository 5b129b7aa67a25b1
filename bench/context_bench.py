#!/usr/bin/env python
"""Generation past the context: held-out next-word loss by distance past the window, for a
recurrent state carried word to word vs re-reading the last `context` words from a zero state.
A transformer's "carried" is how its export generates (model/export_graph.py `make_decoder`): the
key/value cache with its last 3/4 re-read when the window fills (learned positions), or the ring
that slides without re-reading (ALiBi positions).

The model trains on windows of `context` ids from a zero state. `gen` reads the prompt's last
`context` words that way, then either carries the recurrent state on (one cell step per word:
cheap, and the state keeps what slid out of the window, but it runs longer than any state seen
in training) or re-reads the last `context` words for every word (exactly the training
condition; `context` cell steps per word). This measures which predicts held-out text better,
teacher-forced: start from a held-out document's window at offset s, then for k = 0..horizon
score word s+context+k both ways.

    python bench/context_bench.py RUN_DIR CORPUS [--horizon 300] [--every 20] [--json OUT]

CORPUS: the text the run's dataset was ingested from (one document per line, or `builtin`);
its held-out documents are found with ingest's own split rule (document key, val_fraction).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BINS = ((0, 1), (1, 11), (11, 45), (45, 101), (101, 201), (201, 301), (301, 501), (501, 1001))


def held_out_documents(corpus: str, manifest, vocabulary: list[str], min_tokens: int,
                       column: str | None = None) -> list[np.ndarray]:
    import tensorflow as tf

    from nextword.ingest.sources import BUILTIN, iter_documents, resolve_inputs
    from nextword.ingest.text import tokenize_to_ids, vocabulary_table
    from nextword.ingest.windows import document_keys, is_validation

    specs = resolve_inputs([BUILTIN if corpus == "builtin" else corpus], "auto", column)
    table = vocabulary_table(vocabulary)
    documents = []
    for batch in iter_documents(specs, "skip"):
        keys = document_keys(batch.texts)
        held_out = [text for text, val in zip(batch.texts, is_validation(keys, manifest.val_fraction)) if val]
        if held_out:
            ids = tokenize_to_ids(tf.constant(held_out), table)
            documents.extend(np.asarray(row, np.int32) for row in ids.to_list() if len(row) >= min_tokens)
    return documents


def starts(documents: list[np.ndarray], context: int, horizon: int, every: int) -> list[tuple[int, int]]:
    return [(index, start) for index, document in enumerate(documents)
            for start in range(0, len(document) - context - horizon, every)]


def losses_by_distance(decoder, documents, points, context: int, horizon: int, batch: int = 64) -> dict:
    """{"carried": float[horizon+1], "reread": float[horizon+1]} mean NLL at distance k past the window."""
    import tensorflow as tf

    sums = {"carried": np.zeros(horizon + 1), "reread": np.zeros(horizon + 1)}
    advance = tf.function(decoder.advance)  # as generation calls it: the history so far and its last column
    window_fn = tf.function(decoder.start)

    def nll(logits, targets):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits).numpy()

    for first in range(0, len(points), batch):
        chunk = points[first:first + batch]
        rows = np.stack([documents[i][s:s + context + horizon + 1] for i, s in chunk])  # [b, context+horizon+1]
        logits, states = window_fn(tf.constant(rows[:, :context]))
        history = tf.constant(rows)
        for k in range(horizon + 1):
            target = tf.constant(rows[:, context + k])
            sums["carried"][k] += nll(logits, target).sum()
            if k < horizon:
                logits, states = advance(states, target, history, tf.constant(context + k))
        # Re-reading: word context+k predicted from the window ending just before it.
        windows = np.stack([rows[:, k:k + context] for k in range(horizon + 1)], axis=1).reshape(-1, context)
        targets = rows[:, context:context + horizon + 1].reshape(-1)
        for low in range(0, len(windows), 4096):
            logits_all, _ = window_fn(tf.constant(windows[low:low + 4096]))
            values = nll(logits_all, tf.constant(targets[low:low + 4096]))
            ks = np.tile(np.arange(horizon + 1), len(chunk))[low:low + 4096]
            np.add.at(sums["reread"], ks, values)
    return {name: values / len(points) for name, values in sums.items()}


def binned(curve: np.ndarray) -> list[dict]:
    rows = []
    for low, high in BINS:
        if low < len(curve):
            part = curve[low:min(high, len(curve))]
            rows.append({"from": low, "to": min(high, len(curve)) - 1, "loss": float(part.mean()),
                         "perplexity": float(np.exp(part.mean()))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("corpus")
    parser.add_argument("--horizon", type=int, default=300, help="words past the window to score")
    parser.add_argument("--every", type=int, default=20, help="a start point every N tokens of a held-out document")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--column", help="a table corpus's text column (bench/work/vim-help.jsonl: text)")
    parser.add_argument("--label", help="record the result in the results store as run LABEL of benchmark \"context\"")
    parser.add_argument("--store", help="the results store (default bench/results.json)")
    args = parser.parse_args()

    from nextword.quiet import load_tensorflow

    load_tensorflow()
    from nextword.model import checkpointing
    from nextword.model.builder import build_model
    from nextword.model.config import ModelConfig
    from nextword.model.export_graph import make_decoder
    from nextword.tfrecords.manifest import load_manifest

    record = checkpointing.read_run_file(args.run_dir)
    config = ModelConfig.from_dict(record["model_config"])
    manifest = load_manifest(record["data_dir"])
    vocabulary = open(os.path.join(record["data_dir"], "vocab.txt"), encoding="utf-8").read().splitlines()
    model = build_model(config)
    checkpointing.restore_model_weights(args.run_dir, model)
    decoder = make_decoder(model, config)
    documents = held_out_documents(args.corpus, manifest, vocabulary, config.context_length + args.horizon + 1, args.column)
    points = starts(documents, config.context_length, args.horizon, args.every)
    if not points:
        sys.exit(f"no held-out document holds {config.context_length + args.horizon + 1} tokens")
    started = time.monotonic()
    curves = losses_by_distance(decoder, documents, points, config.context_length, args.horizon)
    result = {
        "run_dir": args.run_dir, "corpus": args.corpus, "model": record["model_config"],
        "documents": len(documents), "start_points": len(points), "horizon": args.horizon,
        "seconds": round(time.monotonic() - started, 1),
        "carried": binned(curves["carried"]), "reread": binned(curves["reread"]),
        "mean_loss": {name: float(curve.mean()) for name, curve in curves.items()},
        "mean_loss_first_30": {name: float(curve[:30].mean()) for name, curve in curves.items()},
    }
    print(f"{len(points)} start points in {len(documents)} held-out documents, horizon {args.horizon}")
    print(f"{'words past the window':>24} {'carried':>9} {'re-read':>9}   (perplexity)")
    for carried, reread in zip(result["carried"], result["reread"]):
        print(f"{carried['from']:>11} .. {carried['to']:<10} {carried['perplexity']:>9.2f} {reread['perplexity']:>9.2f}")
    for name in ("mean_loss_first_30", "mean_loss"):
        values = result[name]
        print(f"{name}: carried {np.exp(values['carried']):.2f}  re-read {np.exp(values['reread']):.2f} (perplexity)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    if args.label:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import store

        store.record("context", args.label, result, {"run_dir": args.run_dir, "corpus": args.corpus,
                                                     "horizon": args.horizon, "every": args.every}, args.store or store.STORE)


if __name__ == "__main__":
    main()
