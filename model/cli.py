"""Typer layer for `nextword train`, `nextword eval` and `nextword plot` (the core is in model.train/evaluate)."""

from __future__ import annotations

import json
from typing import List, Literal, Optional

import typer

from nextword.model.config import ARCHITECTURES, OBJECTIVES, POSITIONS, PRECISIONS
from nextword.model.schedule import SCHEDULES
from nextword.model.settings import (CHECKPOINT_CHOICES, DEFAULT_NGRAM_ORDER, OPTIMIZERS, PRESETS, RECIPE_DEFAULTS,
                                     STRATEGIES, TrainSettings, check_ngram_order)
from nextword.clihelp import Command
from nextword.errors import SettingsError
from nextword.quiet import load_tensorflow

_MODEL_HELP = "default: the preset's, else our recipe's for the --arch (model/config.py)"
# Choices the help lists and the parser enforces (TrainSettings / ModelConfig check the same values).
Preset = Literal[PRESETS]
Arch = Literal[ARCHITECTURES]
Objective = Literal[OBJECTIVES]
Optimizer = Literal[OPTIMIZERS]
Strategy = Literal[STRATEGIES]
Schedule = Literal[SCHEDULES]
CheckpointChoice = Literal[CHECKPOINT_CHOICES]
Precision = Literal[PRECISIONS]
Positions = Literal[POSITIONS]
NGRAM_HELP = (f"the export mixes the network with a Kneser-Ney n-gram of this order counted on the train split, "
              f"weighted by maximum likelihood on the validation sample (gen, eval EXPORT_DIR and TF Serving use the "
              f"mixture); 0: the network alone; default {DEFAULT_NGRAM_ORDER} (0 under --preset notebook)")
CACHE_HELP = ("with the n-gram, mix in a third part: the share of the 44-word window's own words that are each "
              "word (a cache: text repeats the words it has just used), its weight fitted with the others; on by "
              "default (bench/RESULTS.md: the export's held-out perplexity 288 -> 166 on the embedded corpus, the same weights)")
_RECIPE = "default: the preset's, else " + ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                                                   for name, value in RECIPE_DEFAULTS.items())


