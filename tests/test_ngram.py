"""The Kneser-Ney baseline against hand-computed probabilities (tiny corpora, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from model.ngram import KneserNey, discount


def bigram_events(tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One document as (previous id, id) events; 0 before the first word."""
    previous = [0, *tokens[:-1]]
    return np.array(previous, np.int64)[:, None], np.array(tokens, np.int64)


def test_bigram_probabilities_equal_the_hand_computation():
    # vocabulary 0..4 (0 pad, 1 unk); document: 2 3 2 3 2 4 ; bigram events (0,2) (2,3) (3,2) (2,3) (3,2) (2,4)
    contexts, targets = bigram_events([2, 3, 2, 3, 2, 4])
    model = KneserNey(vocab_size=5, order=2).fit(contexts, targets)
    # bigram counts: (0,2):1 (2,3):2 (3,2):2 (2,4):1 -> n1 = 2, n2 = 2: D2 = 2 / (2 + 4) = 1/3
    assert model.discounts[2] == pytest.approx(1 / 3)
    # continuation counts N1+(. w): w=2 after {0, 3} -> 2; w=3 after {2} -> 1; w=4 after {2} -> 1; total 4
    # their counts n1 = 2, n2 = 1: D1 = 2 / (2 + 2) = 1/2; P1(w) = max(c'-D1, 0)/4 + D1 * 3/4 * 1/5
    p1 = {w: max(c - 0.5, 0) / 4 + 0.5 * 3 / 4 / 5 for w, c in {0: 0, 1: 0, 2: 2, 3: 1, 4: 1}.items()}
    # context 2: continuations {3: 2, 4: 1}, total 3, distinct 2: gamma = D2 * 2 / 3
    expected = {w: max({3: 2, 4: 1}.get(w, 0) - 1 / 3, 0) / 3 + (1 / 3) * 2 / 3 * p1[w] for w in range(5)}
    got = model.probabilities((2,))
    for w in range(5):
        assert got[w] == pytest.approx(expected[w]), w
    # an unseen context (4 never precedes a word) backs off whole to the unigram level
    assert model.probabilities((4,)) == pytest.approx(np.array([p1[w] for w in range(5)]))


@pytest.mark.parametrize("context", [(0, 0, 0, 0), (2, 3, 2, 3), (9, 9, 9, 9), (3, 2, 4, 2)])
def test_every_distribution_sums_to_one_at_order_5(context):
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 12, size=400)
    windows = np.stack([np.concatenate([np.zeros(4, np.int64), tokens])[i:i + 4] for i in range(400)])
    model = KneserNey(vocab_size=12, order=5).fit(windows, tokens)
    distribution = model.probabilities(tuple(min(c, 11) for c in context))
    assert distribution.sum() == pytest.approx(1.0) and (distribution > 0).all()


def test_score_counts_top_1_and_top_5_like_a_brute_force_argmax():
    rng = np.random.default_rng(1)
    tokens = rng.integers(2, 9, size=300)
    contexts, targets = bigram_events(list(tokens))
    model = KneserNey(vocab_size=9, order=2).fit(contexts[:200], targets[:200])
    scored = model.score(contexts[200:], np.concatenate([targets[200:299], [0]]))  # a pad target is not scored
    assert scored["windows"] == 99
    hits = [int(np.argmax(model.probabilities(tuple(c))) == t) for c, t in zip(contexts[200:299], targets[200:299])]
    nll = [-np.log(model.probabilities(tuple(c))[t]) for c, t in zip(contexts[200:299], targets[200:299])]
    assert scored["top1"] == pytest.approx(np.mean(hits)) and scored["loss"] == pytest.approx(np.mean(nll))
    assert scored["top1"] <= scored["top5"] <= 1


def test_discount_of_count_of_counts():
    from collections import Counter

    assert discount(Counter({"a": 1, "b": 1, "c": 2})) == pytest.approx(2 / 4)
    assert discount(Counter({"a": 3})) == 0.5  # nothing to estimate from
