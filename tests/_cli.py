"""Run the real `nextword` / `gen` CLI in-process, through the same boundary as the console scripts.

typer's CliRunner bypasses `nextword.runner.run_app` (where errors become messages and exit
codes), so tests that assert "a message, an exit code, no traceback" use `run_cli` instead.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


_APP = None


def nextword_app():
    global _APP
    if _APP is None:
        from nextword import cli

        cli._mount()  # noqa: SLF001 - mounting once per test process
        _APP = cli.app
    return _APP


def run_cli(*args: str, program: str = "nextword") -> CliResult:
    """`nextword ARGS...` (or `gen ARGS...` with program="gen"): exit code, stdout, stderr."""
    from nextword.runner import run_app

    if program == "gen":
        from nextword.generate.cli import gen_app as app
    else:
        app = nextword_app()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_app(app, program, list(args))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())
