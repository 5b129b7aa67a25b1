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


def _mount() -> None:
    # Imported here, not at module top, so `nextword --help` stays fast.
    from nextword.generate.cli import register as register_gen
    from nextword.generate.serve_cli import register as register_serve
    from nextword.ingest.cli import register as register_ingest
    from nextword.model.cli import register as register_model
    from nextword.demo import register as register_demo
    from nextword.gpu_check import register as register_gpu_check

    register_ingest(app)
    register_model(app)
    register_gen(app)
    register_serve(app)
    register_demo(app)
    register_gpu_check(app)


def main() -> None:
    _mount()
    run_app(app, "nextword")


if __name__ == "__main__":
    main()
