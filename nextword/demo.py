"""`nextword demo`: the whole job on the embedded corpus, in one command.

ingest (Python's documentation topics, 10% of the documents held out) -> train the default
recipe for a time budget -> export -> held-out perplexity and accuracy -> samples at two
temperatures -> where everything is and what to run next.

Rerunning resumes: the ingest of a finished identical dataset returns at once, training
continues from OUT/run's checkpoint with what is left of the budget, and a finished run
is not trained again (its export is evaluated and sampled).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass

import typer

from nextword.clihelp import Command
from nextword.errors import SettingsError

STATE_FILE = "demo.json"  # OUT/demo.json: training seconds spent so far, and whether the run finished
PROMPTS = ("the function returns", "an exception is raised when", "a class definition")
TEMPERATURES = (0.7, 1.0)


@dataclass(frozen=True)
class DemoSettings:
    out: str = "demo"
    time_budget: float = 180.0  # seconds of training in total, over every rerun
    vocab_size: int = 2000
    context_length: int = 44
    val_fraction: float = 0.1
    words: int = 25
    seed: int = 0
    # model overrides (None: the default recipe); hidden on the CLI, used by tests
    layers: int | None = None
    units: int | None = None
    embedding_dim: int | None = None
    batch_size: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.time_budget > 0:
            raise SettingsError(f"--time-budget must be > 0 seconds, got {self.time_budget}")
        if self.words < 1:
            raise SettingsError(f"--words must be at least 1, got {self.words}")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.out, "data")

    @property
    def run_dir(self) -> str:
        return os.path.join(self.out, "run")

    @property
    def export_dir(self) -> str:
        return os.path.join(self.run_dir, "export")


def read_state(settings: DemoSettings) -> dict:
    path = os.path.join(settings.out, STATE_FILE)
    if not os.path.exists(path):
        return {"train_seconds": 0.0, "finished": False}
    with open(path) as handle:
        return json.load(handle)


def write_state(settings: DemoSettings, state: dict) -> None:
    path = os.path.join(settings.out, STATE_FILE)
    with open(path + ".tmp", "w") as handle:
        json.dump(state, handle, indent=2)
    os.replace(path + ".tmp", path)


def ingest_step(settings: DemoSettings, console) -> dict:
    from nextword.ingest.cli import _progress_reporter, summary_dict
    from nextword.ingest.pipeline import IngestSession, run_ingest
    from nextword.ingest.settings import IngestSettings
    from nextword.ingest.sources import BUILTIN

    ingest_settings = IngestSettings(
        inputs=(BUILTIN,), out=settings.data_dir, vocab_size=settings.vocab_size,
        context_length=settings.context_length, val_fraction=settings.val_fraction, seed=settings.seed,
    )
    from rich.console import Console

    session = IngestSession()
    progress, report = _progress_reporter(Console(stderr=True), session)
    started = time.monotonic()
    with progress:
        manifest = run_ingest(ingest_settings, progress=report, session=session)
    summary = summary_dict(manifest, settings.data_dir, time.monotonic() - started)
    splits = summary["splits"]
    console.print(f"[bold]1. ingest[/bold]: {summary['windows']:,} windows "
                  f"({splits['train']['windows']:,} train, {splits.get('val', {}).get('windows', 0):,} held out), "
                  f"vocabulary {summary['vocab_size']:,}, context {summary['context_length']}")
    return summary


def train_step(settings: DemoSettings, console) -> dict | None:
    """Train what is left of the budget; None when a previous run already finished."""
    state = read_state(settings)
    if state["finished"] and os.path.exists(os.path.join(settings.export_dir, "card.json")):
        console.print(f"[bold]2. train[/bold]: already finished ({state['train_seconds']:.0f} s); "
                      f"using {settings.export_dir} (remove {settings.out} to start over)")
        return None
    remaining = max(settings.time_budget - state["train_seconds"], 1.0)
    console.print(f"[bold]2. train[/bold]: default recipe for {remaining:.0f} s "
                  f"(of a {settings.time_budget:.0f} s budget), then export")
    from nextword.model.settings import TrainSettings
    from nextword.model.train import run_training

    # The whole budget: the run's checkpoint counts the seconds trained before (--time-budget spans resumes).
    train_settings = TrainSettings(
        data_dir=settings.data_dir, out=settings.run_dir, layers=settings.layers, units=settings.units,
        embedding_dim=settings.embedding_dim, batch_size=settings.batch_size, epochs=10_000,
        time_budget=settings.time_budget, seed=settings.seed, progress=settings.progress,
    )
    summary = run_training(train_settings)
    state = {"train_seconds": summary["train_seconds"], "finished": summary["stopped_by"] != "interrupt"}
    write_state(settings, state)
    if summary["stopped_by"] == "interrupt":
        console.print(f"interrupted: checkpoint saved at step {summary['steps']}; run the same command to resume")
        raise typer.Exit(130)
    from nextword.model.config import ModelConfig

    console.print(f"   {ModelConfig.from_dict(summary['model_config']).describe()}")
    exported = summary.get("exported") or {}
    kept = (f"; kept the best held-out weights, step {exported['step']:,}" if exported.get("checkpoint") == "best"
            else "")
    decayed = (f" after a decay from {summary['early_decay_from']:.0%} of the plan"
               if summary.get("early_decay_from") is not None else "")
    console.print(f"   {summary['steps']:,} steps, {summary['windows_per_second'] or 0:,.0f} windows/s, "
                  f"stopped by {summary['stopped_by'].replace('_', ' ')}{decayed}{kept}")
    return summary


def evaluate_step(settings: DemoSettings, console) -> dict:
    from nextword.model.evaluate import evaluate

    result = evaluate(settings.export_dir, settings.data_dir, "val")
    console.print(f"[bold]3. held-out[/bold] ({result['windows']:,} windows never trained on): "
                  f"perplexity [bold]{result['perplexity']:.1f}[/bold]  top-1 accuracy [bold]{result['top1']:.1%}[/bold]  "
                  f"top-5 {result['top5']:.1%}")  # the demo ingests words: top-1 is there
    with open(os.path.join(settings.export_dir, "card.json")) as handle:
        card = json.load(handle)
    mixed, network = card.get("ngram") or {}, card.get("training", {}).get("validation") or {}
    if "network_weight" in mixed and network:
        cache = f" and a cache of the window's words (weight {mixed['cache_weight']:.2f})" if mixed.get("context_cache") else ""
        console.print(f"   the export mixes the network with a {mixed['order']}-gram counted on the train split "
                      f"(network weight {mixed['network_weight']:.2f}){cache}; the network alone: "
                      f"perplexity {network['perplexity']:.1f}  top-1 {network['top1']:.1%}")
    from nextword.model.ngram import baseline

    ngram = baseline(settings.data_dir)
    console.print(f"   baseline, a modified Kneser-Ney 5-gram counted on the same train windows ({ngram['seconds']:.0f} s): "
                  f"perplexity {ngram['perplexity']:.1f}  top-1 {ngram['top1']:.1%}  top-5 {ngram['top5']:.1%}")
    return {**result, "ngram_baseline": ngram}


def sample_seeds(seed: int) -> list[int]:
    """One sampling seed per temperature, derived from --seed: with one seed for both, the two
    temperatures' samples shared long stretches word for word."""
    return [int.from_bytes(hashlib.sha256(f"{seed}:{temperature}".encode()).digest()[:8], "big") >> 1
            for temperature in TEMPERATURES]


