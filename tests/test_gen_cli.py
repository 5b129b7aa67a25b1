"""The `gen` CLI: output, batching, --json, prompts files, determinism and clean errors.

Most tests run the real entry point (`generate.cli.main`, which turns NextwordError into
a message and an exit code) in-process; one runs the `gen` console script in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from nextword.generate import cli as gen_cli
from nextword.model.export import export_model
from test_export_fixtures import model_config_for, random_model, tiny_data_dir  # noqa: F401


@pytest.fixture(scope="module")
def run_dir(tiny_data_dir, tmp_path_factory):  # noqa: F811
    """A RUN_DIR holding export/ (an LSTM with random weights)."""
    run = tmp_path_factory.mktemp("run")
    config = model_config_for(tiny_data_dir, layers=1)
    export_model(random_model(config, seed=3), config, tiny_data_dir, str(run / "export"), {"steps": 0})
    return str(run)


@pytest.fixture(scope="module")
def export_dir(run_dir):
    return os.path.join(run_dir, "export")


def run_gen(args, capsys, monkeypatch, stdin: str | None = None):
    """(exit code, stdout, stderr) of `gen ARGS` through the real entry point."""
    monkeypatch.setattr(sys, "argv", ["gen", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8"))
    code = 0
    try:
        gen_cli.main()
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prompts_times_samples_in_one_call(export_dir, capsys, monkeypatch):
    code, out, _ = run_gen([export_dir, "the cat", "a b", "--num-samples", "3", "--words", "5", "--seed", "1",
                            "--no-stream"], capsys, monkeypatch)
    lines = out.splitlines()
    assert code == 0
    assert len(lines) == 6
    assert all(line.startswith("the cat ") for line in lines[:3]) and all(line.startswith("a b ") for line in lines[3:])
    assert all(len(line.split()) == 2 + 5 for line in lines)
    assert "<pad>" not in out and "<unk>" not in out


def test_json_lines_report_unknown_words_and_settings(export_dir, capsys, monkeypatch):
    args = [export_dir, "the zzz cat", "", "--words", "4", "--seed", "7", "--top-k", "3", "--top-p", "0.9",
            "--repetition-penalty", "1.2", "--no-repeat-ngram", "2", "--json"]
    code, out, _ = run_gen(args, capsys, monkeypatch)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [record["prompt"] for record in records] == ["the zzz cat", ""]
    assert records[0]["unknown_prompt_words"] == ["zzz"] and records[1]["unknown_prompt_words"] == []
    assert all(len(record["text"].split()) == 4 and min(record["ids"]) >= 2 for record in records)
    assert records[0]["settings"]["seed"] == 7 and records[0]["settings"]["top_k"] == 3
    _, again, _ = run_gen(args, capsys, monkeypatch)
    assert again == out  # same seed, same output
    _, other, _ = run_gen([*args[:-3], "8", *args[-2:]], capsys, monkeypatch)
    assert [json.loads(line)["text"] for line in other.splitlines()] != [r["text"] for r in records]


def test_unknown_words_go_to_stderr_and_greedy_needs_no_seed(export_dir, capsys, monkeypatch):
    code, out, err = run_gen([export_dir, "the qqq cat", "--greedy", "--words", "6"], capsys, monkeypatch)
    assert code == 0 and "qqq" in err and "qqq" in out.split()[1]
    assert run_gen([export_dir, "the qqq cat", "--greedy", "--words", "6"], capsys, monkeypatch)[1] == out


def test_run_dir_prompts_file_and_stdin(run_dir, tmp_path, capsys, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\n\na b\n")
    code, out, _ = run_gen([run_dir, "--prompts-file", str(prompts), "--words", "3", "--greedy"], capsys, monkeypatch)
    assert code == 0 and [line.split()[:2] for line in out.splitlines()] == [["the", "cat"], ["a", "b"]]
    code, from_stdin, _ = run_gen([run_dir, "--prompts-file", "-", "--words", "3", "--greedy"], capsys, monkeypatch,
                                  stdin="the cat\na b\n")
    assert code == 0 and from_stdin == out


def test_stream_prints_the_same_text(export_dir, capsys, monkeypatch):
    base = [export_dir, "the cat", "--words", "8", "--seed", "3"]
    assert run_gen([*base, "--stream"], capsys, monkeypatch)[1] == run_gen([*base, "--no-stream"], capsys, monkeypatch)[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "0"], "--temperature must be a positive number"),
        (["--temperature", "-1"], "--temperature must be a positive number"),
        (["--top-p", "0"], "--top-p must be in (0, 1]"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--top-k", "0"], "--top-k must be at least 1"),
        (["--words", "0"], "--words must be at least 1"),
        (["--num-samples", "0"], "--num-samples must be at least 1"),
        (["--repetition-penalty", "0"], "--repetition-penalty must be a positive number"),
        (["--prompts-file", "/nonexistent/prompts.txt"], "--prompts-file /nonexistent/prompts.txt does not exist"),
    ],
)
def test_bad_settings_are_rejected_clearly(args, message, export_dir, capsys, monkeypatch):
    code, out, err = run_gen([export_dir, "the cat", *args], capsys, monkeypatch)
    assert code != 0 and out == ""
    assert f"error: {message}" in err and "Traceback" not in err


def test_greedy_accepts_any_temperature(export_dir, capsys, monkeypatch):
    assert run_gen([export_dir, "the", "--greedy", "--temperature", "0", "--words", "2"], capsys, monkeypatch)[0] == 0


def test_a_directory_that_is_not_an_export(tmp_path, capsys, monkeypatch):
    code, _, err = run_gen([str(tmp_path), "the cat"], capsys, monkeypatch)
    assert code != 0 and "is not a nextword export" in err and "Traceback" not in err
    code, _, err = run_gen([str(tmp_path / "missing"), "the cat"], capsys, monkeypatch)
    assert code != 0 and "does not exist" in err


def test_an_interrupted_export_without_card_is_not_an_export(export_dir, tmp_path, capsys, monkeypatch):
    partial = tmp_path / "export"
    shutil.copytree(export_dir, partial)
    os.remove(partial / "card.json")
    code, _, err = run_gen([str(partial), "the cat"], capsys, monkeypatch)
    assert code != 0 and "is not a nextword export" in err


def test_a_tampered_file_fails_its_sha256_before_loading(export_dir, tmp_path, capsys, monkeypatch):
    tampered = tmp_path / "export"
    shutil.copytree(export_dir, tampered)
    variables = tampered / "saved_model" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(variables.read_bytes())
    data[len(data) // 2] ^= 0xFF
    variables.write_bytes(bytes(data))

    import tensorflow as tf

    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded an export that failed its checksum")

    monkeypatch.setattr(tf.saved_model, "load", must_not_load)
    code, out, err = run_gen([str(tampered), "the cat"], capsys, monkeypatch)
    assert code != 0 and out == ""
    assert "saved_model/variables/variables.data-00000-of-00001" in err and "sha256" in err
    assert "Traceback" not in err


def test_an_extra_file_in_the_saved_model_is_refused(export_dir, tmp_path, capsys, monkeypatch):
    altered = tmp_path / "export"
    shutil.copytree(export_dir, altered)
    (altered / "saved_model" / "assets").mkdir(exist_ok=True)
    (altered / "saved_model" / "assets" / "extra.txt").write_text("x")
    code, _, err = run_gen([str(altered), "the cat"], capsys, monkeypatch)
    assert code != 0 and "extra.txt" in err and "not listed" in err


def test_gen_inside_a_program_running_tensorflow_leaves_its_graph_optimizer_alone(export_dir, capsys, monkeypatch):
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options()
    code, out, _ = run_gen([export_dir, "the cat", "--words", "3", "--seed", "1"], capsys, monkeypatch)
    assert code == 0 and len(out.split()) == 5
    assert tf.config.optimizer.get_experimental_options() == before
    assert not before.get("disable_meta_optimizer")


def test_mounted_as_nextword_gen(export_dir):
    app = typer.Typer()
    app.command("other")(lambda: None)  # a multi-command app, like `nextword`
    gen_cli.register(app)
    result = CliRunner().invoke(app, ["gen", export_dir, "the cat", "--words", "3", "--greedy"])
    assert result.exit_code == 0, result.output
    assert len(result.output.split()) == 5


GEN_PROCESS = r"""
import json, sys, time
started = time.perf_counter()
sys.argv = ["gen", *sys.argv[1:]]
from nextword.generate.cli import main
try:
    main()
