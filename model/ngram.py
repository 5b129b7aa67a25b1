"""An interpolated modified Kneser-Ney n-gram model: the baseline every recipe has to beat.

Counted from the train split's windows, scored on the val split's exactly as `nextword eval`
scores a model: an event is one window's final word (the target) given the order - 1 ids before
it. Windows are pre-padded with id 0 at document starts, so a 0 in a context means "before the
start of the document" (a beginning-of-document symbol, as the model sees it). Events whose
target is 0 are neither counted nor scored; `<unk>` (1) is an ordinary word. The distribution is
over the whole vocabulary 0..V-1, like the model's softmax. With stride 1 every train window is
one event, so counting them counts every n-gram of every train document.

Interpolated modified Kneser-Ney (Chen & Goodman 1998), for n = order down to 1:

    P_n(w | h) = (a(h w) - D_n(a(h w))) / a(h .)  +  gamma(h) P_{n-1}(w | h'),   P_0(w) = 1 / V
    gamma(h)   = (D_n,1 N1(h .) + D_n,2 N2(h .) + D_n,3+ N3+(h .)) / a(h .)

h' drops h's farthest word; a(h .) sums a over the words seen after h; Nk(h .) counts the words
seen after h with a = k (k >= 3 for N3+). A context h never seen in training backs off whole:
P_n(w | h) = P_{n-1}(w | h'). The adjusted count a is the raw count at the highest order and the
continuation count N1+(. h w) (distinct words seen before h w) below, except for n-grams that
start with pad, whose only left neighbour is pad: they keep their raw count (as KenLM does for
<s>). Per order, D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3 with Y = n1/(n1 + 2 n2)
and nk the number of that order's n-grams with a = k; where these are undefined or outside
(0, k], that order takes KenLM's `--discount_fallback` values 0.5, 1, 1.5.

The core (count_events ... word_probability) is numpy only: importing this module does not import
TensorFlow; `events_from_dataset` and `baseline` import the project's reader when called.
Contexts are numbered by a trie over the ids nearest the target first: the node of the last k ids
is found from the node of the last k - 1 by one sorted-key lookup, for a whole batch. Measured on
one core (taskset -c 0): Vim's help at vocabulary 5,000, 1.35M train events counted in 1.2 s, 166K
val events scored over the full vocabulary in 6.7 s (11.3 s with reading both splits).

`nextword demo` prints `baseline` of its dataset (no cache); `python bench/kneser_ney.py DATA_DIR`
is the command line (cached under bench/work/kneser-ney).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

ALGORITHM = "modified-kn-1"  # in the cache key: a change to counting or scoring must recount
PAD = 0
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # KenLM lmplz --discount_fallback's defaults
DEFAULT_ORDER = 5  # the export's n-gram (model/export.py): a 5-gram, as the baseline every recipe is held to
# The most train events an export counts: ~40 bytes of tables an event (KJV 743K events: 21 MB; Vim's help
# 1.35M: 57 MB), so an export's stay under ~160 MB; a bigger dataset is counted on its first MAX_EVENTS
# train windows, a sample of its documents (ingest shuffles records at write time).
MAX_EVENTS = 4_000_000
SCORE_BATCH = 1024  # rows of float64[rows, V] built at once (40 MB at V = 5,000)


@dataclass(frozen=True)
class Level:
    """The table of one order n; its contexts are the trie nodes of depth n - 1.

    offsets int64[contexts + 1]: the words seen after context h are entries offsets[h]:offsets[h + 1];
    words int32[entries], ascending within a context; counts float64[entries]: adjusted counts a;
    discounted float64[entries]: (a - D(a)) / a(h .); backoff float64[contexts]: gamma(h);
    discounts float64[3]: D1, D2, D3+ of this order.
    """

    offsets: np.ndarray
    words: np.ndarray
    counts: np.ndarray
    discounted: np.ndarray
    backoff: np.ndarray
    discounts: np.ndarray


@dataclass(frozen=True)
class KneserNey:
    """A counted model. trie[k - 1]: int64[nodes of depth k], sorted keys parent node * V + id, where
    id is the k-th id back from the target; levels[n - 1]: order n; unigram float64[V]: P_1."""

    vocab_size: int
    order: int
    trie: tuple[np.ndarray, ...]
    levels: tuple[Level, ...]
    unigram: np.ndarray


def modified_discounts(counts: np.ndarray) -> np.ndarray:
    """float64[3] D1, D2, D3+ from the count-of-counts of one order's adjusted counts float64[grams]."""
    n1, n2, n3, n4 = (np.count_nonzero(counts == k) for k in (1, 2, 3, 4))
    if min(n1, n2, n3) == 0:
        return np.array(FALLBACK_DISCOUNTS)
    y = n1 / (n1 + 2 * n2)
    discounts = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    # D <= k keeps every discounted count >= 0; D > 0 leaves mass for the order below
    if not ((discounts > 0) & (discounts <= np.array([1.0, 2.0, 3.0]))).all():
        return np.array(FALLBACK_DISCOUNTS)
    return discounts


