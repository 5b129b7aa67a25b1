"""Reruns that recognise themselves (issue 13, item 1; --time-budget of item 5).

A rerun of the same command says what it is doing ("already complete", "resuming from ..."),
any other rerun is refused saying what differs, Ctrl-C says how to resume, and --time-budget
counts the seconds of every session. Through the real CLI boundary (tests/_cli.py run_cli),
and a real subprocess for Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from _cli import run_cli
from _launch import launched
from _train_data import REPO, write_data_dir
from conftest import synthetic_documents, write_lines

INGEST = ["--vocab-size", "64", "--context", "8", "--workers", "1"]
TRAIN = ["--arch", "lstm", "--layers", "1", "--units", "16", "--embedding-dim", "8", "--batch-size", "16", "--no-export",
         "--no-progress", "--steps-per-call", "2"]


@pytest.fixture
def ingested(tmp_path, monkeypatch):
    """corpus.txt and its dataset in `data`, written with the relative path, from tmp_path."""
    monkeypatch.chdir(tmp_path)
    write_lines(tmp_path / "corpus.txt", synthetic_documents(60, seed=4, min_words=3, max_words=30))
    first = run_cli("ingest", "corpus.txt", "--out", "data", *INGEST)
    assert first.exit_code == 0, first.output
    return tmp_path


def flat(text: str) -> str:
    """rich wraps stderr at the console's width: compare words, not line breaks."""
    return " ".join(text.split())


def windows_of(data_dir) -> int:
    manifest = json.loads((data_dir / "dataset.json").read_text())
    return sum(split["windows"] for split in manifest["splits"].values())


def test_the_same_input_spelled_another_way_is_already_complete(ingested):
    """Before: `./corpus.txt` and the absolute path were other inputs (refused); a touched file too."""
    windows = windows_of(ingested / "data")
    os.utime(ingested / "corpus.txt", ns=(1, 1))  # same bytes, another mtime
    for spelling in ("./corpus.txt", str(ingested / "corpus.txt"), "../" + ingested.name + "/corpus.txt"):
        again = run_cli("ingest", spelling, "--out", "data", *INGEST)
        assert again.exit_code == 0, again.output
        assert f"already complete: data holds this dataset ({windows:,} windows); nothing to do" in flat(again.output)
        assert "windows/s" not in again.output and "Traceback" not in again.output
    as_json = run_cli("ingest", "corpus.txt", "--out", "data", *INGEST, "--json")
    summary = json.loads(as_json.stdout)
    assert summary["already_complete"] is True and "windows_per_second" not in summary


def test_a_refused_rerun_says_what_differs(ingested):
    """Before: "already holds a different dataset (other inputs or settings)", whatever differed."""
    other = run_cli("ingest", "corpus.txt", "--out", "data", *INGEST[:1], "80", *INGEST[2:])
    assert other.exit_code == 1
    assert "--vocab-size: the dataset has 64, this command asks for 80" in other.stderr
    corpus = ingested / "corpus.txt"
    size = corpus.stat().st_size
    text = corpus.read_text()
    corpus.write_text(text.replace("the", "THE", 1))  # same size, other bytes
    edited = run_cli("ingest", "corpus.txt", "--out", "data", *INGEST)
    assert edited.exit_code == 1
    assert f"input 1: corpus.txt changed content since the dataset was written (same size, {size:,} bytes)" in edited.stderr
    corpus.write_text(text + "one more line\n")
    grown = run_cli("ingest", "corpus.txt", "--out", "data", *INGEST)
    assert f"input 1: corpus.txt changed size {size:,} → {size + 14:,} bytes since the dataset was written" in grown.stderr
    assert "Traceback" not in grown.output


def test_a_dataset_of_nextword_0_1_0_is_still_found_complete(ingested):
    """dataset.json without `identity` (0.1.0): the command that wrote it still finds it complete;
    another one is told why its difference cannot be listed (before: a bare "different dataset")."""
    from nextword.ingest.settings import IngestSettings
    from nextword.ingest.sources import resolve_inputs

    path = ingested / "data" / "dataset.json"
    manifest = json.loads(path.read_text())
    # what 0.1.0 wrote: every document kept, no packed records (today's defaults are another dataset)
    then = ["--dedup", "none", "--layout", "spans"]
    settings = IngestSettings(inputs=("corpus.txt",), out="data", vocab_size=64, context_length=8, dedup="none",
                              layout="spans")
    manifest.pop("identity")
    manifest["fingerprint"] = settings.legacy_fingerprint(resolve_inputs(["corpus.txt"], "auto", None))
    assert manifest["fingerprint"]
    path.write_text(json.dumps(manifest))
    assert "already complete" in flat(run_cli("ingest", "corpus.txt", "--out", "data", *INGEST, *then).output)
    for other in (["./corpus.txt", *then], ["corpus.txt"]):  # moved; run with today's defaults
        refused = run_cli("ingest", *other, "--out", "data", *INGEST)
        assert refused.exit_code == 1 and "records no sizes or checksums of its inputs" in refused.stderr, other


