"""model/ngram.py, the modified Kneser-Ney baseline: hand-computed probabilities on a tiny corpus,
normalisation, back-off from unseen contexts, top-k against a brute force, the loader against
`nextword eval`'s window count on a real tiny dataset, and its cache."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nextword.model import ngram as kn

# ids: 0 <pad>, 1 <unk>, then words; D never occurs in the corpus
PAD, UNK, A, B, C, D = range(6)
V = 6
CORPUS = [[A, B, A, B, A, B, A, B], [A, C, UNK]]


def events(documents, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (context int64[order - 1], target) of the documents, pre-padded with 0 as nextword's windows."""
    contexts, targets = [], []
    for document in documents:
        padded = [PAD] * (order - 1) + list(document)
        for position, target in enumerate(document):
            contexts.append(padded[position:position + order - 1])
            targets.append(target)
    return np.array(contexts, np.int64).reshape(len(targets), order - 1), np.array(targets, np.int64)


def random_documents(count: int, vocab_size: int, seed: int) -> list[list[int]]:
    """Documents of 1-40 ids in 1..vocab_size-2 (the last id never occurs), skewed so n-grams repeat."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab_size - 1)
    return [list(rng.choice(np.arange(1, vocab_size - 1), size=rng.integers(1, 41), p=weights / weights.sum()))
            for _ in range(count)]


# Unigram level of CORPUS (the same at orders 2 and 3): continuation counts = distinct ids seen before
# the word: A after {pad, B} -> 2; B after {A} -> 1; C after {A} -> 1; UNK after {C} -> 1; total 5.
# Count-of-counts n1 = 3, n2 = 1, n3 = 0: D3+ undefined, so KenLM's fallback D = (0.5, 1, 1.5).
# P1(w) = (a(w) - D(a(w))) / 5 + gamma0 / 6, gamma0 = (1 + 0.5 + 0.5 + 0.5) / 5 = 0.5.
P1 = {PAD: 0 + 0.5 / 6, UNK: 0.5 / 5 + 0.5 / 6, A: 1 / 5 + 0.5 / 6, B: 0.5 / 5 + 0.5 / 6, C: 0.5 / 5 + 0.5 / 6,
      D: 0 + 0.5 / 6}


def test_unigram_level_equals_the_hand_computation():
    model = kn.count_events(*events(CORPUS, 2), V, order=2)
    assert model.levels[0].discounts == pytest.approx([0.5, 1.0, 1.5])
    assert model.unigram == pytest.approx([P1[w] for w in range(V)])
    assert sum(P1.values()) == pytest.approx(1.0)


def test_bigram_probabilities_equal_the_hand_computation():
    model = kn.count_events(*events(CORPUS, 2), V, order=2)
    # raw bigram counts: (pad,A) 2, (A,B) 4, (B,A) 3, (A,C) 1, (C,UNK) 1 -> n1 = 2, n2 = 1, n3 = 1, n4 = 1
    # Y = 2 / (2 + 2) = 1/2; D1 = 1 - 2Y 1/2 = 0.5; D2 = 2 - 3Y 1/1 = 0.5; D3+ = 3 - 4Y 1/1 = 1
    assert model.levels[1].discounts == pytest.approx([0.5, 0.5, 1.0])
    # context A: (A,B) 4, (A,C) 1, total 5; gamma(A) = (D3+ + D1) / 5 = 0.3
    expected = {w: 0.3 * P1[w] for w in range(V)}
    expected[B] += (4 - 1) / 5
    expected[C] += (1 - 0.5) / 5
    assert expected[B] == pytest.approx(0.655) and expected[D] == pytest.approx(0.025)  # D: a word never seen
    # context B: (B,A) 3, total 3; gamma(B) = 1/3.  context pad: (pad,A) 2, total 2; gamma(pad) = 0.5 / 2
    after_b = {w: P1[w] / 3 + (2 / 3 if w == A else 0) for w in range(V)}
    after_pad = {w: 0.25 * P1[w] + (1.5 / 2 if w == A else 0) for w in range(V)}
    for context, hand in ((A, expected), (B, after_b), (PAD, after_pad), (D, P1)):  # D: unseen context, backs off
        got = kn.predictive_distributions(model, np.array([[context]]))[0]
        assert got == pytest.approx([hand[w] for w in range(V)]), context
        assert [kn.word_probability(model, [context], w) for w in range(V)] == pytest.approx(got)


def test_trigram_probabilities_equal_the_hand_computation():
    model = kn.count_events(*events(CORPUS, 3), V, order=3)
    # trigrams: (pad,pad,A) 2, (pad,A,B) 1, (A,B,A) 3, (B,A,B) 3, (pad,A,C) 1, (A,C,UNK) 1:
    # n1 = 3, n2 = 1, n3 = 2, n4 = 0 -> D2 = 2 - 3 (3/5) 2 = -1.6 < 0: the fallback (0.5, 1, 1.5)
    assert model.levels[2].discounts == pytest.approx([0.5, 1.0, 1.5])
    # bigram level, continuation counts: (A,B) after {pad, B} -> 2; (B,A) 1; (A,C) 1; (C,UNK) 1; but
    # (pad,A) starts with pad, whose only left neighbour is pad: it keeps its raw count 2, not 1
    bigrams = model.levels[1]
    pad_node = int(kn.context_nodes(model, np.array([[B, PAD]]))[0, 1])
    entries = slice(bigrams.offsets[pad_node], bigrams.offsets[pad_node + 1])
    assert list(bigrams.words[entries]) == [A] and list(bigrams.counts[entries]) == [2.0]
    # bigram count-of-counts n1 = 3, n2 = 2, n3 = 0: the fallback again
    # P2(. | B): (B,A) 1, total 1: A gets 0.5, gamma(B) = 0.5
    p2_after_b = {w: 0.5 * P1[w] + (0.5 if w == A else 0) for w in range(V)}
    # P3(. | A B): (A,B,A) 3, total 3, D3+ 1.5: A gets 0.5, gamma(A B) = 0.5
    p3_after_ab = {w: 0.5 * p2_after_b[w] + (0.5 if w == A else 0) for w in range(V)}
    assert p3_after_ab[A] == pytest.approx(0.75 + 17 / 240) and p3_after_ab[D] == pytest.approx(0.25 / 12)
    # context (C, A) never seen: backs off whole to P2(. | A): (A,B) 2, (A,C) 1, total 3, gamma(A) = (1 + 0.5) / 3
    p2_after_a = {w: 0.5 * P1[w] + {B: 1 / 3, C: 0.5 / 3}.get(w, 0) for w in range(V)}
    # context (A, D): D never precedes a word, so no bigram context either: P1
    for context, hand in (((A, B), p3_after_ab), ((C, A), p2_after_a), ((A, D), P1)):
        got = kn.predictive_distributions(model, np.array([context]))[0]
        assert got == pytest.approx([hand[w] for w in range(V)]), context


def test_modified_discounts_follow_chen_and_goodman():
    counts = np.array([1, 1, 1, 1, 2, 2, 3, 4, 7], float)  # n1 = 4, n2 = 2, n3 = 1, n4 = 1: Y = 4 / 8
    assert kn.modified_discounts(counts) == pytest.approx([1 - 2 * 0.5 * 2 / 4, 2 - 3 * 0.5 * 1 / 2, 3 - 4 * 0.5 * 1])
    assert kn.modified_discounts(np.array([1, 1, 2, 5], float)) == pytest.approx(kn.FALLBACK_DISCOUNTS)  # n3 = 0


def test_every_distribution_sums_to_one_at_order_5():
    vocab = 20
    model = kn.count_events(*events(random_documents(60, vocab, seed=0), 5), vocab, order=5)
    train_contexts, _ = events(random_documents(60, vocab, seed=0), 5)
    contexts = np.array([
        train_contexts[7], train_contexts[30],  # seen at every order
        [vocab - 1, *train_contexts[30][1:]],  # farthest id never seen there: backs off one order
        [PAD, PAD, PAD, PAD],  # document start
        [vocab - 1] * 4,  # never seen at all: the unigram level
        [3, 1, vocab - 1, 2],
    ])
    nodes = kn.context_nodes(model, contexts)
    assert (nodes[:2] >= 0).all() and nodes[2, 4] == -1 and nodes[2, 3] >= 0 and (nodes[4, 1:] == -1).all()
    distributions = kn.predictive_distributions(model, contexts)
    assert distributions.sum(axis=1) == pytest.approx(np.ones(len(contexts)), abs=1e-12)
    assert (distributions > 0).all()  # every id, the pad and the never-seen id included


def test_ranks_break_ties_toward_the_lower_id_like_top_k():
    distributions = np.array([[0.2, 0.3, 0.3, 0.2]] * 4)
    assert list(kn.target_ranks(distributions, np.array([0, 1, 2, 3]))) == [2, 0, 1, 3]


def test_scores_agree_with_a_brute_force_over_words_one_at_a_time():
    vocab = 12
    order = 3
    model = kn.count_events(*events(random_documents(80, vocab, seed=1), order), vocab, order=order)
    contexts, targets = events(random_documents(15, vocab, seed=2), order)
    targets[::17] = PAD  # pad targets are not scored
    result = kn.evaluate(model, contexts, targets)
    nll, top1, top5 = [], [], []
    for context, target in zip(contexts, targets):
        if target == PAD:
            continue
        probabilities = [kn.word_probability(model, context, word) for word in range(vocab)]
        ranking = sorted(range(vocab), key=lambda word: (-probabilities[word], word))
        nll.append(-np.log(probabilities[target]))
        top1.append(ranking[0] == target)
        top5.append(target in ranking[:5])
    assert result["windows"] == len(nll) == np.count_nonzero(targets)
    assert result["loss"] == pytest.approx(np.mean(nll))
    assert result["perplexity"] == pytest.approx(np.exp(np.mean(nll)))
    assert (result["top1"], result["top5"]) == (np.mean(top1), np.mean(top5))
    assert 0 < result["top1"] < result["top5"] < 1  # the check could fail both ways


def test_batches_do_not_change_the_scores():
    vocab = 30
    model = kn.count_events(*events(random_documents(100, vocab, seed=3), 5), vocab)
    contexts, targets = events(random_documents(20, vocab, seed=4), 5)
    whole = kn.score_events(model, contexts, targets, batch_size=len(targets))
    batched = kn.score_events(model, contexts, targets, batch_size=7)
    assert np.array_equal(whole[1], batched[1]) and whole[0] == pytest.approx(batched[0])


def test_on_a_real_dataset_the_loader_reads_the_windows_nextword_eval_scores(tiny_dataset, tmp_path):
    import tensorflow as tf

    from nextword.model.metrics import MetricTotals, final_word_sums
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(tiny_dataset)
    contexts, targets = kn.events_from_dataset(tiny_dataset, "val")
    assert contexts.shape == (len(targets), 4) and contexts.dtype == np.int32
    totals = MetricTotals()  # what eval counts, on the same reader, with any logits
    for _, batch_targets, _ in make_dataset(tiny_dataset, "val", ReaderConfig(batch_size=64, objective="last",
                                                                               training=False)):
        totals.add(final_word_sums(tf.zeros([len(batch_targets), manifest.vocab_size]), batch_targets))
    result = kn.baseline(tiny_dataset, cache_dir=str(tmp_path))
    assert result["windows"] == int(totals.windows) == np.count_nonzero(targets) == manifest.split("val").windows
    assert result["train_events"] == manifest.split("train").windows
    assert 1 < result["perplexity"] < manifest.vocab_size  # counted from the train split, it beats uniform
    assert 0 < result["top1"] <= result["top5"] < 1
    assert os.listdir(tmp_path) == [os.path.basename(kn.cache_path(manifest.fingerprint, 5, str(tmp_path)))]
    assert kn.baseline(tiny_dataset, cache_dir=str(tmp_path)) == result  # read back, timings included


def test_without_a_cache_dir_baseline_recounts_and_writes_nothing(tiny_dataset, tmp_path, monkeypatch):
    cached = kn.baseline(tiny_dataset, cache_dir=str(tmp_path))

    def no_writing(*args, **kwargs):
        raise AssertionError("baseline() wrote a cache without a cache_dir")

    monkeypatch.setattr(kn.os, "makedirs", no_writing)
    monkeypatch.setattr(kn.os, "replace", no_writing)
    recounted = kn.baseline(tiny_dataset)  # the default, as `nextword demo` calls it
    timings = ("seconds", "read_seconds", "count_seconds", "score_seconds")
    assert {k: v for k, v in recounted.items() if k not in timings} == {k: v for k, v in cached.items()
                                                                         if k not in timings}


def test_importing_the_module_does_not_import_tensorflow():
    probe = "import sys, model.ngram; print('tensorflow' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"
