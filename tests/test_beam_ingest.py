"""`nextword ingest --runner beam`: the same dataset as the local ingest, on Beam's DirectRunner."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import dataset_windows, synthetic_documents, write_lines
from nextword.ingest.beam import _beam, pipeline_flags, run_beam_ingest
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.errors import InputError, SettingsError
from nextword.tfrecords.manifest import SPLITS, load_manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus_files(directory) -> list[str]:
    """Three inputs of two formats and two text units, with empty and one-word documents among
    them: one document a line, JSON lines, and wrapped prose read by paragraph."""
    text = write_lines(directory / "part1.txt", synthetic_documents(160, seed=4) + ["", "alone", "!!!"])
    jsonl = directory / "part2.jsonl"
    jsonl.write_text("".join(json.dumps({"body": document}) + "\n" for document in synthetic_documents(90, seed=5)))
    wrapped = [textwrap.fill(document, 60) + "\n" for document in synthetic_documents(40, seed=6, min_words=5)]
    prose = directory / "part3.txt"
    prose.write_text("\n".join(wrapped))
    return [text, str(jsonl), str(prose)]


def windows_per_split(data_dir: str) -> dict[str, collections.Counter]:
    """The multiset of windows of each split, expanded from any layout."""
    return {name: collections.Counter(map(tuple, dataset_windows(data_dir, name))) for name in SPLITS}


def comparable(data_dir: str) -> dict:
    manifest = json.loads(load_manifest(data_dir).to_json())
    manifest.pop("created_by")
    return manifest


def assert_same_dataset(local_dir: str, beam_dir: str) -> None:
    assert comparable(beam_dir) == comparable(local_dir)  # counts, vocabulary sha256, shard counts and sizes
    with open(os.path.join(local_dir, "vocab.txt"), "rb") as local, open(os.path.join(beam_dir, "vocab.txt"), "rb") as beam:
        assert beam.read() == local.read()
    local_windows, beam_windows = windows_per_split(local_dir), windows_per_split(beam_dir)
    assert sum(local_windows["train"].values()) > 0
    assert beam_windows == local_windows  # the same multiset of windows in each split


@pytest.mark.slow
def test_beam_cli_on_multiprocess_directrunner_writes_the_local_ingest_s_dataset(tmp_path):
    inputs = corpus_files(tmp_path)
    common = ["--column", "body", "--vocab-size", "50", "--context", "6", "--shards", "3", "--val-fraction", "0.25",
              "--seed", "9"]
    local_dir, beam_dir = str(tmp_path / "local"), str(tmp_path / "beam")
    run_ingest(IngestSettings(inputs=tuple(inputs), out=local_dir, column="body", vocab_size=50, context_length=6,
                              shards=3, val_fraction=0.25, seed=9, workers=3))  # worker processes on both sides
    command = [sys.executable, "-m", "nextword.cli", "ingest", *inputs, "--out", beam_dir, *common, "--json",
               "--runner", "beam", "--workers", "2", "--beam-option", "direct_running_mode=multi_processing"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["splits"]["train"]["shards"] == 3 and summary["windows"] > 1000
    assert [entry.get("text_unit") for entry in summary["inputs"]] == ["line", None, "paragraph"]
    assert_same_dataset(local_dir, beam_dir)
    assert not os.path.exists(os.path.join(beam_dir, ".partial"))


@pytest.mark.parametrize("documents, max_words, shards, val_fraction, layout, text_unit",
                         [(300, 60, 2, 0.2, "packed", "line"), (300, 60, 2, 0.2, "windows", "line"),
                          (2, 4, 9, 0.0, "packed", "line"), (300, 60, 2, 0.2, "spans", "paragraph")],
                         ids=["tiny-corpus", "tiny-corpus-windows-layout", "empty-shards-no-val", "paragraphs"])
def test_in_process_directrunner_matches_the_local_ingest(tmp_path, documents, max_words, shards, val_fraction, layout,
                                                          text_unit):
    lines = synthetic_documents(documents, seed=2, min_words=3, max_words=max_words)
    if text_unit == "paragraph":  # five lines a paragraph
        lines = [line + ("\n" if number % 5 == 4 else "") for number, line in enumerate(lines)]
    corpus = write_lines(tmp_path / "corpus.txt", lines)
    common = dict(inputs=(corpus,), vocab_size=64, context_length=8, shards=shards, val_fraction=val_fraction,
                  seed=1, workers=1, layout=layout, windows_per_record=7, text_unit=text_unit)
    local = run_ingest(IngestSettings(out=str(tmp_path / "local"), **common))
    beam = run_beam_ingest(IngestSettings(out=str(tmp_path / "beam"), **common))
    assert beam.fingerprint == local.fingerprint  # a rerun of either command finds the other's dataset finished
    assert_same_dataset(str(tmp_path / "local"), str(tmp_path / "beam"))
    if documents == 2:  # at most 6 windows over 9 shards
        assert any(shard.records == 0 for shard in beam.splits["train"].shards)
        assert beam.splits["val"].shards == ()


def test_beam_workers_write_a_file_url_data_dir_through_gfile(tmp_path, tiny_corpus):
    common = dict(inputs=(tiny_corpus,), vocab_size=64, context_length=8, shards=2, val_fraction=0.2, seed=1, workers=1)
    run_ingest(IngestSettings(out=str(tmp_path / "local"), **common))
    run_beam_ingest(IngestSettings(out=f"file://{tmp_path}/beam", **common))
    assert_same_dataset(str(tmp_path / "local"), str(tmp_path / "beam"))


def test_a_malformed_row_on_a_beam_worker_is_the_same_input_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine words here"}\n{"text": 3}\n')
    with pytest.raises(InputError) as raised:
        run_beam_ingest(IngestSettings(inputs=(str(bad),), out=str(tmp_path / "out"), workers=1))
    assert raised.value.message == f"{bad}, line 2: field 'text' is not a string"
    assert "--on-error skip" in raised.value.hint


def test_pipeline_flags_default_to_a_multiprocess_directrunner_and_pass_options_through():
    settings = IngestSettings(inputs=("x.txt",), out="out", workers=3)
    assert pipeline_flags(settings, []) == [
        "--runner=DirectRunner", "--direct_num_workers=3", "--direct_running_mode=multi_processing",
        "--default_sdk_harness_log_level=CRITICAL"]
    flags = pipeline_flags(settings, ["runner=FlinkRunner", "flink_master=host:8081", "--parallelism=8", "save_main_session"])
    assert flags == ["--runner=FlinkRunner", "--flink_master=host:8081", "--parallelism=8", "--save_main_session"]
    single = pipeline_flags(IngestSettings(inputs=("x.txt",), out="out", workers=1), ["direct_num_workers=2"])
    assert "--direct_num_workers=2" in single and "--direct_running_mode=in_memory" in single
    with pytest.raises(SettingsError, match="KEY=VALUE"):
        pipeline_flags(settings, ["=value"])


def test_without_beam_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # makes `import apache_beam` raise ImportError
    with pytest.raises(SettingsError) as raised:
        _beam()
    assert "nextword[beam]" in raised.value.hint


def test_beam_options_without_the_beam_runner_are_refused(tmp_path, tiny_corpus):
    command = [sys.executable, "-m", "nextword.cli", "ingest", tiny_corpus, "--out", str(tmp_path / "out"),
               "--beam-option", "runner=FlinkRunner"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2
    assert "--beam-option applies to --runner beam only" in result.stderr and "Traceback" not in result.stderr
