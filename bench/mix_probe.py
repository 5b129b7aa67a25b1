#!/usr/bin/env python3
"""Where the 5-gram beats the network, and what mixing the two would give (issue 19's open gap).

    python bench/mix_probe.py RUN_DIR DATA_DIR [--json]

RUN_DIR: a `nextword train ... --export` run on DATA_DIR. Every val window `nextword eval` scores
(objective "last" order, pad targets skipped) is scored twice: by the export's `score_ids` (the
network's kept weights) and by the interpolated Kneser-Ney 5-gram counted on the train windows
(model/ngram.py). Printed:

- both perplexities and top-1 over all windows, as `eval` and bench/kneser_ney.py give them;
- the same per bucket of the highest 5-gram order whose context was seen in train (5: the four
  words before the target occurred in train; 1: not even the last word did): where each model wins;
- a linear mixture p = w * p_network + (1 - w) * p_5gram, its weight chosen on the even-numbered
  windows and scored on the odd ones and the other way round (two-fold, no peeking): what an
  export that carried the 5-gram beside the network would reach;
- the network alone with its logits divided by one temperature, chosen the same two-fold way
  (temperature scaling, Guo et al. 2017): how much of the gap is calibration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


TEMPERATURES = np.round(np.arange(0.8, 3.01, 0.05), 2)


def network_log_probabilities(export_dir: str, contexts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p(target) float64[temperatures, n] with the logits divided by each of TEMPERATURES,
    rank of target int[n]) under the export's score_ids, in batches."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

    loaded = tf.saved_model.load(os.path.join(export_dir, "saved_model"))
    score = loaded.signatures["score_ids"]
    logs, ranks = [], []
    for start in range(0, len(targets), 1024):
        logits = score(context=tf.constant(contexts[start:start + 1024], tf.int32))["logits"].numpy().astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        rows, batch_targets = np.arange(len(logits)), targets[start:start + 1024]
        per_temperature = []
        for temperature in TEMPERATURES:
            scaled = logits / temperature
            per_temperature.append(scaled[rows, batch_targets] - np.log(np.exp(scaled).sum(axis=1)))
        logs.append(np.stack(per_temperature))
        ranks.append((logits > logits[rows, batch_targets][:, None]).sum(axis=1))
    return np.concatenate(logs, axis=1), np.concatenate(ranks)


def mixture_top1(export_dir: str, five_gram, contexts: np.ndarray, targets: np.ndarray, weight_of_row: np.ndarray) -> float:
    """Top-1 of p = w * p_network + (1 - w) * p_5gram over whole distributions (w per row)."""
    import tensorflow as tf

    from nextword.model.ngram import predictive_distributions

    score = tf.saved_model.load(os.path.join(export_dir, "saved_model")).signatures["score_ids"]
    hits = 0
    for start in range(0, len(targets), 1024):
        batch = slice(start, start + 1024)
        logits = score(context=tf.constant(contexts[batch], tf.int32))["logits"].numpy().astype(np.float64)
        network = np.exp(logits - logits.max(axis=1, keepdims=True))
        network /= network.sum(axis=1, keepdims=True)
        mixed = weight_of_row[batch, None] * network + (1 - weight_of_row[batch, None]) * predictive_distributions(
            five_gram, contexts[batch][:, -(five_gram.order - 1):])
        hits += int((mixed.argmax(axis=1) == targets[batch]).sum())
    return hits / max(1, len(targets))


def mixture_loss(log_a: np.ndarray, log_b: np.ndarray, weight: float) -> float:
    return float(-np.mean(np.logaddexp(np.log(weight) + log_a, np.log1p(-weight) + log_b)))


def best_weight(log_a: np.ndarray, log_b: np.ndarray) -> float:
    grid = np.linspace(0.01, 0.99, 99)
    return float(grid[int(np.argmin([mixture_loss(log_a, log_b, weight) for weight in grid]))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("data_dir")
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    from nextword.model.ngram import context_nodes, count_events, events_from_dataset, score_events
    from nextword.tfrecords.manifest import load_manifest

    manifest = load_manifest(arguments.data_dir)
    order = 5
    train_contexts, train_targets = events_from_dataset(arguments.data_dir, "train", order)
    keep = train_targets != 0
    five_gram = count_events(train_contexts[keep], train_targets[keep], manifest.vocab_size, order)
    # the network needs whole windows: read val again with the full context
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    contexts, targets = [], []
    for context, target, _ in make_dataset(arguments.data_dir, "val", ReaderConfig(batch_size=4096, objective="last",
                                                                                 training=False), manifest=manifest):
        contexts.append(context.numpy())
        targets.append(target.numpy())
    contexts, targets = np.concatenate(contexts), np.concatenate(targets)
    scored = targets != 0
    contexts, targets = contexts[scored], targets[scored]
    ngram_log, ngram_rank = score_events(five_gram, contexts[:, -(order - 1):], targets)
    scaled_log, network_rank = network_log_probabilities(os.path.join(arguments.run_dir, "export"), contexts, targets)
    network_log = scaled_log[list(TEMPERATURES).index(1.0)]
    # the highest order whose context the 5-gram saw: 1 + the number of trailing context words seen
    nodes = context_nodes(five_gram, contexts[:, -(order - 1):])
    seen_order = 1 + (nodes[:, 1:] >= 0).sum(axis=1)

    def figures(log_p: np.ndarray, ranks: np.ndarray) -> dict:
        return {"perplexity": round(math.exp(-float(np.mean(log_p))), 2), "top1": round(float(np.mean(ranks < 1)), 4),
                "windows": int(len(log_p))}

    result = {"network": figures(network_log, network_rank), "five_gram": figures(ngram_log, ngram_rank), "buckets": {}}
    for level in range(1, order + 1):
        chosen = seen_order == level
        if chosen.any():
            result["buckets"][level] = {"share": round(float(chosen.mean()), 4),
                                        "network": figures(network_log[chosen], network_rank[chosen]),
                                        "five_gram": figures(ngram_log[chosen], ngram_rank[chosen])}
    even, odd = np.arange(len(targets)) % 2 == 0, np.arange(len(targets)) % 2 == 1
    weights = {"even": best_weight(network_log[even], ngram_log[even]), "odd": best_weight(network_log[odd], ngram_log[odd])}
    held_out = (mixture_loss(network_log[odd], ngram_log[odd], weights["even"]) * odd.sum()
                + mixture_loss(network_log[even], ngram_log[even], weights["odd"]) * even.sum()) / len(targets)
    weight_of_row = np.where(odd, weights["even"], weights["odd"])  # each half by the weight the other chose
    result["mixture"] = {"network_weight_chosen_on_even_odd": weights, "perplexity_two_fold": round(math.exp(held_out), 2),
                         "top1_two_fold": round(mixture_top1(os.path.join(arguments.run_dir, "export"), five_gram,
                                                             contexts, targets, weight_of_row), 4)}
    # temperature scaling (Guo et al. 2017): one scalar dividing the logits, chosen on the other half
    chosen_t = {half: float(TEMPERATURES[int(np.argmin(-scaled_log[:, mask].mean(axis=1)))])
                for half, mask in (("even", even), ("odd", odd))}
    scaled_loss = (-scaled_log[list(TEMPERATURES).index(chosen_t["even"]), odd].sum()
                   - scaled_log[list(TEMPERATURES).index(chosen_t["odd"]), even].sum()) / len(targets)
    result["temperature"] = {"chosen_on_even_odd": chosen_t, "perplexity_two_fold": round(math.exp(scaled_loss), 2)}
    if arguments.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"val windows {len(targets):,}: network {result['network']}, 5-gram {result['five_gram']}")
    for level, bucket in result["buckets"].items():
        print(f"  5-gram context seen up to order {level} ({bucket['share']:.1%} of windows): network "
              f"{bucket['network']['perplexity']} / top-1 {bucket['network']['top1']}, 5-gram "
              f"{bucket['five_gram']['perplexity']} / top-1 {bucket['five_gram']['top1']}")
    print(f"linear mixture (network weight {weights['even']} / {weights['odd']}, chosen on the other half): "
          f"perplexity {result['mixture']['perplexity_two_fold']}, top-1 {result['mixture']['top1_two_fold']}")
    print(f"the network alone, logits divided by a temperature ({chosen_t['even']} / {chosen_t['odd']}, chosen on the "
          f"other half; top-1 unchanged): perplexity {result['temperature']['perplexity_two_fold']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
