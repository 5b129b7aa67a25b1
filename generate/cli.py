"""`gen MODEL_DIR [PROMPT...]`: the typer layer over `generate.generator`.

A standalone console script (`gen`) and also `nextword gen`. Imports nothing heavy at
module import, so `gen --help` is instant; TensorFlow is imported when the export loads.

Streaming: generation runs inside the exported graph as one batched call (a few ms per
word), so the time to the first word is the TensorFlow import plus the SavedModel load,
not the sampling. --stream therefore prints each sample's words as soon as the call
returns, flushing word by word; it does not make the model produce words earlier.
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

import nextword
from nextword.clihelp import CONTEXT_SETTINGS, Command
from nextword.errors import InputError
from nextword.quiet import quiet_native_stderr
from nextword.runner import run_app

HELP = (
    "Generate text from an exported nextword model (the export dir, or a RUN_DIR holding export/). "
    "Sampling runs inside the exported graph; all prompts x samples run as one batched call."
)


def show_version(value: bool) -> None:
    if value:
        print(f"nextword {nextword.__version__}")
        raise typer.Exit()


def gen_command(
    model_dir: str = typer.Argument(..., metavar="MODEL_DIR", help="export dir, or a RUN_DIR holding export/"),
    prompts: Optional[List[str]] = typer.Argument(
        None, metavar="PROMPT...", help="prompt(s); none: one per line from stdin when it is piped, else an empty context"),
    words: int = typer.Option(30, "--words", help="whole words to generate per sample (a wordpiece export draws the pieces they take)"),
    temperature: float = typer.Option(1.0, "--temperature", help="> 0; lower = safer, higher = wilder"),
    greedy: bool = typer.Option(False, "--greedy", help="always take the most likely word (no seed needed)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="sample among the K most likely words"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="nucleus: smallest set of words with mass >= P"),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="> 1 discourages words already used"),
    no_repeat_ngram: int = typer.Option(0, "--no-repeat-ngram", help="never repeat an n-gram of this size (0 = off)"),
    num_samples: int = typer.Option(1, "--num-samples", help="samples per prompt"),
    prompts_file: Optional[str] = typer.Option(None, "--prompts-file", metavar="FILE", help="one prompt per line; - reads stdin"),
    seed: Optional[int] = typer.Option(None, "--seed", help="same seed, same output (default: a fresh seed, printed on stderr)"),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="default: on when stdout is a terminal"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per sample"),
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    from nextword.generate.generator import GenerateSettings, Generator, settings_record

    settings = GenerateSettings(
        words=words,
        temperature=temperature,
        greedy=greedy,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        no_repeat_ngram=no_repeat_ngram,
        num_samples=num_samples,
        seed=seed,
    )
    all_prompts = list(prompts or []) + (read_prompts_file(prompts_file) if prompts_file else [])
    if not prompts and not prompts_file and stdin_is_piped():
        all_prompts = read_prompts_file("-")  # `echo 'the cat' | gen MODEL_DIR`; an empty pipe: no prompts
    with quiet_native_stderr():
        generator = Generator.load(model_dir)
    samples, used_seed = generator.generate(all_prompts, settings)
    if as_json:
        record = settings_record(settings, used_seed)
        for sample in samples:
            print(json.dumps(_json_line(sample, record), ensure_ascii=False), flush=True)
        return
    report_unknown_words(samples)
    if seed is None and used_seed is not None:
        print(f"seed {used_seed} (pass --seed {used_seed} to repeat this sample)", file=sys.stderr)
    streaming = sys.stdout.isatty() if stream is None else stream
    for sample in samples:
        print_sample(sample.prompt, sample.text, streaming)


def stdin_is_piped() -> bool:
    """stdin is a pipe or a file, not a terminal (None under pythonw)."""
    return sys.stdin is not None and not sys.stdin.isatty()


def read_prompts_file(path: str) -> list[str]:
    """One prompt per line (blank lines skipped); '-' reads stdin. Invalid UTF-8 is kept: the graph's tokenizer repairs it."""
    if path == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise InputError(f"--prompts-file {path} does not exist", hint="pass a text file, or - for stdin") from None
        except IsADirectoryError:
            raise InputError(f"--prompts-file {path} is a directory", hint="pass a text file, one prompt per line") from None
    # Lines as a text corpus's documents (split on \n, a trailing \r dropped); undecodable bytes
    # kept as surrogate escapes, so the generator hands the graph's tokenizer the bytes as read.
    lines = [line.rstrip("\r") for line in data.decode("utf-8", errors="surrogateescape").split("\n")]
    return [line for line in lines if line.strip()]


def report_unknown_words(samples) -> None:
    reported = set()
    for sample in samples:
        if sample.unknown_words and sample.prompt_index not in reported:
            reported.add(sample.prompt_index)
            words = ", ".join(dict.fromkeys(sample.unknown_words))
            print(
                f"note: prompt {sample.prompt_index + 1} has words outside the vocabulary (read as <unk>): {words}",
                file=sys.stderr,
            )


def print_sample(prompt: str, text: str, streaming: bool) -> None:
    prefix = f"{prompt.strip()} " if prompt.strip() else ""
    if not streaming:
        print(prefix + text, flush=True)
        return
    sys.stdout.write(prefix)
    for index, word in enumerate(text.split(" ")):
        sys.stdout.write(("" if index == 0 else " ") + word)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_line(sample, settings: dict) -> dict:
    return {
        "prompt": sample.prompt,
        "prompt_index": sample.prompt_index,
        "sample_index": sample.sample_index,
        "text": sample.text,
        "ids": sample.ids,
        "unknown_prompt_words": sample.unknown_words,
        "settings": settings,
    }


def register(app: typer.Typer) -> None:
    """Mount as `nextword gen`."""
    app.command("gen", help=HELP, cls=Command)(gen_command)


gen_app = typer.Typer(name="gen", help=HELP, add_completion=False, pretty_exceptions_enable=False)
gen_app.command(help=HELP, cls=Command, context_settings=CONTEXT_SETTINGS)(gen_command)


def main() -> None:
    run_app(gen_app, "gen")


if __name__ == "__main__":
    main()
