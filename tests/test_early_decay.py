"""Early stopping under wsd: a patience spent at the peak rate starts the decay instead of ending the run
(model/schedule.py `Schedule.decays_early`), and one spent in the planned decay lets it finish; under any other
schedule it ends the run (in process, a tiny LSTM)."""

from __future__ import annotations

import json
import os

import pytest

from _train_data import write_data_dir
from nextword.model.cli import print_summary
from nextword.model.settings import TrainSettings
from nextword.model.train import run_training
from nextword.model.validation import ValidationSample


@pytest.fixture
def flat_validation(monkeypatch):
    """The held-out loss never improves after the first validation: the patience is spent on schedule."""
    score = ValidationSample.score

    def flat(self):
        return {**score(self), "loss": 5.0}

    monkeypatch.setattr(ValidationSample, "score", flat)


def train(data_dir: str, out: str, schedule: str, patience: int = 2) -> dict:
    return run_training(TrainSettings(
        data_dir=data_dir, out=out, arch="lstm", layers=1, units=8, embedding_dim=4, batch_size=16, epochs=1000,
        max_steps=100, steps_per_call=2, validate_every=4, patience=patience, checkpoint_every=1000, schedule=schedule,
        learning_rate=1e-3, warmup_steps=0, seed=1, export=False, progress=False))


def test_a_patience_spent_at_wsd_s_peak_rate_decays_over_a_fifth_of_the_plan_then_stops(tmp_path, flat_validation,
                                                                                      capsys):
    data_dir = write_data_dir(str(tmp_path / "data"))
    out = str(tmp_path / "run")
    summary = train(data_dir, out, "wsd")
    # best at step 4, no improvement at 8 and 12: the decay starts at 12/100 of the plan and reaches 0 at 32/100
    assert summary["best_step"] == 4 and summary["early_decay_from"] == pytest.approx(0.12)
    assert summary["stopped_by"] == "early_stopping" and summary["steps"] == 32
    with open(os.path.join(out, "history.json")) as handle:
        validations = [row["step"] for row in json.load(handle)["epochs"]]
    assert validations == list(range(4, 33, 4))  # it kept training (and validating) through the decay
    again = train(data_dir, out, "wsd")  # the checkpoint holds where the decay began: nothing left to train
    assert again["already_complete"] and again["stopped_by"] == "early_stopping" and again["steps"] == 32
    print_summary(summary, out)
    printed = capsys.readouterr().out
    assert "stopped by early_stopping at step 32" in printed and "the rate decayed to 0 from 12% of the plan" in printed


def test_any_other_schedule_stops_where_its_patience_is_spent(tmp_path, flat_validation):
    data_dir = write_data_dir(str(tmp_path / "data"))
    summary = train(data_dir, str(tmp_path / "run"), "cosine")
    assert summary["stopped_by"] == "early_stopping" and summary["steps"] == 12
    assert summary["early_decay_from"] is None


def test_a_patience_spent_in_wsd_s_planned_decay_lets_the_decay_finish(tmp_path, flat_validation):
    data_dir = write_data_dir(str(tmp_path / "data"))
    summary = train(data_dir, str(tmp_path / "run"), "wsd", patience=21)  # spent at step 4 + 21 x 4 = 88 of 100
    assert summary["validations_without_improvement"] == 24 and summary["early_decay_from"] is None
    assert summary["stopped_by"] == "max_steps" and summary["steps"] == 100


def test_a_run_stopped_early_before_this_rule_is_not_trained_again(tmp_path, flat_validation, monkeypatch):
    """A checkpoint without decay_from (written before 2026-12-06's rule) keeps the rule its run had: a rerun of a
    run that early stopping ended finds nothing to train, as it did then."""
    from nextword.model.checkpointing import TrainingPosition
    from nextword.model.schedule import Schedule

    data_dir, out = write_data_dir(str(tmp_path / "data")), str(tmp_path / "run")
    with monkeypatch.context() as old:  # the old code: no decay_from saved, a spent patience ends a wsd run
        variables = TrainingPosition.variables
        old.setattr(TrainingPosition, "variables", lambda self: {
            name: variable for name, variable in variables(self).items() if name != "decay_from"})
        old.setattr(Schedule, "finishes_its_decay", property(lambda self: False))
        old.setattr(Schedule, "decays_early", lambda self, progress: False)
        first = train(data_dir, out, "wsd")
    assert first["stopped_by"] == "early_stopping" and first["steps"] == 12
    again = train(data_dir, out, "wsd")
    assert again["already_complete"] and again["stopped_by"] == "early_stopping" and again["steps"] == 12