def generate_step(settings: DemoSettings, console) -> list[dict]:
    from nextword.generate.generator import GenerateSettings, Generator

    generator = Generator.load(settings.export_dir)
    console.print("[bold]4. samples[/bold] from the export:")
    shown = []
    for temperature, seed in zip(TEMPERATURES, sample_seeds(settings.seed)):
        sampling = GenerateSettings(words=settings.words, temperature=temperature, seed=seed)
        samples, _ = generator.generate(list(PROMPTS), sampling)
        console.print(f"   temperature {temperature}:")
        for sample in samples:
            console.print(f"     [dim]{sample.prompt}[/dim] {sample.text}", highlight=False)
            shown.append({"temperature": temperature, "prompt": sample.prompt, "text": sample.text})
    return shown


def where_step(settings: DemoSettings, plots: list[str], console) -> dict:
    places = {
        "data dir": settings.data_dir,
        "run dir": settings.run_dir,
        "export": settings.export_dir,
        "plots": ", ".join(plots),
        "TensorBoard": f"tensorboard --logdir {shlex.quote(os.path.join(settings.run_dir, 'logs'))}",
        "generate": f"nextword gen {shlex.quote(settings.export_dir)} {shlex.quote(PROMPTS[0])} --temperature 0.8 --num-samples 3",
        "evaluate": f"nextword eval {shlex.quote(settings.run_dir)} {shlex.quote(settings.data_dir)}",
        "redraw plots": f"nextword plot {shlex.quote(settings.run_dir)}",
    }
    console.print("[bold]5. where everything is[/bold]")
    for name, value in places.items():
        console.print(f"   {name:<13} {value}", highlight=False, soft_wrap=True)
    return places


