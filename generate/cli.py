"""`gen MODEL_DIR [PROMPT...]`: the typer layer over `generate.generator`.

A standalone console script (`gen`) and also `nextword gen`. Imports nothing heavy at
module import, so `gen --help` is instant; TensorFlow is imported when the export loads.

Streaming (--stream, the default on a terminal): the batch runs in the export's chunked loop
(`generate_start` / `generate_continue`, the same tokens as one `generate` call) and each call's
whole words are printed as they arrive; with several samples, a sample's words print once the
ones before it are finished. An export written before streaming has no chunked loop: its whole
batch is generated first (said once on stderr when --stream was asked for).
--stop / --until-sentence-end end a sample after a whole word (generate/stopping.py); the chunked
loop then stops drawing once every sample has stopped. -i: an interactive session (generate/session.py).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

import nextword
from nextword.clihelp import CONTEXT_SETTINGS, Command
from nextword.errors import InputError, SettingsError
from nextword.generate.generator import GenerateSettings
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
    words: int = typer.Option(GenerateSettings.words, "--words", help="whole words to generate per sample (a wordpiece export draws the pieces they take)"),
    temperature: float = typer.Option(GenerateSettings.temperature, "--temperature", help="> 0; lower = safer, higher = wilder"),
    greedy: bool = typer.Option(False, "--greedy", help="always take the most likely word (no seed needed)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="sample among the K most likely words"),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="nucleus: smallest set of words with mass >= P"),
    repetition_penalty: float = typer.Option(GenerateSettings.repetition_penalty, "--repetition-penalty", help="> 1 discourages words already used"),
    no_repeat_ngram: int = typer.Option(GenerateSettings.no_repeat_ngram, "--no-repeat-ngram", help="never repeat an n-gram of this size (0 = off)"),
    num_samples: int = typer.Option(GenerateSettings.num_samples, "--num-samples", help="samples per prompt"),
    prompts_file: Optional[str] = typer.Option(None, "--prompts-file", metavar="FILE", help="one prompt per line; - reads stdin"),
    seed: Optional[int] = typer.Option(None, "--seed", help="same seed, same output (default: a fresh seed, printed on stderr)"),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="default: on when stdout is a terminal"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per sample"),
    stop: Optional[List[str]] = typer.Option(
        None, "--stop", metavar="STRING", help="end a sample after the word that completes STRING (kept); repeatable"),
    until_sentence_end: bool = typer.Option(
        False, "--until-sentence-end", help="end a sample after its first word that ends a sentence (. ! ? and other scripts' full stops)"),
    interactive: bool = typer.Option(
        False, "--interactive", "-i", help="load once, then read prompts line by line (:help lists the commands)"),
    compiled: bool = typer.Option(
        False, "--compiled/--no-compiled", help="run the sampling loop compiled by XLA: the same words, ~1-2 s more "
        "before the first one (a compile per batch size and --words), then faster while rows are few (on 2 CPU cores, "
        "the default export with its 5-gram: x2.8 at 1 row, x1.05 at 64 on the KJV; x1.7 and x0.61 on a 5,000-word "
        "vocabulary); pays for long samples, many prompts or a -i session"),
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    from nextword.generate.generator import Generator

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
        stop=tuple(stop or ()),
        until_sentence_end=until_sentence_end,
    )
    if interactive and (prompts or prompts_file):
        raise SettingsError("-i reads its prompts one per line from stdin, and PROMPT or --prompts-file was given too",
                            hint="leave the prompts out, or drop -i to generate from them once")
    all_prompts = list(prompts or []) + (read_prompts_file(prompts_file) if prompts_file else [])
    if not interactive and not prompts and not prompts_file and stdin_is_piped():
        all_prompts = read_prompts_file("-")  # `echo 'the cat' | gen MODEL_DIR`; an empty pipe: no prompts
    own_tensorflow = "tensorflow" not in sys.modules  # gen is the first to load it: a process of its own
    with quiet_native_stderr():
        if own_tensorflow:
            skip_graph_optimizer()
        generator = Generator.load(model_dir, compiled=compiled)
    generator.check(settings)
    output = Output(stream, as_json)
    if interactive:
        from nextword.generate.session import run_session

        run_session(generator, settings, output)
        return
    output.emit(generator, all_prompts, settings, repeat_hint="pass --seed {seed} to repeat this sample")


class Output:
    """How samples reach stdout: JSON lines, whole lines, or word by word (streaming)."""

    def __init__(self, stream: bool | None, as_json: bool):
        self.stream_asked = stream  # None: on when stdout is a terminal
        self.as_json = as_json
        self.noted_no_streaming = False

    @property
    def streaming(self) -> bool:
        return not self.as_json and (sys.stdout.isatty() if self.stream_asked is None else self.stream_asked)

    def emit(self, generator, prompts: list, settings, repeat_hint: str) -> None:
        from nextword.generate.generator import settings_record

        if not self.streaming:
            samples, used_seed = generator.generate(prompts, settings)
            if self.as_json:
                record = settings_record(settings, used_seed)
                for sample in samples:
                    print(json.dumps(_json_line(sample, record), ensure_ascii=False), flush=True)
                return
            report_unknown_words(samples)
            report_seed(settings, used_seed, repeat_hint)
            for sample in samples:
                print_sample(sample.prompt, sample.text, streaming=False)
            return
        if not generator.can_stream and self.stream_asked and not self.noted_no_streaming:
            self.noted_no_streaming = True
            print("note: this export was written before streaming (no generate_continue signature): each batch is "
                  "generated whole, then printed; export it again to stream", file=sys.stderr)
        run = generator.stream(prompts, settings)
        report_unknown_words(run.samples)
        report_seed(settings, run.seed, repeat_hint)
        printer = StreamPrinter([sample.prompt for sample in run.samples])
        try:
            for progress in run:
                printer.add(progress)
        finally:
            printer.close()


def report_seed(settings, used_seed: int | None, repeat_hint: str) -> None:
    if settings.seed is None and used_seed is not None:
        print(f"seed {used_seed} ({repeat_hint.format(seed=used_seed)})", file=sys.stderr)


class StreamPrinter:
    """Prints rows in order, each word as soon as it arrives; a row's words wait until the rows
    before it are finished (all rows are generated together, so they are then at hand)."""

    def __init__(self, prompts: list[str], out=None):
        self.out = out or sys.stdout
        self.prefixes = [f"{prompt.strip()} " if prompt.strip() else "" for prompt in prompts]
        self.words = [[] for _ in prompts]
        self.done = [False] * len(prompts)
        self.current, self.printed = 0, 0  # the row being printed, its words printed so far

    def add(self, progress) -> None:
        for row, new_words in enumerate(progress.words):
            self.words[row] += new_words
            self.done[row] = self.done[row] or progress.done[row]
        self._flush()

    def close(self) -> None:
        """End the row being printed (after an interruption, the partial line)."""
        if self.current < len(self.words) and self.printed:
            self.out.write("\n")
            self.out.flush()

    def _flush(self) -> None:
        while self.current < len(self.words):
            row = self.current
            if self.printed == 0 and (self.words[row] or self.done[row]):
                self.out.write(self.prefixes[row])
            for index in range(self.printed, len(self.words[row])):
                self.out.write(("" if index == 0 else " ") + self.words[row][index])
            self.printed = len(self.words[row])
            if not self.done[row]:
                break
            self.out.write("\n")
            self.current, self.printed = self.current + 1, 0
        self.out.flush()


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


def skip_graph_optimizer() -> None:
    """TensorFlow's graph optimizer (grappler) off for this process. It rewrote the export's loop at its first
    call: ~0.5 s of the time to the first word on the transformer recipe's export (0.95-1.16 -> 0.47-0.52 s),
    ~0.25 s on the LSTM's, for no words/s measurably gained after and the same words (bench/RESULTS.md, "Time
    to the first word: the graph optimizer"). The setting is process-wide, so gen_command applies it only in
    a process whose TensorFlow it loads itself, never inside a program already running TensorFlow."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def register(app: typer.Typer) -> None:
    """Mount as `nextword gen`."""
    app.command("gen", help=HELP, cls=Command)(gen_command)


gen_app = typer.Typer(name="gen", help=HELP, add_completion=False, pretty_exceptions_enable=False)
gen_app.command(help=HELP, cls=Command, context_settings=CONTEXT_SETTINGS)(gen_command)


def main() -> None:
    run_app(gen_app, "gen")


if __name__ == "__main__":
    main()
