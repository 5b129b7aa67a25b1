"""How every nextword command's `--help` reads; shared by `nextword` and the standalone `gen`.

typer 0.29's rich help prints a value type after every boolean flag (`--json <bool>`, even
`--help <bool>`), although a flag takes no value, and writes required arguments in the
usage line as `{data_dir}`. Commands made with `cls=Command` (and the root app with
`cls=Group`) show flags bare and arguments by their metavar, as the README writes them:
`nextword train [OPTIONS] DATA_DIR`, `gen [OPTIONS] MODEL_DIR [PROMPT...]`.

Imports only typer: `--help` stays instant.
"""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup

# -h as well as --help; click hands a group's context settings down to its subcommands.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _bare_flags(params: list) -> list:
    for param in params:
        # The rich help prints an option's metavar in place of its type: empty for a flag.
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def argument_usage(param) -> str:
    """DATA_DIR (required), [PROMPT...] (optional, repeatable)."""
    name = param.metavar or param.name.upper()
    if param.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if param.required else f"[{name}]"


class Command(TyperCommand):
    def get_params(self, ctx) -> list:
        return _bare_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(TyperGroup):
    def get_params(self, ctx) -> list:
        return _bare_flags(super().get_params(ctx))