def train(
    data_dir: List[str] = typer.Argument(..., metavar="DATA_DIR...", help="a dataset written by `nextword ingest`; several: a weighted blend (they must share tokenizer, vocabulary and context: ingest them with --vocab-from the first)"),
    out: str = typer.Option(..., "--out", metavar="RUN_DIR", help="checkpoints, logs, history.json, plots/, export/"),
    weights: Optional[str] = typer.Option(None, metavar="W1,W2,...", help="a blend's weights, one per DATA_DIR in order (normalised): each source's share of the WINDOWS drawn in every batch, not of documents or tokens; a small source repeats (its epochs are counted apart). Default: equal shares. (Not DATA_DIR:weight: a DATA_DIR may be a gs:// URL)"),
    preset: Optional[Preset] = typer.Option(None, help="notebook: Embedding 8, 3 x Bidirectional LSTM 50, objective last, rmsprop, batch 512"),
    arch: Optional[Arch] = typer.Option(None, help=_MODEL_HELP),
    layers: Optional[int] = typer.Option(None, help=_MODEL_HELP),
    units: Optional[int] = typer.Option(None, help="units per recurrent layer, or the transformer's width; " + _MODEL_HELP),
    embedding_dim: Optional[int] = typer.Option(None, help="lstm/gru (a transformer's embeddings are --units wide); " + _MODEL_HELP),
    dropout: Optional[float] = typer.Option(None, help=_MODEL_HELP),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--no-bidirectional", help=_MODEL_HELP),
    heads: Optional[int] = typer.Option(None, help="transformer: attention heads (--units must be a multiple); " + _MODEL_HELP),
    ff_dim: Optional[int] = typer.Option(None, help="transformer: feed-forward width (default 4 x --units)"),
    objective: Optional[Objective] = typer.Option(None, help="last: predict the window's final word; all: every next word (not with --bidirectional)"),
    tie_embeddings: Optional[bool] = typer.Option(None, "--tie-embeddings/--no-tie-embeddings", help="the output projection reuses the input embeddings (recurrent models project down to --embedding-dim first); " + _MODEL_HELP),
    ignore_padding: Optional[bool] = typer.Option(None, "--ignore-padding/--no-ignore-padding", help="transformer: pads are masked out of attention and positions count from the window's first word, so short documents train as they are scored (default on; off: 0.2's window positions)"),
    positions: Optional[Positions] = typer.Option(None, help="transformer: alibi (default), no position embedding, attention falls with the distance in words, so generation slides its cache instead of re-reading the window when it fills (needs --ignore-padding); learned, a position embedding per window slot (0.3's runs before ALiBi: resume them with --positions learned)"),
    batch_size: Optional[int] = typer.Option(None, help=f"global batch over all replicas; default {RECIPE_DEFAULTS['batch_size']}"),
    epochs: int = typer.Option(TrainSettings.epochs, help="passes over the train split (counted across resumes)"),
    max_steps: Optional[int] = typer.Option(None, help="stop after this many global steps (counted across resumes)"),
    time_budget: Optional[float] = typer.Option(None, help="seconds of training; then save, validate and export"),
    optimizer: Optional[Optimizer] = typer.Option(None, help=f"default {RECIPE_DEFAULTS['optimizer']}"),
    learning_rate: Optional[float] = typer.Option(None, help=f"the schedule's peak rate; default {RECIPE_DEFAULTS['learning_rate']:g}"),
    weight_decay: Optional[float] = typer.Option(None, help=f"adamw's decoupled weight decay (not on embeddings, norms, biases); default {RECIPE_DEFAULTS['weight_decay']:g}"),
    schedule: Optional[Schedule] = typer.Option(None, help=f"after the warm-up, cosine: decay to 1/10 of the peak at the planned end (--epochs/--max-steps, or --time-budget, whichever comes first); wsd: hold the peak, then decay linearly to 0 over the last fifth of that plan; constant: never decay; default {RECIPE_DEFAULTS['schedule']}"),
    warmup_steps: Optional[int] = typer.Option(None, help=f"linear warm-up steps (at most 1/10 of the planned steps); default {RECIPE_DEFAULTS['warmup_steps']}"),
    clip_norm: Optional[float] = typer.Option(None, help=f"clip the global batch's gradient to this norm, 0 = off; default {RECIPE_DEFAULTS['clip_norm']:g}"),
    patience: Optional[int] = typer.Option(None, help=f"stop after N validations without a better held-out loss, 0 = never; default {RECIPE_DEFAULTS['patience']}. "
                                          "Under --schedule wsd it never cuts the decay short: at the peak rate the decay starts there (to 0 over a fifth of the plan), then the run stops"),
    seed: int = typer.Option(TrainSettings.seed, help="same seed, same data order, init and dropout: same weights"),
    strategy: Strategy = typer.Option(TrainSettings.strategy, help="auto: multiworker if TF_CONFIG is set, mirrored if >1 GPU, else default"),
    devices: Optional[int] = typer.Option(None, help="train on the first N GPUs (default: all; more than exist is refused); without GPUs, split the CPU into N logical devices (a real MirroredStrategy on CPU)"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="train on the CPU when this machine has NVIDIA GPUs that TensorFlow cannot use (default: refuse, exit 74)"),
    precision: Optional[Precision] = typer.Option(None, help="the dtype policy: weights stay float32, the mixed ones compute in 16 bits (float16 with loss scaling). Default by hardware: mixed_bfloat16 on GPUs that have it (compute capability 8.0+, Ampere on), mixed_float16 on older GPUs, float32 on CPUs (bench/step_bench.py on an AVX512-BF16 CPU: the default transformer step did not gain from mixed_bfloat16, an LSTM step ran 1.39x faster)"),
    mixed_precision: Optional[bool] = typer.Option(None, "--mixed-precision/--no-mixed-precision", hidden=True, help="before 0.3: --precision mixed_float16 / float32"),
    jit_compile: Optional[bool] = typer.Option(None, "--jit-compile/--no-jit-compile", help="compile each replica's forward and backward pass with XLA; default: on for the transformer (1.51x faster on a CPU), off for lstm/gru (3.2x slower compiled on a CPU; cuDNN on a GPU)"),
    steps_per_call: int = typer.Option(TrainSettings.steps_per_call, help="train steps per tf.function call"),
    deterministic: bool = typer.Option(False, "--deterministic", help="enable TF op determinism (bit-exact resume)"),
    checkpoint_every: int = typer.Option(TrainSettings.checkpoint_every, help="save a checkpoint every N steps (and at every validation, and at the end)"),
    validate_every: Optional[int] = typer.Option(None, help="score the val sample every N steps (default: after 4 samples' worth of trained windows)"),
    validation_sample: int = typer.Option(TrainSettings.validation_sample, help="val windows scored at each validation; the whole split is scored at the end"),
    export_checkpoint: CheckpointChoice = typer.Option(TrainSettings.export_checkpoint, help="export the best held-out weights, or the latest"),
    ngram_order: Optional[int] = typer.Option(None, help=NGRAM_HELP),
    context_cache: bool = typer.Option(True, "--context-cache/--no-context-cache", help=CACHE_HELP),
    peak_flops: Optional[float] = typer.Option(None, help="FLOP/s of the hardware the run uses (all devices: e.g. 8 x 312e12 for 8 A100s in bf16); the progress bar and summary.json report the step's matmul FLOP/s as a share of it. Default: a short matmul calibration in the step's compute dtype (float32; bfloat16 under mixed_bfloat16; float16 under mixed_float16 on GPUs), cached per machine in ~/.cache/nextword"),
    resume: Optional[bool] = typer.Option(None, "--resume/--no-resume", help="default: resume when RUN_DIR holds a checkpoint"),
    export: bool = typer.Option(True, "--export/--no-export", help="write RUN_DIR/export at the end"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="a progress bar on stderr"),
) -> None:
    """Train a next-word model on DATA_DIR under a tf.distribute strategy (resumable)."""
    settings = train_settings(dict(locals()))
    load_tensorflow()
    from nextword.model.train import run_training

    summary = run_training(settings)
    print_summary(summary, out)
    if summary["stopped_by"] == "interrupt":
        typer.echo(f"interrupted: checkpoint saved at step {summary['steps']}; run the same command to resume", err=True)
        raise typer.Exit(130)