except SystemExit as exit_:
    code = exit_.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"ingest", "model", "tfrecords"})
import tensorflow as tf
optimizer = tf.config.optimizer.get_experimental_options()
print(json.dumps({"code": code, "heavy": heavy, "seconds": time.perf_counter() - started, "optimizer": optimizer}),
      file=sys.stderr)
"""


@pytest.mark.slow
def test_console_script_in_a_fresh_process(export_dir, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    gen_script = shutil.which("gen", path=os.path.dirname(sys.executable))
    started = time.perf_counter()
    result = subprocess.run([gen_script, export_dir, "the cat", "--words", "5", "--seed", "9"],
                            capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 7 and "Traceback" not in result.stderr
    assert elapsed < 60
    probe = subprocess.run([sys.executable, "-c", GEN_PROCESS, export_dir, "the cat", "--words", "5", "--seed", "9"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    report = json.loads(probe.stderr.strip().splitlines()[-1])
    assert report["code"] == 0 and report["heavy"] == []  # gen loads neither ingest, model nor tfrecords
    assert report["optimizer"].get("disable_meta_optimizer") is True  # its own TensorFlow: grappler off
    assert probe.stdout == result.stdout  # same seed, same output across processes
    bad = subprocess.run([gen_script, export_dir, "--top-p", "2"], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode != 0 and "error: --top-p" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture
def load_once(export_dir, monkeypatch):
    """Generator.load answers with one loaded export: these tests call gen several times."""
    from nextword.generate.generator import Generator

    loaded = Generator.load(export_dir)
    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, model_dir, compiled=False: loaded))


def test_prompts_come_from_piped_stdin_when_none_are_given(export_dir, load_once, capsys, monkeypatch):
    args = [export_dir, "--words", "3", "--greedy"]
    code, piped, _ = run_gen(args, capsys, monkeypatch, stdin="the cat\n\na b\n")
    assert code == 0 and [line.split()[:2] for line in piped.splitlines()] == [["the", "cat"], ["a", "b"]]
    code, empty, _ = run_gen(args, capsys, monkeypatch, stdin="")  # an empty pipe: no prompts, one empty context
    assert code == 0 and len(empty.splitlines()) == 1 and len(empty.split()) == 3
    code, given, _ = run_gen([export_dir, "dog", *args[1:]], capsys, monkeypatch, stdin="the cat\n")
    assert code == 0 and len(given.splitlines()) == 1 and given.split()[0] == "dog"  # a prompt given: stdin unread


def test_a_drawn_seed_is_printed_and_repeats_the_sample(export_dir, load_once, capsys, monkeypatch):
    args = [export_dir, "the cat", "--words", "8", "--num-samples", "2", "--no-stream"]
    code, out, err = run_gen(args, capsys, monkeypatch)
    drawn = re.search(r"^seed (\d+) \(pass --seed \1 to repeat this sample\)$", err, re.MULTILINE)
    assert code == 0 and drawn, err
    code, again, again_err = run_gen([*args, "--seed", drawn.group(1)], capsys, monkeypatch)
    assert code == 0 and again == out and "seed" not in again_err
    for quiet in ("--greedy", "--json"):  # greedy uses no seed; --json carries it in every record
        code, _, quiet_err = run_gen([*args, quiet], capsys, monkeypatch)
        assert code == 0 and "seed" not in quiet_err
