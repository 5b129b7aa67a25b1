"""`nextword demo`: end to end on the embedded corpus with a tiny model and budget; reruns resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--time-budget", "3", "--layers", "1", "--units", "16", "--context", "8",
        "--vocab-size", "300", "--words", "6", "--batch-size", "64"]


def run_demo(out, *extra: str, budget: str | None = None) -> subprocess.CompletedProcess:
    arguments = list(TINY)
    if budget is not None:
        arguments[1] = budget
    return subprocess.run(
        [sys.executable, "-m", "nextword.cli", "demo", "--out", str(out), *arguments, *extra],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600,
    )


def steps_of(out) -> int:
    with open(os.path.join(out, "run", "summary.json")) as handle:
        return json.load(handle)["steps"]


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.slow
def test_demo_runs_end_to_end_and_says_where_everything_is(finished_demo):
    out, result = finished_demo
    report = result.stdout
    assert "1. ingest" in report and "train" in report
    assert "perplexity" in report and "top-1 accuracy" in report
    assert "temperature 0.7" in report and "temperature 1.0" in report
    assert "the function returns" in report
    assert f"tensorboard --logdir {out}/run/logs" in report
    assert f"nextword gen {out}/run/export" in report
    for path in ("data/dataset.json", "data/vocab.txt", "run/export/card.json", "run/history.json",
                 "run/plots/loss.png", "run/plots/accuracy.png", "run/plots/perplexity.png"):
        assert os.path.exists(os.path.join(out, path)), path
    with open(os.path.join(out, "demo.json")) as handle:
        state = json.load(handle)
    assert state["finished"] is True and 2.0 <= state["train_seconds"] < 30


@pytest.mark.slow
def test_rerun_of_a_finished_demo_does_not_retrain(finished_demo):
    out, first = finished_demo
    steps = steps_of(out)
    again = run_demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stdout
    assert steps_of(out) == steps
    samples = [line for line in first.stdout.splitlines() if "the function returns" in line and "gen " not in line]
    assert samples and all(line in again.stdout for line in samples)  # same export, same seed, same words


@pytest.mark.slow
def test_an_unfinished_demo_resumes_with_what_is_left_of_the_budget(finished_demo):
    out, _ = finished_demo
    steps = steps_of(out)
    state_path = os.path.join(out, "demo.json")
    with open(state_path) as handle:
        state = json.load(handle)
    state["finished"] = False  # as if the run had been stopped before its budget was spent
    with open(state_path, "w") as handle:
        json.dump(state, handle)
    result = run_demo(out, budget=str(state["train_seconds"] + 2))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "for 2 s (of a" in result.stdout
    assert steps_of(out) > steps  # continued from the checkpoint, did not start over


def test_demo_rejects_a_non_positive_budget(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nextword.cli", "demo", "--out", str(tmp_path / "d"), "--time-budget", "0"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=120,
    )
    assert result.returncode != 0
    assert "--time-budget must be > 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_demo_is_listed_in_the_root_help():
    result = subprocess.run([sys.executable, "-m", "nextword.cli", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_the_two_temperatures_sample_with_different_seeds_derived_from_seed(monkeypatch, tmp_path):
    import io

    from rich.console import Console

    from nextword.generate.generator import Generator
    from nextword import demo

    calls = []

    class RecordingGenerator:
        def generate(self, prompts, settings):
            calls.append((settings.temperature, settings.seed))
            return [], settings.seed

    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, model_dir: RecordingGenerator()))

    def seeds_for(seed: int) -> list:
        calls.clear()
        demo.generate_step(demo.DemoSettings(out=str(tmp_path), seed=seed), Console(file=io.StringIO()))
        assert [temperature for temperature, _ in calls] == list(demo.TEMPERATURES)
        return [used for _, used in calls]

    first = seeds_for(0)
    assert len(set(first)) == len(first) and all(0 <= seed < 2**63 for seed in first)
    assert seeds_for(0) == first  # the same --seed, the same samples
    assert not set(seeds_for(1)) & set(first)