def train_settings(options: dict) -> TrainSettings:
    """`train`'s parsed options -> TrainSettings (bench/recipe_bench.py resolves its arms through this too)."""
    options = dict(options)
    data_dirs = options.get("data_dir")
    if isinstance(data_dirs, (list, tuple)):  # the CLI's DATA_DIR...: the first, and all of a blend
        options["data_dir"], options["data_dirs"] = data_dirs[0], tuple(data_dirs) if len(data_dirs) > 1 else ()
    options["precision"] = precision_from_old_flag(options.pop("mixed_precision", None), options.get("precision"))
    return TrainSettings(**options)


def precision_from_old_flag(mixed_precision: bool | None, precision: str | None) -> str | None:
    """0.2's --mixed-precision/--no-mixed-precision, kept working: float16 with loss scaling / float32."""
    if mixed_precision is None:
        return precision
    old = "mixed_float16" if mixed_precision else "float32"
    if precision is not None and precision != old:
        raise SettingsError(f"--{'' if mixed_precision else 'no-'}mixed-precision means --precision {old}, "
                            f"and --precision {precision} was also given", hint="pass --precision alone")
    return old


def print_summary(summary: dict, out: str) -> None:
    validation = summary.get("validation") or {}
    budget = summary.get("time_budget")
    spent = f"; {summary['train_seconds']:.1f} s of the {budget:g} s time budget spent" if budget is not None else ""
    if summary.get("already_complete"):
        reached = (f"the {budget:g} s time budget is spent ({summary['train_seconds']:.1f} s trained)"
                   if summary["stopped_by"] == "time_budget" else f"step {summary['steps']:,} reached")
        lines = [f"already complete: {reached}; nothing to train "
                 f"(step {summary['steps']:,}, {summary['epochs_completed']} epochs completed)"]
    else:
        decayed = (f"; the patience ran out at the peak rate, so the rate decayed to 0 from {summary['early_decay_from']:.0%} "
                   "of the plan" if summary.get("early_decay_from") is not None else "")
        lines = [f"stopped by {summary['stopped_by']} at step {summary['steps']:,} "
                 f"({summary['epochs_completed']} epochs completed{spent}{decayed})"]
        resumed = f", resumed from step {summary['resumed_from_step']:,}" if summary.get("resumed_from_step") else ""
        if summary["windows_per_second"]:
            lines.append(f"{summary['windows_trained_this_session']:,} windows in {summary['train_seconds_this_session']:.1f} s "
                         f"({summary['windows_per_second']:,.0f} windows/s) on {summary['replicas']} replica(s), "
                         f"{summary['strategy']}{resumed}")
        else:
            lines.append(f"no step trained this session{resumed}")
    wall = summary.get("wall_seconds") or {}
    if wall.get("training_steps"):
        lines.append("wall time: " + ", ".join(f"{wall[part]:.1f} s {part.replace('_', ' ')}" for part in
                                                ("training_steps", "validation", "checkpoints", "final_validation")
                                                if wall.get(part)))
    exported = summary.get("exported") or {}
    if exported.get("checkpoint") == "best":
        stale = summary.get("validations_without_improvement", 0)
        lines.append(f"kept: the best held-out weights, step {exported['step']:,} "
                     f"({stale} validation{'s' if stale != 1 else ''} after it without improvement)")
    blend = summary.get("blend")
    if blend:
        lines.append("blend: " + "; ".join(
            f"{source['name']} weight {source['weight']:.3f}, drew {source['share_drawn']:.2%} of the windows "
            f"({source['epochs_completed'] + source['epoch_fraction']:.2f} epochs of it)" for source in blend["sources"]))
    if validation:
        from nextword.model.metrics import metrics_line

        lines.append(f"validation: {metrics_line(validation)}" + (f"  (the whole val split, step {exported['step']:,}'s weights)"
                                                                  if exported else "") + ("; blended" if blend else ""))
        for name, source in (validation.get("sources") or {}).items():
            if source and source.get("windows"):
                lines.append(f"  {name}: {metrics_line(source)}")
    compute = summary.get("compute") or {}
    if compute.get("achieved_flops_per_second"):
        lines.append(f"compute: {compute['training_flops_per_window'] / 1e6:,.1f} MFLOP a training window, "
                     f"{compute['achieved_flops_per_second'] / 1e9:,.1f} GFLOP/s = {compute['utilisation']:.1%} of the "
                     f"{compute['peak_flops_per_second'] / 1e9:,.1f} GFLOP/s peak ({compute['peak_source']})")
    lines.append(f"weights sha256: {summary['weights_sha256']}")
    lines.append(f"run dir: {out}")
    typer.echo("\n".join(lines))


