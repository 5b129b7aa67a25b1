"""The in-graph sampling ops on stubbed logits (no model)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nextword.model import sampling

VOCAB = 8


def choose(logits, seen=None, banned=None, **overrides):
    logits = tf.constant(logits, tf.float32)
    shape = logits.shape
    settings = dict(
        greedy=tf.constant(False), temperature=tf.constant(1.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
        repetition_penalty=tf.constant(1.0), seed=tf.constant(7, tf.int64), step=tf.constant(0),
    )
    settings.update({key: tf.constant(value) for key, value in overrides.items()})
    seen = tf.zeros(shape, tf.bool) if seen is None else tf.constant(seen)
    banned = tf.zeros(shape, tf.bool) if banned is None else tf.constant(banned)
    return sampling.choose_next_ids(logits, seen, banned, **settings).numpy()


def test_reserved_ids_are_never_chosen_even_when_the_model_prefers_them():
    logits = np.zeros([512, VOCAB], np.float32)
    logits[:, 0] = 1e4
    logits[:, 1] = 1e4
    for greedy in (True, False):
        chosen = choose(logits, greedy=greedy)
        assert chosen.min() >= 2, chosen


def test_greedy_takes_the_argmax_and_top_k_1_agrees():
    logits = np.random.default_rng(0).normal(size=[16, VOCAB]).astype(np.float32)
    expected = np.argmax(logits[:, 2:], axis=1) + 2
    assert (choose(logits, greedy=True) == expected).all()
    assert (choose(logits, top_k=1) == expected).all()
    assert (choose(logits, top_p=1e-6) == expected).all()


def test_top_k_keeps_only_the_k_best_words():
    logits = np.tile(np.arange(VOCAB, dtype=np.float32), [400, 1])  # ids 6, 7 are the best two
    chosen = choose(logits, top_k=2, seed=np.int64(3))
    assert set(chosen.tolist()) == {6, 7}


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = np.log(np.array([[0.0001, 0.0001, 0.5, 0.3, 0.15, 0.0498, 0.0001, 0.0001]] * 500, np.float32))
    chosen = choose(logits, top_p=0.7)  # 0.5 + 0.3 reaches 0.7
    assert set(chosen.tolist()) == {2, 3}


def test_sampling_follows_the_softmax_and_temperature_sharpens_it():
    probabilities = np.array([0, 0, 0.6, 0.3, 0.1, 0, 0, 0], np.float32) + 1e-12
    logits = np.log(np.tile(probabilities, [4000, 1]))
    counts = np.bincount(choose(logits), minlength=VOCAB) / 4000
    np.testing.assert_allclose(counts[2:5], [0.6, 0.3, 0.1], atol=0.03)
    sharp = np.bincount(choose(logits, temperature=0.25), minlength=VOCAB) / 4000
    assert sharp[2] > 0.9


def test_same_seed_same_draw_and_different_seeds_differ():
    logits = np.zeros([64, VOCAB], np.float32)
    first = choose(logits, seed=np.int64(11), step=3)
    assert (first == choose(logits, seed=np.int64(11), step=3)).all()
    assert (first != choose(logits, seed=np.int64(12), step=3)).any()
    assert (first != choose(logits, seed=np.int64(11), step=4)).any()


def test_repetition_penalty_discourages_seen_words():
    logits = np.array([[0, 0, 2.0, 1.9, -1, -1, -1, -1]], np.float32)
    seen = np.zeros([1, VOCAB], bool)
    seen[0, 2] = True
    assert choose(logits, seen=seen, greedy=True)[0] == 2  # penalty 1.0 is a no-op
    assert choose(logits, seen=seen, greedy=True, repetition_penalty=1.5)[0] == 3
    penalised = sampling.apply_repetition_penalty(tf.constant([[2.0, -2.0]]), tf.constant([[True, True]]), 2.0)
    np.testing.assert_allclose(penalised.numpy(), [[1.0, -4.0]])


def test_ngram_ban_finds_the_word_that_would_repeat_an_ngram():
    history = tf.constant([[5, 6, 7, 5, 6, 0], [2, 3, 4, 5, 6, 0]], tf.int32)  # 6 columns, 5 filled
    banned = sampling.banned_by_ngrams(history, tf.constant(5), tf.constant(3), tf.constant(VOCAB)).numpy()
    assert banned[0].nonzero()[0].tolist() == [7]  # "5 6" was followed by 7
    assert not banned[1].any()
    bigram = sampling.banned_by_ngrams(history, tf.constant(5), tf.constant(2), tf.constant(VOCAB)).numpy()
    assert bigram[0].nonzero()[0].tolist() == [7]  # "6" was followed by 7
    assert bigram[1].nonzero()[0].tolist() == []  # 6 never appeared before the end
    off = sampling.banned_by_ngrams(history, tf.constant(5), tf.constant(0), tf.constant(VOCAB)).numpy()
    assert not off.any()


def test_a_row_with_every_word_banned_falls_back_but_never_to_pad_or_unk():
    logits = np.zeros([32, VOCAB], np.float32)
    banned = np.ones([32, VOCAB], bool)
    for greedy in (True, False):
        assert choose(logits, banned=banned, greedy=greedy).min() >= 2