def build_trie(contexts: np.ndarray, vocab_size: int) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """contexts int64[n, width] -> (trie: width arrays of sorted node keys, node_ids: width + 1 arrays
    int64[n], node_ids[k] = each row's node for its last k ids; node_ids[0] = the empty context 0)."""
    node_ids, trie = [np.zeros(len(contexts), np.int64)], []
    for depth in range(1, contexts.shape[1] + 1):
        keys, ids = np.unique(node_ids[-1] * vocab_size + contexts[:, -depth], return_inverse=True)
        trie.append(keys)
        node_ids.append(ids.reshape(-1))
    return tuple(trie), node_ids


def lower_order_counts(keys: np.ndarray, counts: np.ndarray, trie: tuple, depth: int,
                       vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Order depth + 2 n-grams (sorted keys node * V + word, adjusted counts float64) -> order depth + 1."""
    nodes, words = np.divmod(keys, vocab_size)
    parents = trie[depth][nodes] // vocab_size  # the context without its farthest id
    if depth == 0:
        starts_with_pad = np.zeros(len(keys), bool)
    else:  # the parent's farthest id is the lower n-gram's first
        starts_with_pad = trie[depth - 1][parents] % vocab_size == PAD
    # a pad-started n-gram has one left neighbour (pad), whose count is its own raw count
    contributions = np.where(starts_with_pad, counts, 1.0)
    lower_keys, inverse = np.unique(parents * vocab_size + words, return_inverse=True)
    return lower_keys, np.bincount(inverse.reshape(-1), weights=contributions, minlength=len(lower_keys))


def build_level(keys: np.ndarray, counts: np.ndarray, contexts: int, vocab_size: int) -> Level:
    """One order's table from its n-grams (sorted keys context node * V + word, adjusted counts)."""
    context_of, words = np.divmod(keys, vocab_size)
    discounts = modified_discounts(counts)
    discount_of = discounts[np.minimum(counts, 3).astype(np.int64) - 1]
    totals = np.bincount(context_of, weights=counts, minlength=contexts)
    left_over = np.bincount(context_of, weights=discount_of, minlength=contexts)  # D1 N1 + D2 N2 + D3 N3+
    return Level(offsets=np.searchsorted(context_of, np.arange(contexts + 1)), words=words.astype(np.int32),
                 counts=counts, discounted=(counts - discount_of) / totals[context_of],
                 backoff=left_over / totals, discounts=discounts)


def count_events(contexts: np.ndarray, targets: np.ndarray, vocab_size: int, order: int = 5) -> KneserNey:
    """Count events: contexts int[n, >= order - 1] (the last order - 1 columns are used), targets int[n].

    Events whose target is pad 0 are dropped.
    """
    width = order - 1
    keep = targets != PAD
    if not keep.any():
        raise ValueError("no training events with a non-pad target to count")
    contexts = contexts[keep][:, contexts.shape[1] - width:].astype(np.int64)
    targets = targets[keep].astype(np.int64)
    trie, node_ids = build_trie(contexts, vocab_size)
    keys, counts = np.unique(node_ids[width] * vocab_size + targets, return_counts=True)
    grams = [(keys, counts.astype(np.float64))]
    for depth in range(width - 1, -1, -1):
        grams.append(lower_order_counts(*grams[-1], trie, depth, vocab_size))
    node_counts = [1, *(len(nodes) for nodes in trie)]
    levels = tuple(build_level(keys, counts, node_counts[n - 1], vocab_size)
                   for n, (keys, counts) in enumerate(reversed(grams), start=1))
    unigram = np.full(vocab_size, levels[0].backoff[0] / vocab_size)
    unigram[levels[0].words] += levels[0].discounted
    return KneserNey(vocab_size, order, trie, levels, unigram)


def context_nodes(model: KneserNey, contexts: np.ndarray) -> np.ndarray:
    """contexts int[b, >= order - 1] -> int64[b, order]: column k = the trie node of each row's last k
    ids (column 0 = 0, the empty context), -1 where the training events never had that context."""
    contexts = np.asarray(contexts, np.int64)
    nodes = np.zeros((len(contexts), model.order), np.int64)
    for depth in range(1, model.order):
        table, above = model.trie[depth - 1], nodes[:, depth - 1]
        keys = above * model.vocab_size + contexts[:, -depth]
        at = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        nodes[:, depth] = np.where((above >= 0) & (table[at] == keys), at, -1)
    return nodes


def continuation_entries(offsets: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows int64[m], entries int64[m]): every entry offsets[node]:offsets[node + 1] of every row's node."""
    starts, lengths = offsets[nodes], offsets[nodes + 1] - offsets[nodes]
    rows = np.repeat(np.arange(len(nodes)), lengths)
    first_of_row = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, np.arange(len(rows)) - first_of_row + np.repeat(starts, lengths)


def predictive_distributions(model: KneserNey, contexts: np.ndarray) -> np.ndarray:
    """contexts int[b, >= order - 1] -> float64[b, V]: P(. | each row's last order - 1 ids).

    Unrolled interpolation: P = sum over seen orders n >= 2 of (product of the backoffs above n)
    x discounted counts of order n, plus (product of all seen backoffs) x P_1. So one dense
    outer product and, per order, sparse additions on the words seen after the row's context.
    """
    nodes = context_nodes(model, contexts)
    weight = np.ones(len(nodes))  # product of the backoffs of the seen orders above the current one
    additions = []
    for n in range(model.order, 1, -1):
        level, seen = model.levels[n - 1], np.flatnonzero(nodes[:, n - 1] >= 0)
        rows, entries = continuation_entries(level.offsets, nodes[seen, n - 1])
        additions.append((seen[rows], level.words[entries], weight[seen][rows] * level.discounted[entries]))
        weight[seen] *= level.backoff[nodes[seen, n - 1]]
    distributions = np.multiply.outer(weight, model.unigram)
    for rows, words, values in additions:
        distributions[rows, words] += values  # (row, word) pairs are distinct within one order
    return distributions


def target_ranks(distributions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """int64[b]: ids ranked before each target, ties to the lower id (as tf.math.top_k breaks them).

    distributions float64[b, V]; targets int[b]. top-k hit <=> rank < k.
    """
    chosen = distributions[np.arange(len(targets)), targets][:, None]
    before = np.arange(distributions.shape[1])[None, :] < np.asarray(targets)[:, None]
    return np.count_nonzero((distributions > chosen) | ((distributions == chosen) & before), axis=1)


def score_events(model: KneserNey, contexts: np.ndarray, targets: np.ndarray,
                 batch_size: int = SCORE_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(log_probabilities float64[n], ranks int64[n]) of targets int[n] given contexts int[n, >= order - 1]."""
    log_probabilities, ranks = np.empty(len(targets)), np.empty(len(targets), np.int64)
    for start in range(0, len(targets), batch_size):
        batch = slice(start, start + batch_size)
        distributions = predictive_distributions(model, contexts[batch])
        log_probabilities[batch] = np.log(distributions[np.arange(len(distributions)), targets[batch]])
        ranks[batch] = target_ranks(distributions, targets[batch])
    return log_probabilities, ranks


def evaluate(model: KneserNey, contexts: np.ndarray, targets: np.ndarray) -> dict:
    """{"loss", "perplexity", "top1", "top5", "windows"} over the events whose target is not pad, as
    model/metrics.py counts them: loss = mean NLL (nats), perplexity = exp(loss)."""
    scored = targets != PAD
    log_probabilities, ranks = score_events(model, contexts[scored], targets[scored])
    windows = len(ranks)
    loss = float(-log_probabilities.sum() / max(windows, 1))
    return {"loss": loss, "perplexity": math.exp(loss), "top1": float(np.mean(ranks < 1)) if windows else 0.0,
            "top5": float(np.mean(ranks < 5)) if windows else 0.0, "windows": windows}


def word_probability(model: KneserNey, context, word: int) -> float:
    """P(word | context) by the recursion itself, one word at a time (the reference the tests hold
    predictive_distributions to). context: ids, the last order - 1 are used."""
    nodes = context_nodes(model, np.asarray([context]))[0]
    probability = 1.0 / model.vocab_size
    for n, level in enumerate(model.levels, start=1):
        node = nodes[n - 1]
        if node < 0:  # unseen context: the order below, whole (and every higher order is unseen too)
            break
        first, last = level.offsets[node], level.offsets[node + 1]
        at = first + np.searchsorted(level.words[first:last], word)
        seen = level.discounted[at] if at < last and level.words[at] == word else 0.0
        probability = seen + level.backoff[node] * probability
    return float(probability)


def fit_network_weight(network_log_p: np.ndarray, ngram_log_p: np.ndarray, iterations: int = 500,
                       tolerance: float = 1e-7) -> float:
    """The weight w maximising the likelihood of p = w p_network + (1 - w) p_ngram over held-out
    events, given each model's log-probability of the target (float64[n] each): `fit_weights` of
    the two. 0.5 for no events.

    A single weight: weights per highest seen context order gave the same held-out perplexity on
    the embedded corpus (280.53 vs 280.67, bench/RESULTS.md) for five times the parameters."""
    return float(fit_weights([network_log_p, ngram_log_p], iterations, tolerance)[0])


def fit_weights(log_ps: list[np.ndarray], iterations: int = 500, tolerance: float = 1e-7) -> np.ndarray:
    """float64[K]: the weights (summing to 1) maximising the likelihood of p = sum_k w_k p_k over
    held-out events, given each of K models' log-probability of the target (float64[n] each; -inf
    where a model gives it none), by EM: it converges monotonically for a convex combination
    (Jelinek & Mercer 1980). Equal weights for no events."""
    log_p = np.asarray(log_ps, dtype=np.float64)
    weights = np.full(len(log_p), 1.0 / len(log_p))
    if log_p.shape[1] == 0:
        return weights
    probabilities = np.exp(log_p - log_p.max(axis=0))  # exp of very negative logs would underflow to 0/0
    for _ in range(iterations):
        shares = weights[:, None] * probabilities
        shares /= shares.sum(axis=0)
        weights, previous = shares.mean(axis=1), weights
        if np.abs(weights - previous).max() < tolerance:
            break
    return weights


def mixture_log_probabilities(network_log_p: np.ndarray, ngram_log_p: np.ndarray, weight: float) -> np.ndarray:
    """log(w p_network + (1 - w) p_ngram), elementwise, from both log-probabilities."""
    with np.errstate(divide="ignore"):  # a weight of exactly 0 or 1
        return np.logaddexp(np.log(weight) + network_log_p, np.log1p(-weight) + ngram_log_p)


def events_from_dataset(data_dir: str, split: str, order: int = 5,
                        max_events: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(contexts int32[n, order - 1], targets int32[n]): every window of the split in the order
    `nextword eval` reads them (objective "last"), pad targets included; with max_events, the
    first max_events of them (ingest shuffles records at write time: a sample of documents)."""
    from nextword.errors import SettingsError
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(data_dir)
    if manifest.context_length < order - 1:
        raise SettingsError(f"a {order}-gram needs {order - 1} context ids, the dataset's windows have "
                            f"{manifest.context_length}", hint=f"use --order {manifest.context_length + 1} or less")
    contexts, targets = [], []
    config = ReaderConfig(batch_size=4096, objective="last", training=False)
    held = 0
    for context, target, _ in make_dataset(data_dir, split, config, manifest=manifest):
        contexts.append(context.numpy()[:, manifest.context_length - (order - 1):])
        targets.append(target.numpy())
        held += len(targets[-1])
        if max_events is not None and held >= max_events:
            break
    if not targets:
        return np.zeros((0, order - 1), np.int32), np.zeros(0, np.int32)
    return np.concatenate(contexts)[:max_events], np.concatenate(targets)[:max_events]


def cache_path(fingerprint: str, order: int, cache_dir: str) -> str:
    """Where baseline() keeps the figures of a dataset (by its fingerprint) under cache_dir."""
    return os.path.join(cache_dir, f"{fingerprint}-order{order}-{ALGORITHM}.json")


def baseline(data_dir: str, order: int = 5, cache_dir: str | None = None) -> dict:
    """Count the train split, score the val split: {"perplexity", "loss", "top1", "top5", "windows",
    "order", "train_events", "seconds", ...}. With cache_dir, the figures are kept there as JSON by
    the dataset's fingerprint and a second call reads them back; None (the default), or a dataset
    without a fingerprint: counted every time, nothing written."""
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import make_dataset  # noqa: F401 - imports TensorFlow before the clock starts

    manifest = load_manifest(data_dir)
    path = cache_path(manifest.fingerprint, order, cache_dir) if cache_dir and manifest.fingerprint else None
    if path and os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    started = time.perf_counter()
    train = events_from_dataset(data_dir, "train", order)
    val = events_from_dataset(data_dir, "val", order)
    read = time.perf_counter()
    model = count_events(*train, manifest.vocab_size, order)
    counted = time.perf_counter()
    result = {**evaluate(model, *val), "order": order, "train_events": int(np.count_nonzero(train[1] != PAD)),
              "vocab_size": manifest.vocab_size, "read_seconds": round(read - started, 2),
              "count_seconds": round(counted - read, 2), "score_seconds": round(time.perf_counter() - counted, 2)}
    result["seconds"] = round(time.perf_counter() - started, 2)
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        with open(path + ".tmp", "w") as handle:
            json.dump(result, handle, indent=1)
        os.replace(path + ".tmp", path)  # a killed run leaves no half-written cache
    return result


def summary_line(result: dict, data_dir: str) -> str:
    """One line of baseline()'s figures, for a terminal."""
    return (f"{result['order']}-gram Kneser-Ney on {data_dir}: perplexity {result['perplexity']:.2f}  "
            f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  ({result['windows']:,} val windows, "
            f"{result['train_events']:,} train events; {result['seconds']:.1f} s = read {result['read_seconds']:.1f} "
            f"+ count {result['count_seconds']:.1f} + score {result['score_seconds']:.1f})")