def run_demo(settings: DemoSettings, console) -> dict:
    """The pure core: every step in order; returns what was printed, as a dict."""
    from nextword.quiet import load_tensorflow

    load_tensorflow()
    os.makedirs(settings.out, exist_ok=True)
    ingest_summary = ingest_step(settings, console)
    train_summary = train_step(settings, console)
    from nextword.model.history import plot_history

    plots = plot_history(settings.run_dir)
    held_out = evaluate_step(settings, console)
    samples = generate_step(settings, console)
    places = where_step(settings, plots, console)
    return {"ingest": ingest_summary, "train": train_summary, "held_out": held_out, "samples": samples, "places": places}


def demo_command(
    out: str = typer.Option(DemoSettings.out, "--out", metavar="DIR", help="where the data, the run and the export go"),
    time_budget: float = typer.Option(DemoSettings.time_budget, "--time-budget", help="seconds of training in total (reruns continue it)"),
    vocab_size: int = typer.Option(DemoSettings.vocab_size, "--vocab-size", help="words in the vocabulary"),
    words: int = typer.Option(DemoSettings.words, "--words", help="words per generated sample"),
    seed: int = typer.Option(DemoSettings.seed, "--seed", help="seeds the ingest's shard order, the training and the samples"),
    context_length: int = typer.Option(DemoSettings.context_length, "--context", hidden=True),
    layers: int = typer.Option(None, "--layers", hidden=True),
    units: int = typer.Option(None, "--units", hidden=True),
    embedding_dim: int = typer.Option(None, "--embedding-dim", hidden=True),
    batch_size: int = typer.Option(None, "--batch-size", hidden=True),
    progress: bool = typer.Option(True, "--progress/--no-progress", hidden=True),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="print the result dict as JSON on stdout"),
) -> None:
    """Ingest the embedded corpus, train the default recipe, export, score and sample it: end to end."""
    from rich.console import Console

    settings = DemoSettings(
        out=out, time_budget=time_budget, vocab_size=vocab_size, context_length=context_length, words=words,
        seed=seed, layers=layers, units=units, embedding_dim=embedding_dim, batch_size=batch_size, progress=progress,
    )
    # The report goes to stdout (and can be saved); progress bars go to stderr.
    # soft_wrap: long lines (paths, samples) stay whole when stdout is a file or a pipe.
    result = run_demo(settings, Console(stderr=as_json, soft_wrap=True))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))


def register(app: typer.Typer) -> None:
    app.command("demo", cls=Command)(demo_command)

