"""The `nextword` command: one typer app, one subcommand group per stage.

Each stage owns its typer layer (`ingest.cli`, `model.cli`, `generate.cli`); this module
only mounts them; `nextword.runner` turns errors into messages and exit codes.
"""

from __future__ import annotations

import os

import typer

import nextword
from nextword.clihelp import CONTEXT_SETTINGS, Group
from nextword.runner import run_app

# TensorFlow's C++ start-up chatter is noise for a CLI user; keep real errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    name="nextword",
    help="Stream a corpus into sliding-window TFRecords, train a next-word model on them "
    "under tf.distribute, and generate text from the export.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
    cls=Group,
)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"nextword {nextword.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    pass  # the app's help is Typer(help=...); this callback only holds --version


# Each stage's commands, by the module whose register() adds them.
_STAGES = {
    "nextword.ingest.cli": ("ingest", "inspect", "verify"),
    "nextword.model.cli": ("train", "eval", "plot", "export"),
    "nextword.generate.cli": ("gen",),
    "nextword.generate.serve_cli": ("serve",),
    "nextword.demo": ("demo",),
    "nextword.gpu_check": ("gpu-check",),
}


def _mount(command: str | None = None) -> None:
    """Add the stages' commands to the app: only `command`'s stage when it names one (imported here,
    not at module top, so `nextword --help` stays fast, and `nextword ingest` does not import the
    training and serving stacks: ~0.1 CPU s of a short ingest's serial part), else every stage."""
    import importlib

    modules = [module for module, commands in _STAGES.items() if command in commands] or list(_STAGES)
    for module in modules:
        importlib.import_module(module).register(app)


def main() -> None:
    import sys

    # the command is the first word that is not an option (the root's only option, --version, takes no value)
    _mount(next((word for word in sys.argv[1:] if not word.startswith("-")), None))
    run_app(app, "nextword")


if __name__ == "__main__":
    main()
