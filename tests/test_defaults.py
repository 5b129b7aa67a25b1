"""One place per default: every CLI option that names a field of its stage's settings dataclass
defaults to that field's default (the typer layer reads it from there; this keeps it so)."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from _cli import nextword_app
from nextword.generate.cli import gen_app
from nextword.generate.generator import GenerateSettings
from nextword.generate.server import ServeSettings
from nextword.gpu_check import GpuCheckSettings
from nextword.ingest.settings import IngestSettings
from nextword.model.settings import TrainSettings

STAGES = [("ingest", IngestSettings), ("train", TrainSettings), ("gen", GenerateSettings), ("gpu-check", GpuCheckSettings),
          ("serve", ServeSettings)]
# resolved after parsing: the CLI's None means "the --quick default" (GpuCheckSettings.resolve)
RESOLVED_LATER = {("gpu-check", name) for name in ("steps", "repeats", "batch_per_device")}


def command(name: str):
    if name == "gen":
        return typer.main.get_command(gen_app)
    return typer.main.get_command(nextword_app()).commands[name]


@pytest.mark.parametrize("name, settings", STAGES, ids=[name for name, _ in STAGES])
def test_cli_defaults_are_the_settings_defaults(name, settings):
    fields = {field.name: field for field in dataclasses.fields(settings)}
    compared = 0
    for param in command(name).params:
        field = fields.get(param.name)
        if field is None or field.default is dataclasses.MISSING or (name, param.name) in RESOLVED_LATER:
            continue
        default = param.default if param.default is not None or not param.multiple else ()
        assert default == field.default, f"{name} {param.opts[0]}: the CLI says {param.default!r}, {settings.__name__} {field.default!r}"
        compared += 1
    assert compared >= 4  # the check reads the options it means to
