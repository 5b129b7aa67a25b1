"""`gen -i MODEL_DIR`: load the export once, then read prompts line by line.

A line is a prompt (blank lines are skipped), or a command starting with ":" that changes the
settings for the prompts after it (`:temperature 0.7`, `:words 50`, `:seed 3`, `:help`,
`:settings`). The tokenizer turns ":" into a space, so no prompt needs a leading colon. On a
terminal the line editor is readline (history with the arrow keys), the prompt is "> ", Ctrl-C
stops the sample being printed and Ctrl-D leaves; from a pipe the lines are read as they come,
with no prompt and nothing on stdout but the samples (and what :help / :settings print).
Bad commands print an error on stderr and the session goes on.
"""

from __future__ import annotations

import dataclasses
import sys

from nextword.errors import NextwordError, SettingsError
from nextword.generate.generator import GenerateSettings, settings_record
from nextword.runner import print_error

QUIT = object()


def _number(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise SettingsError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    return parse


def _on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "yes", "1"):
        return True
    if text.lower() in ("off", "false", "no", "0"):
        return False
    raise SettingsError(f"expected on or off, got {text!r}")


def _or_off(parse, off_word: str = "off"):
    return lambda text: None if text.lower() == off_word else parse(text)


# command -> (settings field, parser of its argument, help)
COMMANDS = {
    "words": ("words", _number(int), "N    whole words per sample"),
    "temperature": ("temperature", _number(float), "F    > 0; lower = safer"),
    "greedy": ("greedy", _on_off, "on|off    always the most likely word"),
    "top-k": ("top_k", _or_off(_number(int)), "K|off"),
    "top-p": ("top_p", _or_off(_number(float)), "P|off"),
    "repetition-penalty": ("repetition_penalty", _number(float), "F    1 = off"),
    "no-repeat-ngram": ("no_repeat_ngram", _number(int), "N    0 = off"),
    "num-samples": ("num_samples", _number(int), "N    samples per prompt"),
    "seed": ("seed", _or_off(_number(int), "random"), "S|random    fixed seed, or a fresh one per prompt"),
    "until-sentence-end": ("until_sentence_end", _on_off, "on|off    end a sample at its first sentence end"),
}
HELP = "\n".join(
    [f":{name} {usage}" for name, (_, _, usage) in COMMANDS.items()]
    + [":stop STRING    also end a sample after the word completing STRING (`:stop` alone clears them)",
       ":settings    show the settings", ":help    this list", ":quit    leave (as does Ctrl-D)"])


def apply_command(settings: GenerateSettings, line: str):
    """(new settings, what to print: a str, or QUIT) for a ":command [argument]" line. Raises
    SettingsError for an unknown command or a bad value (the settings stay as they were)."""
    name, _, argument = line[1:].strip().partition(" ")
    name, argument = name.lower(), argument.strip()
    if name in ("help", "h", "?"):
        return settings, HELP
    if name == "settings":
        return settings, "\n".join(f"{key}: {value}" for key, value in settings_record(settings, settings.seed).items())
    if name in ("quit", "q", "exit"):
        return settings, QUIT
    if name == "stop":
        stop = settings.stop + (argument,) if argument else ()
        return _replace(settings, "stop", stop), f"stop: {list(stop)}"
    if name not in COMMANDS:
        raise SettingsError(f"unknown command :{name}", hint=":help lists the commands")
    field, parse, usage = COMMANDS[name]
    if not argument:
        raise SettingsError(f":{name} needs a value ({usage.split()[0]})", hint=f"e.g. :{name} {_example(name)}")
    try:
        value = parse(argument)
    except SettingsError as error:
        raise SettingsError(f":{name} {error.message}", hint=f"usage: :{name} {usage}") from None
    return _replace(settings, field, value), f"{name}: {value if value is not None else 'off'}"


def _example(name: str) -> str:
    return {"temperature": "0.7", "top-p": "0.9", "repetition-penalty": "1.2"}.get(name, "3")


def _replace(settings: GenerateSettings, field: str, value) -> GenerateSettings:
    try:
        return dataclasses.replace(settings, **{field: value})
    except SettingsError as error:  # the dataclass speaks of options: speak of commands here
        raise SettingsError(error.message.replace("--", ":", 1), hint=error.hint and error.hint.replace("--", ":")) from None


def read_lines(stdin, tty: bool):
    """The session's lines, without their end of line; stops at EOF (Ctrl-D)."""
    if tty:
        try:
            import readline  # noqa: F401  (input() then edits lines and keeps their history)
        except ImportError:  # not on every platform
            pass
        on_stdout = sys.stdout.isatty()  # `gen -i | tee out.txt`: the prompt goes to stderr, out of the file
        while True:
            try:
                if not on_stdout:
                    print("> ", end="", file=sys.stderr, flush=True)
                yield input("> " if on_stdout else "")
            except EOFError:
                print(file=sys.stderr)
                return
            except KeyboardInterrupt:  # at the prompt: a fresh line, as Python's own prompt does
                print(file=sys.stderr)
    else:
        source = getattr(stdin, "buffer", None)
        while True:
            line = source.readline() if source is not None else stdin.readline().encode("utf-8")
            if not line:
                return
            # bytes as typed (surrogate escapes), as read_prompts_file keeps them for the tokenizer
            yield line.decode("utf-8", errors="surrogateescape").rstrip("\n").rstrip("\r")


def run_session(generator, settings: GenerateSettings, output, stdin=None) -> None:
    """Read and answer lines until EOF or :quit. `output` is generate.cli.Output."""
    stdin = stdin or sys.stdin
    tty = stdin.isatty()
    if tty:
        print("gen -i: type a prompt and Enter; :help lists the commands; Ctrl-D leaves", file=sys.stderr)
    warm_up(generator, settings)
    for line in read_lines(stdin, tty):
        if not line.strip():
            continue
        try:
            if line.lstrip().startswith(":"):
                new_settings, message = apply_command(settings, line.strip())
                if message is QUIT:
                    return
                generator.check(new_settings)
                settings = new_settings
                if "\n" in message:  # :help and :settings answer on stdout
                    print(message, flush=True)
                elif tty:
                    print(message, file=sys.stderr)
                continue
            output.emit(generator, [line], settings, repeat_hint=":seed {seed} repeats this sample")
        except NextwordError as error:
            print_error(error)
        except KeyboardInterrupt:
            print("(stopped)", file=sys.stderr)


def warm_up(generator, settings: GenerateSettings | None = None) -> None:
    """A first chunk from an empty prompt, shaped like the session's (its samples and words): the graph's
    first call builds its kernels (~0.1-1 s), and with --compiled XLA compiles for those shapes (~1-2 s),
    so the first prompt waits for neither."""
    shaped = GenerateSettings(words=settings.words if settings else 1, greedy=True,
                              num_samples=settings.num_samples if settings else 1)
    for _ in generator.stream([""], shaped):
        break
