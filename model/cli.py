"""Typer layer for `nextword train`, `nextword eval` and `nextword plot` (the core is in model.train/evaluate)."""

from __future__ import annotations

import json
from typing import Optional

import typer

from model.settings import RECIPE_DEFAULTS, TrainSettings
from nextword.quiet import load_tensorflow

_MODEL_HELP = "default: the preset's, else our recipe's (model/config.py ModelConfig)"


def train(
    data_dir: str = typer.Argument(..., help="DATA_DIR written by `nextword ingest`"),
    out: str = typer.Option(..., "--out", help="RUN_DIR: checkpoints, logs, history.json, plots/, export/"),
    preset: Optional[str] = typer.Option(None, help="notebook: Embedding 8, 3 x Bidirectional LSTM 50, objective last, rmsprop, batch 512"),
    arch: Optional[str] = typer.Option(None, help=f"lstm|gru; {_MODEL_HELP}"),
    layers: Optional[int] = typer.Option(None, help=_MODEL_HELP),
    units: Optional[int] = typer.Option(None, help=_MODEL_HELP),
    embedding_dim: Optional[int] = typer.Option(None, help=_MODEL_HELP),
    dropout: Optional[float] = typer.Option(None, help=_MODEL_HELP),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--no-bidirectional", help=_MODEL_HELP),
    objective: Optional[str] = typer.Option(None, help="last: predict the window's final word; all: every next word (not with --bidirectional)"),
    batch_size: Optional[int] = typer.Option(None, help=f"global batch over all replicas; default {RECIPE_DEFAULTS['batch_size']}"),
    epochs: int = typer.Option(5),
    max_steps: Optional[int] = typer.Option(None, help="stop after this many global steps (counted across resumes)"),
    time_budget: Optional[float] = typer.Option(None, help="seconds of training; then save, validate and export"),
    optimizer: Optional[str] = typer.Option(None, help=f"adam|rmsprop; default {RECIPE_DEFAULTS['optimizer']}"),
    learning_rate: Optional[float] = typer.Option(None, help=f"default {RECIPE_DEFAULTS['learning_rate']}"),
    seed: int = typer.Option(0, help="same seed, same data order, init and dropout: same weights"),
    strategy: str = typer.Option("auto", help="auto|default|mirrored|multiworker (auto: multiworker if TF_CONFIG is set, mirrored if >1 GPU)"),
    devices: Optional[int] = typer.Option(None, help="split the CPU into N logical devices (a real MirroredStrategy on CPU)"),
    mixed_precision: Optional[bool] = typer.Option(None, "--mixed-precision/--no-mixed-precision", help="default: on when a GPU is present"),
    steps_per_call: int = typer.Option(8, help="train steps per tf.function call"),
    deterministic: bool = typer.Option(False, "--deterministic", help="enable TF op determinism (bit-exact resume)"),
    checkpoint_every: int = typer.Option(200, help="save a checkpoint every N steps (and at the end)"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="default: resume when RUN_DIR holds a checkpoint"),
    export: bool = typer.Option(True, "--export/--no-export", help="write RUN_DIR/export at the end"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a next-word model on DATA_DIR under a tf.distribute strategy (resumable)."""
    settings = TrainSettings(**{name: value for name, value in locals().items()})
    load_tensorflow()
    from model.train import run_training

    summary = run_training(settings)
    print_summary(summary, out)
    if summary["stopped_by"] == "interrupt":
        typer.echo(f"interrupted: checkpoint saved at step {summary['steps']}; run the same command to resume", err=True)
        raise typer.Exit(130)


def print_summary(summary: dict, out: str) -> None:
    validation = summary.get("validation") or {}
    lines = [
        f"stopped by {summary['stopped_by']} at step {summary['steps']} ({summary['epochs_completed']} epochs completed)",
        f"{summary['windows_trained_this_session']:,} windows in {summary['train_seconds_this_session']:.1f} s "
        f"({summary['windows_per_second'] or 0:,.0f} windows/s) on {summary['replicas']} replica(s), {summary['strategy']}",
    ]
    if validation:
        lines.append(
            f"validation: loss {validation['loss']:.4f}  perplexity {validation['perplexity']:.2f}  "
            f"top-1 {validation['top1']:.4f}  top-5 {validation['top5']:.4f}"
        )
    lines.append(f"weights sha256: {summary['weights_sha256']}")
    lines.append(f"run dir: {out}")
    typer.echo("\n".join(lines))


def evaluate(
    model_dir: str = typer.Argument(..., help="RUN_DIR or EXPORT_DIR"),
    data_dir: str = typer.Argument(..., help="DATA_DIR written by `nextword ingest`"),
    split: str = typer.Option("val", help="split to score"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Loss, perplexity, top-1 and top-5 accuracy of the window's final word over a split."""
    load_tensorflow()
    from model.evaluate import evaluate as run_eval

    result = run_eval(model_dir, data_dir, split)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"{result['split']}: {result['windows']:,} windows ({result['source']})\n"
        f"loss {result['loss']:.4f}  perplexity {result['perplexity']:.2f}  "
        f"top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}"
    )


def plot(run_dir: str = typer.Argument(..., help="RUN_DIR written by `nextword train`")) -> None:
    """Regenerate RUN_DIR/plots/{loss,accuracy,perplexity}.png from history.json."""
    from model.history import plot_history

    for path in plot_history(run_dir):
        typer.echo(path)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("plot")(plot)