def test_ctrl_c_on_ingest_says_how_to_resume_and_the_rerun_resumes(tmp_path):
    """SIGINT to the process group (what a terminal's Ctrl-C sends) in pass 2, worker processes
    running. Before: exit 130 with no message."""
    # Pass 2 of 1,500 documents takes ~2.6 s: on a loaded machine this test's poll loop stalled long enough
    # for the ingest to finish before the SIGINT (CI saw exit 0). 6,000 leave ~10 s after the 40th document.
    corpus = write_lines(tmp_path / "corpus.txt", synthetic_documents(6000, seed=11, min_words=10, max_words=60))
    out = tmp_path / "data"
    arguments = ["ingest", corpus, "--out", str(out), *INGEST[:4], "--workers", "2",
                 "--checkpoint-seconds", "0", "--batch-bytes", "2048"]
    # SIGINT at its default, as in a terminal's foreground job: a shell starts background jobs with SIGINT
    # ignored, Python then installs no KeyboardInterrupt handler, and a CI started with `&` saw exit 0.
    process = subprocess.Popen(launched([sys.executable, "-m", "nextword.cli", *arguments], sigint_default=True),
                               cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if json.loads((out / ".partial" / "pass2.json").read_text())["documents"] >= 40:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    assert process.poll() is None, "the ingest finished before it could be interrupted; grow the corpus"
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted: run the same command to resume" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr and "error:" not in stderr
    assert not (out / "dataset.json").exists()
    again = run_cli(*arguments)
    assert again.exit_code == 0, again.output
    assert "resuming from document " in flat(again.stderr) and "of 6,000 (pass 2 of 3" in flat(again.stderr)
    assert "were written by an earlier, interrupted run" in flat(again.stderr)
    assert windows_of(out) > 0


def test_train_reruns_say_what_they_do_and_the_time_budget_spans_them(tmp_path):
    """One run dir, two sessions that train (each traces its step function: seconds on a small CPU).
    Before: a rerun of a spent --time-budget trained a whole budget again and printed "N windows in
    X s (Y windows/s)" for it; a finished run printed "0 windows ... (0 windows/s)"; a resumed one
    said nothing of where it started; a refused config named only the field ("differs in: units")."""
    data = write_data_dir(str(tmp_path / "data"), train_documents=40, val_documents=4)
    run = str(tmp_path / "run")
    steps = ["--epochs", "100000", "--patience", "0", "--checkpoint-every", "1000000"]  # only the budget stops it
    first = run_cli("train", data, "--out", run, "--time-budget", "1.5", *steps, *TRAIN)
    assert first.exit_code == 0, first.output
    spent, step = (json.load(open(os.path.join(run, "summary.json")))[key] for key in ("train_seconds", "steps"))
    assert spent >= 1.5

    done = run_cli("train", data, "--out", run, "--time-budget", "1.5", *steps, *TRAIN)
    assert done.exit_code == 0, done.output
    assert "already complete: the 1.5 s time budget is spent" in done.stdout and "windows/s" not in done.output
    done = run_cli("train", data, "--out", run, "--max-steps", str(step), *steps, *TRAIN)
    assert f"already complete: step {step:,} reached; nothing to train" in done.stdout and "windows/s" not in done.output

    more = run_cli("train", data, "--out", run, "--time-budget", f"{spent + 4:.3f}", *steps, *TRAIN)
    assert more.exit_code == 0, more.output
    assert f"resuming from step {step:,} (epoch " in more.stderr and f"resumed from step {step:,}" in more.stdout
    summary = json.load(open(os.path.join(run, "summary.json")))
    assert summary["stopped_by"] == "time_budget" and summary["windows_trained_this_session"] > 0
    # the checkpoint carried the first session's seconds: this one trained what was left of the
    # budget (or its first call, which traces), not a whole budget of spent + 4 s again
    assert summary["train_seconds"] == pytest.approx(spent + summary["train_seconds_this_session"], abs=0.01)
    assert summary["train_seconds"] >= spent + 4 > summary["train_seconds_this_session"]

    other = run_cli("train", data, "--out", run, *steps, *TRAIN, "--units", "32")
    assert other.exit_code == 1
    assert "--units: the run has 16, this command asks for 32" in other.stderr
