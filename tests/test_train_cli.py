"""`nextword train / eval / plot` end to end on tiny data (in process, typer's runner)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from _cli import run_cli
from _train_data import cli_command, cli_env, write_data_dir
from nextword.model.cli import register
from nextword.model.settings import RECIPE_DEFAULTS, TrainSettings
from nextword.errors import ArtifactError, SettingsError

SMALL = ["--arch", "lstm", "--layers", "1", "--units", "16", "--embedding-dim", "8", "--batch-size", "16", "--no-progress"]


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # a val split smaller than the validation sample: each validation scores all of it
    return write_data_dir(str(tmp_path_factory.mktemp("data")), val_documents=5)


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("run"))
    result = CliRunner().invoke(cli(), ["train", data_dir, "--out", run_dir, "--epochs", "2", "--no-export", "--checkpoint-every", "25", *SMALL])
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_train_writes_the_run_dir(trained_run):
    run_dir, output = trained_run
    assert "stopped by epochs" in output and "validation: loss" in output
    for name in ("run.json", "history.json", "summary.json", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(run_dir, "logs")))
    history = json.load(open(os.path.join(run_dir, "history.json")))
    summary = history["summary"]
    every = summary["validate_every"]
    # validations at every `validate_every` steps, and on the final weights
    assert [row["step"] for row in history["epochs"]] == [*range(every, summary["steps"], every), summary["steps"]]
    assert history["epochs"][-1]["val_loss"] < history["epochs"][0]["val_loss"]  # it learns
    for key in ("val_perplexity", "val_top1", "val_top5"):
        assert key in history["epochs"][-1]
    assert summary["stopped_by"] == "epochs" and summary["epochs_completed"] == 2
    assert summary["model_config"]["objective"] == "all" and summary["optimizer"] == RECIPE_DEFAULTS["optimizer"]
    assert summary["jit_compile"] is False  # an lstm
    assert summary["precision"] == "float32" and summary["mixed_precision"] is False  # a CPU's default
    assert json.load(open(os.path.join(run_dir, "run.json")))["settings"]["precision"] == "float32"  # resolved
    assert summary["schedule"]["schedule"] == RECIPE_DEFAULTS["schedule"]
    assert summary["optimization"]["clip_norm"] == RECIPE_DEFAULTS["clip_norm"]
    for name in ("loss.png", "accuracy.png", "perplexity.png"):
        assert open(os.path.join(run_dir, "plots", name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_eval_on_the_run_dir_scores_the_best_validation(trained_run, data_dir):
    run_dir, _ = trained_run
    result = CliRunner().invoke(cli(), ["eval", run_dir, data_dir, "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    history = json.load(open(os.path.join(run_dir, "history.json")))
    best = min(history["epochs"], key=lambda row: row["val_loss"])
    assert history["summary"]["exported"]["step"] == best["step"]
    assert scores["loss"] == pytest.approx(best["val_loss"], rel=1e-5)  # the sample is the whole (tiny) split here
    assert scores["loss"] == pytest.approx(history["summary"]["validation"]["loss"], rel=1e-5)
    assert scores["top1"] == pytest.approx(best["val_top1"])
    assert scores["windows"] > 0 and scores["source"] == "checkpoint best"
    latest = json.loads(CliRunner().invoke(cli(), ["eval", run_dir, data_dir, "--json", "--checkpoint", "latest"]).output)
    assert latest["loss"] == pytest.approx(history["epochs"][-1]["val_loss"], rel=1e-5)
    text = CliRunner().invoke(cli(), ["eval", run_dir, data_dir, "--split", "train"])
    assert text.exit_code == 0 and "perplexity" in text.output and "train:" in text.output
    text = CliRunner().invoke(cli(), ["eval", run_dir, data_dir, "--split", "train"])
    assert text.exit_code == 0 and "perplexity" in text.output and "train:" in text.output


def test_plot_regenerates_the_pngs(trained_run):
    run_dir, _ = trained_run
    os.remove(os.path.join(run_dir, "plots", "loss.png"))
    result = CliRunner().invoke(cli(), ["plot", run_dir])
    assert result.exit_code == 0 and os.path.exists(os.path.join(run_dir, "plots", "loss.png"))


def test_rerun_of_a_finished_run_resumes_without_training(trained_run, data_dir):
    run_dir, _ = trained_run
    result = CliRunner().invoke(cli(), ["train", data_dir, "--out", run_dir, "--epochs", "2", "--no-export", *SMALL])
    assert result.exit_code == 0, result.output
    assert json.load(open(os.path.join(run_dir, "summary.json")))["windows_trained_this_session"] == 0


def test_resume_with_another_model_config_is_refused(trained_run, data_dir):
    run_dir, _ = trained_run
    result = CliRunner().invoke(cli(), ["train", data_dir, "--out", run_dir, "--no-export", *SMALL, "--units", "32"])
    assert isinstance(result.exception, ArtifactError)
    assert "--units: the run has 16, this command asks for 32" in result.exception.message


def test_no_resume_refuses_to_overwrite(trained_run, data_dir):
    run_dir, _ = trained_run
    result = CliRunner().invoke(cli(), ["train", data_dir, "--out", run_dir, "--no-resume", "--no-export", *SMALL])
    assert isinstance(result.exception, SettingsError)


def test_resume_on_another_dataset_is_refused(trained_run, tmp_path):
    run_dir, _ = trained_run
    other = write_data_dir(str(tmp_path / "other"), train_documents=60)
    result = CliRunner().invoke(cli(), ["train", other, "--out", run_dir, "--no-export", *SMALL])
    assert isinstance(result.exception, ArtifactError) and "another dataset" in result.exception.message


def test_time_budget_stops_cleanly_and_saves(data_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["train", data_dir, "--out", run_dir, "--epochs", "1000", "--time-budget", "1", "--no-export", *SMALL]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["stopped_by"] == "time_budget" and 0 < summary["steps"]
    assert summary["train_seconds_this_session"] < 10
    assert f"ckpt-{summary['steps']}.index" in os.listdir(os.path.join(run_dir, "checkpoints"))


def test_max_steps_and_notebook_preset(data_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["train", data_dir, "--out", run_dir, "--preset", "notebook", "--batch-size", "32", "--max-steps", "7", "--no-export", "--no-progress"]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 0, result.output
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["steps"] == 7 and summary["stopped_by"] == "max_steps"
    assert summary["optimizer"] == "rmsprop" and summary["batch_size"] == 32  # explicit flag beats preset
    config = summary["model_config"]
    assert (config["embedding_dim"], config["layers"], config["units"], config["bidirectional"], config["objective"]) == (8, 3, 50, True, "last")
    # stopped mid-epoch: the final weights are validated (a candidate for the best)
    last = json.load(open(os.path.join(run_dir, "history.json")))["epochs"][-1]
    assert last["step"] == 7
    assert summary["schedule"]["schedule"] == "constant" and summary["optimization"]["clip_norm"] == 0


def test_settings_validation():
    with pytest.raises(SettingsError, match="--strategy"):
        TrainSettings(data_dir="d", out="o", strategy="tpu")
    with pytest.raises(SettingsError, match="--batch-size"):
        TrainSettings(data_dir="d", out="o", batch_size=0)
    with pytest.raises(SettingsError, match="--bidirectional"):
        TrainSettings(data_dir="d", out="o", bidirectional=True).model_config(10, 4)
    assert TrainSettings(data_dir="d", out="o", preset="notebook", units=64).model_config(10, 4).units == 64
    with pytest.raises(SettingsError, match="--peak-flops must be > 0") as refused:
        TrainSettings(data_dir="d", out="o", peak_flops=0)
    assert "312e12" in refused.value.hint


def test_transformer_settings_resolve_and_refuse_clearly():
    config = TrainSettings(data_dir="d", out="o", arch="transformer").model_config(500, 44)
    assert (config.arch, config.layers, config.units, config.heads, config.feed_forward_dim) == ("transformer", 2, 128, 4, 512)
    assert config.embedding_dim == config.units  # recorded as what the network really has
    assert TrainSettings(data_dir="d", out="o", arch="transformer", units=64, ff_dim=96).model_config(500, 44).feed_forward_dim == 96
    with pytest.raises(SettingsError, match="multiple of --heads: 100 is not a multiple of 3"):
        TrainSettings(data_dir="d", out="o", arch="transformer", units=100, heads=3).model_config(500, 44)
    with pytest.raises(SettingsError, match="--embedding-dim 32 with --arch transformer"):
        TrainSettings(data_dir="d", out="o", arch="transformer", embedding_dim=32).model_config(500, 44)
    with pytest.raises(SettingsError, match="causal"):
        TrainSettings(data_dir="d", out="o", arch="transformer", bidirectional=True, objective="last").model_config(500, 44)
    # the notebook preset stays the notebook's model
    assert TrainSettings(data_dir="d", out="o", preset="notebook").model_config(500, 44).arch == "lstm"
    # the notebook's EarlyStopping (training loss, patience 50 epochs) never ends a run of minutes: nor does the preset's
    assert TrainSettings(data_dir="d", out="o", preset="notebook").optimization().patience == 0
    assert TrainSettings(data_dir="d", out="o").optimization().schedule == "wsd"
    # XLA by default for the transformer only (an LSTM steps 3.2x slower compiled on a CPU); a flag wins
    assert [TrainSettings(data_dir="d", out="o").jit_compile_for(arch) for arch in ("transformer", "lstm", "gru")] == [True, False, False]
    assert TrainSettings(data_dir="d", out="o", jit_compile=False).jit_compile_for("transformer") is False
    assert TrainSettings(data_dir="d", out="o", jit_compile=True).jit_compile_for("lstm") is True


def test_the_transformer_recipe_uses_alibi_positions_unless_asked_otherwise():
    def positions(**flags):
        return TrainSettings(data_dir="d", out="o", **flags).model_config(500, 44).positions

    assert positions() == positions(arch="transformer") == "alibi"
    assert positions(arch="transformer", positions="learned") == "learned"
    assert positions(arch="lstm") == positions(preset="notebook") == "learned"  # no attention: nothing to bias
    assert positions(arch="transformer", ignore_padding=False) == "learned"  # 0.2's window positions, as trained
    with pytest.raises(SettingsError, match="--positions alibi is for --arch transformer with --ignore-padding"):
        positions(arch="transformer", ignore_padding=False, positions="alibi")


def test_transformer_trains_exports_evaluates_and_generates(data_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    trained = run_cli("train", data_dir, "--out", run_dir, "--arch", "transformer", "--layers", "1", "--units", "16",
                      "--heads", "2", "--ff-dim", "32", "--batch-size", "16", "--max-steps", "6", "--no-progress")
    assert trained.exit_code == 0, trained.stderr
    assert "validation: loss" in trained.stdout
    card = json.load(open(os.path.join(run_dir, "export", "card.json")))
    assert card["model"]["arch"] == "transformer" and "cached keys and values" in card["generation"]
    assert card["model"]["positions"] == "alibi" and "ring" in card["generation"]  # the recipe's default: no re-read
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["jit_compile"] is True  # the transformer's default
    # FLOP accounting: the formula's cost of a window, times the windows/s, over the peak (model/flops.py)
    from nextword.model import flops
    from nextword.model.config import ModelConfig

    compute = summary["compute"]
    assert compute["training_flops_per_window"] == flops.training_flops_per_window(ModelConfig.from_dict(summary["model_config"]))
    # (windows_per_second is rounded to 0.1: a few windows/s in a 6-step run)
    assert compute["achieved_flops_per_second"] == pytest.approx(summary["windows_per_second"] * compute["training_flops_per_window"], rel=1e-2)
    assert compute["utilisation"] == pytest.approx(compute["achieved_flops_per_second"] / compute["peak_flops_per_second"], rel=1e-3)
    assert "of the" in trained.stdout and "GFLOP/s peak" in trained.stdout
    from_export = run_cli("eval", os.path.join(run_dir, "export"), data_dir, "--json")
    from_checkpoint = run_cli("eval", run_dir, data_dir, "--json")
    assert from_export.exit_code == from_checkpoint.exit_code == 0, from_export.stderr + from_checkpoint.stderr
    # the export runs the trained layers: the network in it scores like the checkpoint (the validation
    # sample is the whole val split here), and its mixture with the 5-gram, weighted by maximum likelihood
    # on that sample, scores no worse
    network = json.loads(from_checkpoint.stdout)
    assert card["ngram"]["sample_perplexity"]["network"] == pytest.approx(network["perplexity"], rel=1e-4)
    assert json.loads(from_export.stdout)["loss"] <= network["loss"] + 1e-5
    generated = run_cli(os.path.join(run_dir, "export"), "the cat sat", "--words", "60", "--greedy", program="gen")
    assert generated.exit_code == 0, generated.stderr
    assert generated.stdout.startswith("the cat sat ") and len(generated.stdout.split()) == 3 + 60  # prompt + words
    assert "<pad>" not in generated.stdout and "<unk>" not in generated.stdout


def test_transformer_resume_is_exact_dropout_included(data_dir, tmp_path):
    """4 steps, stop, 4 more == 8 in one go, bit for bit: the dropout layers inside the blocks
    keep their seed-generator states in the checkpoint like the recurrent models' do. (A constant
    rate: --max-steps 4 then 8 plans two different cosine curves; the same command resumed after
    a kill continues one curve exactly: tests/test_train_resume.py.)"""
    args = ["--arch", "transformer", "--layers", "2", "--units", "16", "--heads", "2", "--dropout", "0.3",
            "--batch-size", "16", "--seed", "5", "--deterministic", "--no-export", "--no-progress",
            "--schedule", "constant", "--warmup-steps", "0"]
    whole = run_cli("train", data_dir, "--out", str(tmp_path / "whole"), "--max-steps", "8", *args)
    first = run_cli("train", data_dir, "--out", str(tmp_path / "split"), "--max-steps", "4", *args)
    second = run_cli("train", data_dir, "--out", str(tmp_path / "split"), "--max-steps", "8", *args)
    assert whole.exit_code == first.exit_code == second.exit_code == 0, whole.stderr + first.stderr + second.stderr
    assert "resuming from step 4" in second.stderr
    summaries = [json.load(open(tmp_path / name / "summary.json")) for name in ("whole", "split")]
    assert summaries[0]["steps"] == summaries[1]["steps"] == 8
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]


def test_cli_errors_print_a_message_without_traceback(tmp_path):
    result = subprocess.run(
        cli_command("train", str(tmp_path), "--out", str(tmp_path / "run")),
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "not a nextword dataset" in result.stderr and "Traceback" not in result.stderr


def test_train_prints_no_native_log_lines(data_dir, tmp_path):
    """TensorFlow's C++ log lines ("E0000 ... util.cc:131] oneDNN supports DT_INT64 only on platforms
    with AVX-512", printed by the span reader's first integer transpose) are not for the user."""
    result = subprocess.run(
        cli_command("train", data_dir, "--out", str(tmp_path / "run"), "--max-steps", "3", "--no-export", *SMALL),
        env=cli_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    native = [line for line in (result.stdout + result.stderr).splitlines() if re.match(r"[EWIF]\d{4} ", line)]
    assert not native, native


def test_train_and_eval_on_a_dataset_written_by_the_real_ingest(tiny_dataset, tmp_path):
    run_dir = str(tmp_path / "run")
    result = CliRunner().invoke(cli(), ["train", tiny_dataset, "--out", run_dir, "--epochs", "1", "--no-export", *SMALL])
    assert result.exit_code == 0, result.output
    scores = json.loads(CliRunner().invoke(cli(), ["eval", run_dir, tiny_dataset, "--json"]).output)
    from nextword.tfrecords.manifest import load_manifest

    assert scores["windows"] == load_manifest(tiny_dataset).splits["val"].windows


def test_validation_runs_every_n_steps_and_a_resume_keeps_the_schedule(tmp_path):
    """Validations at multiples of --validate-every (and on the final weights), the same for a run
    stopped mid-way and resumed as for an uninterrupted one, whatever the epochs' lengths."""
    data_dir = write_data_dir(str(tmp_path / "data"), train_documents=120, val_documents=45)
    common = ["--epochs", "3", "--no-export", "--objective", "last", "--validate-every", "7", "--patience", "0", *SMALL]
    whole, halves = str(tmp_path / "whole"), str(tmp_path / "halves")
    assert CliRunner().invoke(cli(), ["train", data_dir, "--out", whole, *common]).exit_code == 0
    stopped = CliRunner().invoke(cli(), ["train", data_dir, "--out", halves, *common, "--max-steps", "10"])
    assert stopped.exit_code == 0, stopped.output
    assert CliRunner().invoke(cli(), ["train", data_dir, "--out", halves, *common]).exit_code == 0
    rows = {}
    for run_dir in (whole, halves):
        history = json.load(open(os.path.join(run_dir, "history.json")))
        steps = history["summary"]["steps"]
        rows[run_dir] = [row["step"] for row in history["epochs"]]
        scheduled = [*range(7, steps + 1, 7)]
        assert [step for step in rows[run_dir] if step % 7 == 0] == scheduled, run_dir
    assert [step for step in rows[halves] if step != 10] == rows[whole]  # the stopped run's final row (step 10) aside


def test_a_dataset_holding_fewer_windows_than_its_manifest_says_stops_with_a_message(tmp_path):
    data_dir = write_data_dir(str(tmp_path / "data"), train_shards=1)
    path = os.path.join(data_dir, "dataset.json")
    manifest = json.load(open(path))
    for shard in manifest["splits"]["train"]["shards"]:  # every record claims one window more than it holds
        shard["record_windows"] = [[windows + 1, count] for windows, count in shard["record_windows"]]
    open(path, "w").write(json.dumps(manifest))
    result = CliRunner().invoke(cli(), ["train", data_dir, "--out", str(tmp_path / "run"), "--epochs", "3",
                                        "--no-export", "--objective", "last", *SMALL])
    assert isinstance(result.exception, ArtifactError), result.output  # the CLI boundary prints it (exit 1)
    assert "epoch 0 of the train split ended after" in str(result.exception) and "verify" in result.exception.hint


PLOT_PROCESS = r"""
import json, sys
sys.argv = ["nextword", "plot", sys.argv[1]]
from nextword.cli import main
try:
    main()
except SystemExit as exit_:
    code = exit_.code or 0
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}), file=sys.stderr)
"""


def test_plot_does_not_import_tensorflow(tmp_path):
    history = {"steps": [{"step": 10, "epoch": 0, "loss": 3.0, "windows_per_second": 100.0}],
               "epochs": [{"epoch": 0, "step": 10, "train_loss": 3.0, "val_loss": 2.9, "val_perplexity": 18.2,
                           "val_top1": 0.1, "val_top5": 0.3}], "summary": {}}
    (tmp_path / "history.json").write_text(json.dumps(history))
    result = subprocess.run([sys.executable, "-c", PLOT_PROCESS, str(tmp_path)], capture_output=True, text=True,
                            timeout=120, env=cli_env())
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "tensorflow": False}, result.stderr
    assert open(tmp_path / "plots" / "loss.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_export_command_re_exports_the_latest_checkpoint(trained_run, data_dir, tmp_path):
    from nextword.generate.generator import GenerateSettings, Generator

    run_dir = str(tmp_path / "run")
    shutil.copytree(trained_run[0], run_dir)
    result = run_cli("export", run_dir, "--ngram-order", "0")  # the network alone: scored against the run below
    export_dir = os.path.join(run_dir, "export")
    assert result.exit_code == 0 and export_dir in result.stdout, result.output
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    generator = Generator.load(run_dir)  # what gen loads: the card's sha256s checked first
    card = generator.card
    assert card["training"]["steps"] == summary["steps"] and card["training"]["weights_sha256"] == summary["weights_sha256"]
    assert card["model"] == json.load(open(os.path.join(run_dir, "run.json")))["model_config"] and card["ngram"] is None
    samples, _ = generator.generate(["w1 w2"], GenerateSettings(words=4, greedy=True))
    assert len(samples[0].text.split()) == 4
    # the best checkpoint's weights: the export scores what the run measured for them
    from_export = json.loads(CliRunner().invoke(cli(), ["eval", export_dir, data_dir, "--json"]).output)
    assert from_export["source"] == "export"
    assert from_export["loss"] == pytest.approx(summary["validation"]["loss"], rel=1e-5)


def test_export_command_errors(trained_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("export", str(empty))
    assert result.exit_code == 1 and "holds no run.json" in result.stderr and "Traceback" not in result.output
    no_checkpoint = tmp_path / "no-checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(os.path.join(trained_run[0], "run.json"), no_checkpoint / "run.json")
    result = run_cli("export", str(no_checkpoint))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{no_checkpoint} holds no checkpoint to export" in result.stderr and "nextword train" in result.stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    result = run_cli("export", trained_run[0], "--out", str(occupied))
    assert result.exit_code == 1 and "not a nextword export" in result.stderr
    assert (occupied / "notes.txt").read_text() == "mine"
    # refused before TensorFlow loads or anything is written, naming what is accepted
    result = run_cli("export", trained_run[0], "--ngram-order", "1", "--out", str(tmp_path / "order-1"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--ngram-order must be 0 (the network alone) or 2..8, got 1" in result.stderr
    assert not (tmp_path / "order-1").exists()
