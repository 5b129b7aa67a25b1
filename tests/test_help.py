"""`--help` of `nextword`, every subcommand and `gen`, rendered through the real CLI boundary.

The command list comes from the app itself, so a new command is checked without editing this file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer.main

import nextword
from _cli import nextword_app, run_cli
from nextword.ingest.sources import FORMATS, TEXT_UNITS
from nextword.model.config import ARCHITECTURES, OBJECTIVES, PRECISIONS
from nextword.model.settings import OPTIMIZERS, PRESETS, STRATEGIES
from nextword.tfrecords.manifest import LAYOUTS, TOKENIZERS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The argument names the README uses, in order, as the usage line shows them.
ARGUMENTS = {
    "ingest": ["[INPUT...]"], "inspect": ["DATA_DIR"], "verify": ["DATA_DIR"], "train": ["DATA_DIR..."],
    "eval": ["MODEL_DIR", "DATA_DIR"], "plot": ["RUN_DIR"], "export": ["RUN_DIR"],
    "gen": ["MODEL_DIR", "[PROMPT...]"], "serve": ["EXPORT_DIR"], "demo": [], "gpu-check": [],
}
CHOICES = {
    ("ingest", "--format"): ("auto", *FORMATS), ("ingest", "--layout"): LAYOUTS,
    ("ingest", "--on-error"): ("strict", "skip"), ("ingest", "--runner"): ("local", "beam"),
    ("ingest", "--tokenizer"): TOKENIZERS, ("ingest", "--text-unit"): ("auto", *TEXT_UNITS),
    ("train", "--preset"): PRESETS, ("train", "--arch"): ARCHITECTURES, ("train", "--objective"): OBJECTIVES,
    ("train", "--optimizer"): OPTIMIZERS, ("train", "--strategy"): STRATEGIES, ("train", "--precision"): PRECISIONS,
}
# The fewest arguments that reach option parsing (a bad choice must fail there, before any work).
REQUIRED = {"ingest": ["--out", "unused"], "train": ["unused", "--out", "unused"]}


def _commands() -> dict:
    return dict(typer.main.get_command(nextword_app()).commands)


COMMANDS = sorted(_commands())


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option: the checks read whole rows


def render(*args: str, program: str = "nextword") -> str:
    result = run_cli(*args, "--help", program=program)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def test_every_command_is_checked():
    assert set(COMMANDS) >= set(ARGUMENTS) and set(ARGUMENTS) >= set(COMMANDS), "add the new command to ARGUMENTS"


def test_each_command_mounts_its_own_stage_alone():
    """`nextword COMMAND` mounts only the stage that registers COMMAND (nextword/cli.py _STAGES): a
    command missing there would still run (every stage is mounted then) but import them all."""
    import importlib

    from nextword.cli import _STAGES

    for module, commands in _STAGES.items():
        app = typer.Typer()
        importlib.import_module(module).register(app)
        assert tuple(info.name for info in app.registered_commands) == commands, module
    assert sorted(name for commands in _STAGES.values() for name in commands) == sorted(COMMANDS)


@pytest.mark.parametrize("args", [[], *[[name] for name in COMMANDS], "gen"], ids=lambda a: " ".join(a) or "gen*")
def test_help_shows_no_value_type_after_flags_and_h_is_help(args):
    program = "gen" if args == "gen" else "nextword"
    args = [] if args == "gen" else args
    text = render(*args, program=program)
    assert "<bool>" not in text and "BOOLEAN" not in text
    assert run_cli(*args, "-h", program=program).stdout == text


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_names_the_arguments_as_the_readme_does(name):
    usage = re.search(r"Usage: (.*)", render(name)).group(1).split()
    assert usage[:3] == ["nextword", name, "[OPTIONS]"]
    assert usage[3:] == ARGUMENTS[name]
    for param in _commands()[name].params:
        if param.param_type_name == "argument":
            assert re.fullmatch(r"[A-Z_]+(\.\.\.)?", param.metavar or ""), f"{name} {param.name}: no metavar"


def test_gen_console_script_usage():
    usage = re.search(r"Usage: (.*)", render(program="gen")).group(1).split()
    assert usage == ["gen", "[OPTIONS]", "MODEL_DIR", "[PROMPT...]"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_visible_option_and_argument_has_help_text(name):
    text = render(name)
    for param in _commands()[name].params:
        if getattr(param, "hidden", False):
            assert (param.opts[0] + " ") not in text
            continue
        assert (param.help or "").strip(), f"nextword {name} {param.opts}: no help text"
        label = param.opts[0] if param.param_type_name == "option" else param.metavar
        row = next(line for line in text.splitlines() if re.match(rf"│\s*(\*\s+)?{re.escape(label)}\s", line))
        first_words = param.help.split()[:2]
        assert " ".join(first_words) in " ".join(row.split()), f"{param.opts}: help not on its row"


@pytest.mark.parametrize("command, option", sorted(CHOICES))
def test_choices_are_listed_and_a_bad_value_is_a_usage_error(command, option):
    choices = CHOICES[(command, option)]
    row = next(line for line in render(command).splitlines() if re.match(rf"│\s*{option}\s", line))
    assert f"<{'|'.join(choices)}>" in row
    result = run_cli(command, *REQUIRED[command], option, "nonsense")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Invalid value for '{option}'" in result.stderr and all(f"'{value}'" in result.stderr for value in choices)


def test_version_and_completion(monkeypatch):
    import shellingham

    # --show-completion names the shell it detects from the parent processes: a test run whose parent
    # is not a shell (nohup, a daemon) would see none
    monkeypatch.setattr(shellingham, "detect_shell", lambda *arguments, **keywords: ("bash", "/bin/bash"))
    assert run_cli("--version").stdout == f"nextword {nextword.__version__}\n"
    assert run_cli("--version", program="gen").stdout == f"nextword {nextword.__version__}\n"
    text = render()
    assert "--install-completion" in text and "--show-completion" in text
    script = run_cli("--show-completion", "bash")
    assert script.exit_code == 0 and "_NEXTWORD_COMPLETE" in script.stdout


def test_python_dash_m_nextword():
    result = subprocess.run([sys.executable, "-m", "nextword", "--version"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0 and result.stdout == f"nextword {nextword.__version__}\n", result.stderr