def evaluate(
    model_dir: str = typer.Argument(..., metavar="MODEL_DIR", help="a RUN_DIR (its best checkpoint, see --checkpoint) or an EXPORT_DIR"),
    data_dir: str = typer.Argument(..., metavar="DATA_DIR", help="a dataset written by `nextword ingest`"),
    split: str = typer.Option("val", help="split to score"),
    checkpoint: CheckpointChoice = typer.Option("best", help="for a RUN_DIR: its best held-out checkpoint (what the export holds) or its latest"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Loss, perplexity (per token and per word) and top-1/top-5 (word datasets) of the window's final token."""
    load_tensorflow()
    from nextword.model.evaluate import evaluate as run_eval
    from nextword.model.metrics import metrics_line

    result = run_eval(model_dir, data_dir, split, checkpoint)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"{result['split']}: {result['windows']:,} windows ({result['source']})\n{metrics_line(result)}")


def plot(run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="a run written by `nextword train`")) -> None:
    """Regenerate RUN_DIR/plots/{loss,accuracy,perplexity}.png from history.json."""
    from nextword.model.history import plot_history

    for path in plot_history(run_dir):
        typer.echo(path)


def export(
    run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="a run written by `nextword train`"),
    out: Optional[str] = typer.Option(None, "--out", metavar="EXPORT_DIR", help="where to write the export (default: RUN_DIR/export)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DATA_DIR", help="the dataset the run was trained on, if it moved (default: run.json's)"),
    checkpoint: CheckpointChoice = typer.Option("best", help="the best held-out checkpoint (the latest when no validation ran) or the latest"),
    ngram_order: Optional[int] = typer.Option(None, help=NGRAM_HELP + "; default: the run's"),
    context_cache: Optional[bool] = typer.Option(None, "--context-cache/--no-context-cache", help=CACHE_HELP + "; default: the run's"),
) -> None:
    """Export RUN_DIR's best checkpoint (SavedModel + card.json), as `train` does at its end."""
    check_ngram_order(ngram_order)
    load_tensorflow()
    from nextword.model.export import export_run

    export_dir, card = export_run(run_dir, out, data_dir, checkpoint, ngram_order, context_cache)
    training = card["training"]
    step = (training.get("exported") or {}).get("step", training.get("steps"))
    typer.echo(f"exported step {step} of {run_dir} ({training.get('exported_from')}) to {export_dir}")
    if card.get("ngram") and "network_weight" in card["ngram"]:
        mixed = card["ngram"]
        figures = mixed["sample_perplexity"]
        cache = f", context cache weight {mixed['cache_weight']:.3f}" if mixed.get("context_cache") else ""
        typer.echo(f"mixed with a {mixed['order']}-gram counted on the train split (network weight "
                   f"{mixed['network_weight']:.3f}{cache}): validation-sample perplexity {figures['mixture']:.2f} "
                   f"(network alone {figures['network']:.2f}, {mixed['order']}-gram alone {figures['ngram']:.2f})")
    typer.echo(f"next: gen {export_dir} \"some words\"")


def register(app: typer.Typer) -> None:
    app.command("train", cls=Command)(train)
    app.command("eval", cls=Command)(evaluate)
    app.command("plot", cls=Command)(plot)
    app.command("export", cls=Command)(export)
