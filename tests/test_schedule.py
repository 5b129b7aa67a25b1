"""The learning-rate schedule, weight decay's exclusions, tied embeddings (fast, in process)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from nextword.model.builder import build_model
from nextword.model.config import ModelConfig
from nextword.model.loop import ScheduledRate, Trainer, not_decayed
from nextword.model.schedule import FINAL_FRACTION, Schedule
from nextword.model.settings import RECIPE_DEFAULTS, TrainSettings
from nextword.errors import SettingsError


def test_warm_up_then_cosine_to_a_tenth_at_the_planned_end():
    schedule = Schedule.plan("cosine", 1e-3, warmup_steps=10, planned_steps=1000, time_budget=None)
    assert schedule.rate(0) == pytest.approx(1e-4)  # step 0 trains at 1/10 of the way up
    assert schedule.rate(9) == pytest.approx(1e-3 * (FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5 * (1 + math.cos(math.pi * 0.009))))
    assert schedule.rate(500) == pytest.approx(1e-3 * (FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5))  # half way
    assert schedule.rate(1000) == pytest.approx(1e-3 * FINAL_FRACTION) == schedule.rate(5000)
    rates = [schedule.rate(step) for step in range(10, 1000)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))  # decays monotonically


def test_a_time_budget_decays_by_the_share_of_it_spent_and_the_earlier_end_wins():
    schedule = Schedule.plan("cosine", 1.0, warmup_steps=0, planned_steps=10**9, time_budget=100.0)
    assert schedule.rate(5, train_seconds=0.0) == pytest.approx(1.0)
    assert schedule.rate(5, train_seconds=50.0) == pytest.approx(FINAL_FRACTION + (1 - FINAL_FRACTION) * 0.5)
    assert schedule.rate(5, train_seconds=100.0) == pytest.approx(FINAL_FRACTION)
    by_steps = Schedule.plan("cosine", 1.0, warmup_steps=0, planned_steps=10, time_budget=1000.0)
    assert by_steps.progress(5, train_seconds=1.0) == 0.5  # the step plan ends first


def test_warm_up_is_at_most_a_tenth_of_the_step_plan_and_constant_stays_flat():
    assert Schedule.plan("cosine", 1.0, warmup_steps=100, planned_steps=40, time_budget=None).warmup_steps == 4
    constant = Schedule.plan("constant", 0.5, warmup_steps=0, planned_steps=40, time_budget=None)
    assert {constant.rate(step) for step in range(0, 80, 7)} == {0.5}


def test_wsd_holds_the_peak_then_decays_linearly_to_zero_over_the_last_fifth():
    by_steps = Schedule.plan("wsd", 1e-3, warmup_steps=10, planned_steps=1000, time_budget=None)
    assert by_steps.rate(0) == pytest.approx(1e-4) and by_steps.rate(9) == pytest.approx(1e-3)
    assert by_steps.rate(500) == pytest.approx(1e-3) == by_steps.rate(800)  # stable until 80% of the plan
    assert by_steps.rate(900) == pytest.approx(0.5e-3) and by_steps.rate(950) == pytest.approx(0.25e-3)
    assert by_steps.rate(1000) == 0.0 == by_steps.rate(1200)
    by_time = Schedule.plan("wsd", 1.0, warmup_steps=0, planned_steps=10**9, time_budget=100.0)
    assert by_time.rate(5, train_seconds=79.0) == 1.0 and by_time.rate(5, train_seconds=90.0) == pytest.approx(0.5)
    assert by_time.to_dict()["final_fraction"] == 0.0


@pytest.mark.parametrize("kind", ["cosine", "wsd", "constant"])
def test_the_graph_computes_the_same_rates_as_the_plan(kind):
    schedule = Schedule.plan(kind, 2e-3, warmup_steps=20, planned_steps=300, time_budget=60.0)
    graph = ScheduledRate(schedule)
    for step, seconds in [(0, 0.0), (7, 1.0), (19, 5.0), (150, 10.0), (150, 45.0), (250, 50.0), (299, 59.0), (400, 70.0)]:
        graph.set_seconds(seconds)
        assert float(graph(tf.constant(step))) == pytest.approx(schedule.rate(step, seconds), rel=1e-5, abs=1e-12), (step, seconds)
    for step, seconds, decay_from in [(150, 10.0, 0.5), (200, 33.0, 0.5), (250, 40.0, 0.5), (250, 50.0, 0.5), (10, 5.0, 0.05)]:
        graph.set_seconds(seconds, decay_from)  # an early decay (wsd), then none again: the variable follows
        assert float(graph(tf.constant(step))) == pytest.approx(schedule.rate(step, seconds, decay_from),
                                                                rel=1e-5, abs=1e-12), (step, seconds, decay_from)
        graph.set_seconds(seconds)
        assert float(graph(tf.constant(step))) == pytest.approx(schedule.rate(step, seconds), rel=1e-5, abs=1e-12)


def test_an_early_decay_falls_to_zero_over_a_fifth_of_the_plan_from_where_it_began():
    wsd = Schedule.plan("wsd", 1.0, warmup_steps=0, planned_steps=1000, time_budget=None)
    assert wsd.decays_early(0.3) and wsd.decays_early(0.79) and not wsd.decays_early(0.8)  # the decay had begun
    assert wsd.rate(300, decay_from=0.3) == 1.0
    assert wsd.rate(400, decay_from=0.3) == pytest.approx(0.5) and wsd.rate(450, decay_from=0.3) == pytest.approx(0.25)
    assert wsd.rate(500, decay_from=0.3) == 0.0 == wsd.rate(900, decay_from=0.3)  # past its end: 0, never negative
    assert Schedule.decay_end(0.3) == pytest.approx(0.5) and Schedule.decay_end(-1.0) == 1.0
    by_time = Schedule.plan("wsd", 1.0, warmup_steps=0, planned_steps=10**9, time_budget=100.0)
    assert by_time.rate(5, train_seconds=60.0, decay_from=0.5) == pytest.approx(0.5)
    for kind in ("cosine", "constant"):  # their rate is lower at the end already: early stopping ends them as before
        assert not Schedule.plan(kind, 1.0, warmup_steps=0, planned_steps=1000, time_budget=None).decays_early(0.3)


def test_weight_decay_skips_embeddings_norms_and_biases():
    config = ModelConfig(vocab_size=30, context_length=6, arch="transformer", layers=1, units=16, heads=2,
                         tie_embeddings=True)
    trainer = Trainer(tf.distribute.get_strategy(), config, "adamw", 1e-3, weight_decay=0.1)
    skipped = {variable.path for variable in not_decayed(trainer.model)}
    decayed = {variable.path for variable in trainer.model.trainable_variables} - skipped
    assert "embedding/tokens/embeddings" in skipped and "embedding/positions/embeddings" in skipped
    assert all(path.endswith("kernel") for path in decayed) and decayed
    assert all(not trainer.optimizer._use_weight_decay(v) for v in not_decayed(trainer.model))  # noqa: SLF001
    kernel = next(v for v in trainer.model.trainable_variables if v.path.endswith("kernel"))
    assert trainer.optimizer._use_weight_decay(kernel)  # noqa: SLF001


def test_weight_decay_belongs_to_adamw():
    with pytest.raises(SettingsError, match="--weight-decay 0.1 is for --optimizer adamw"):
        TrainSettings(data_dir="d", out="o", optimizer="rmsprop", weight_decay=0.1)
    if RECIPE_DEFAULTS["optimizer"] != "adamw":  # the default optimizer would ignore it silently: refused too
        with pytest.raises(SettingsError, match="add --optimizer adamw"):
            TrainSettings(data_dir="d", out="o", weight_decay=0.1)
    assert TrainSettings(data_dir="d", out="o", optimizer="adamw", weight_decay=0.3).optimization().weight_decay == 0.3
    assert TrainSettings(data_dir="d", out="o", preset="notebook").optimization().weight_decay == 0.0
    recipe = TrainSettings(data_dir="d", out="o").optimization().to_dict()
    expected = {**RECIPE_DEFAULTS, "weight_decay": RECIPE_DEFAULTS["weight_decay"] if RECIPE_DEFAULTS["optimizer"] == "adamw" else 0.0}
    assert recipe == expected
    assert TrainSettings(data_dir="d", out="o", optimizer="adamw").optimization().weight_decay == RECIPE_DEFAULTS["weight_decay"]


@pytest.mark.parametrize("arch,widths", [("transformer", dict(units=16, heads=2)), ("lstm", dict(units=24, embedding_dim=8))])
def test_tied_embeddings_share_one_matrix(arch, widths):
    """The output projection is the token embedding transposed (+ a bias; an LSTM wider than its
    embeddings projects down first): one variable, fewer parameters, gradients from both uses."""
    tied = build_model(ModelConfig(vocab_size=40, context_length=5, arch=arch, layers=1, tie_embeddings=True, **widths))
    untied = build_model(ModelConfig(vocab_size=40, context_length=5, arch=arch, layers=1, **widths))
    width = tied.get_layer("embedding").trainable_weights[0].shape[-1]
    saved = 40 * tied.get_layer("rnn_0" if arch == "lstm" else "final_norm").output.shape[-1]
    projection = 0 if arch == "transformer" else widths["units"] * width + width
    assert untied.count_params() - tied.count_params() == saved - projection
    assert len({id(v) for v in tied.weights}) == len(tied.weights)  # each variable once
    ids = np.random.default_rng(0).integers(0, 40, size=(3, 5)).astype("int32")
    matrix = tied.get_layer("embedding").trainable_weights[0]
    with tf.GradientTape() as tape:
        logits = tied(ids, training=False)
        loss = tf.reduce_sum(logits[..., 7])  # id 7's logit: its embedding row gets a gradient through the output
    gradient = tf.convert_to_tensor(tape.gradient(loss, matrix))
    assert float(tf.norm(gradient[7])) > 0 and keras.ops.shape(logits)[-1] == 40
