"""The context cache: P_cache(w | window) = the share of the window's words (pad excluded) that are w.

A third part of the export's mixture (model/ngram_graph.py), beside the network and the n-gram:
p = w_net p_network + w_ngram p_ngram + w_cache p_cache, the weights chosen together by maximum
likelihood on the validation sample (model/ngram.py `fit_weights`). It is the unigram cache of
Kuhn & De Mori (1990), over the model's own input: text repeats the words it has just used
(identifiers in documentation, names in a story), and neither a 5-gram nor a small network
trained for minutes copies them from 44 words back. Measured on held-out windows before it was
built (bench/RESULTS.md, "The context cache"): a 5-gram mixed with it, perplexity 313 -> 172
on the embedded corpus, 229 -> 140 on Vim's help, 22.1 -> 21.9 on the Bible's verses (a verse
rarely repeats its words); a decay favouring the nearest words gained under 1%, so every word
of the window counts the same.

A window with no word (the start of a document, an empty prompt) has no cache: the n-gram's
distribution stands in for it, so the mixture there is the network's and the n-gram's alone.
When generating, a position holding the model's own sample counts as the n-gram's distribution
instead of its word (model/ngram_graph.py): a cache of its own output feeds on itself. The first
demo with it sampled "the function returns function function function under the function name
function function ..." at temperature 0.7; leaving the samples out altogether kept the prompt's
three words at a third of the cache each for the whole sample ("a class definition class getitem
is a a a a"), where in real text they thin out as the window fills.
numpy only, as model/ngram.py.
"""

from __future__ import annotations

import numpy as np

from nextword.model.ngram import PAD


def cache_probabilities(contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """float64[n]: P_cache(target | window) of each row of contexts int[n, width]; NaN where the
    window holds no word (only pad)."""
    words = contexts != PAD
    hits = np.count_nonzero(words & (contexts == np.asarray(targets)[:, None]), axis=1)
    held = np.count_nonzero(words, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(held > 0, hits / np.maximum(held, 1), np.nan)


def cache_log_probabilities(contexts: np.ndarray, targets: np.ndarray, fallback_log_p: np.ndarray) -> np.ndarray:
    """float64[n]: log P_cache(target | window), -inf where the target is not in its window, and
    fallback_log_p (the n-gram's) where the window holds no word."""
    probabilities = cache_probabilities(contexts, targets)
    with np.errstate(divide="ignore"):
        return np.where(np.isnan(probabilities), fallback_log_p, np.log(np.nan_to_num(probabilities)))


def cache_distributions(contexts: np.ndarray, vocab_size: int, fallback: np.ndarray, samples: int = 0) -> np.ndarray:
    """float64[n, V]: P_cache(. | each window); fallback float[n, V] (the n-gram's) for a window
    holding no word; the windows' last `samples` ids are the model's own and count as the fallback's
    distribution. The reference the graph's version is tested against."""
    samples = min(samples, contexts.shape[1])
    given = contexts[:, :contexts.shape[1] - samples]
    counts = np.zeros((len(contexts), vocab_size))
    rows = np.repeat(np.arange(len(contexts)), given.shape[1])
    np.add.at(counts, (rows, given.reshape(-1)), 1.0)
    counts[:, PAD] = 0.0
    counts += np.count_nonzero(contexts[:, contexts.shape[1] - samples:] != PAD, axis=1)[:, None] * fallback
    held = counts.sum(axis=1, keepdims=True)
    return np.where(held > 0, counts / np.maximum(held, 1.0), fallback)
