"""The package layout: one installed namespace, and floors whose imports only run down."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# floor -> the folders (and modules of nextword/) on it; a module may import its own floor and those below
FLOORS = ["base", "tfrecords", "ingest", "model", "generate", "application"]
STAGES = ("tfrecords", "ingest", "model", "generate")
APPLICATION = ("cli", "demo", "gpu_check", "__main__")  # nextword/ modules that wire every stage together


def floor_of(module: str) -> str | None:
    """nextword.X.Y -> its floor; None for anything outside nextword."""
    parts = module.split(".")
    if parts[0] != "nextword":
        return None
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    return "application" if len(parts) > 1 and parts[1] in APPLICATION else "base"


def package_modules():
    """(module name, path) of every module installed under nextword."""
    for folder, package in (("nextword", "nextword"), *((stage, f"nextword.{stage}") for stage in STAGES)):
        for path in sorted((REPO / folder).glob("*.py")):
            yield package + ("" if path.stem == "__init__" else f".{path.stem}"), path


def imported_modules(path: pathlib.Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_imports_run_down_the_floors_only():
    """base < tfrecords < ingest < model < generate < application (nextword.cli, nextword.demo):
    e.g. the export's graph (model) must not import the generator's CLI package."""
    upward = []
    for module, path in package_modules():
        here = FLOORS.index(floor_of(module))
        for name in imported_modules(path):
            there = floor_of(name)
            if there is not None and FLOORS.index(there) > here:
                upward.append(f"{module} ({floor_of(module)}) imports {name} ({there})")
    assert upward == []


def python_files(folder: str) -> list[pathlib.Path]:
    """The Python files of a repository folder: its *.py, and its extension-less scripts (bench/run)."""
    files = sorted((REPO / folder).glob("*.py"))
    return files + sorted(path for path in (REPO / folder).iterdir()
                          if path.is_file() and not path.suffix and path.read_bytes().startswith(b"#!/usr/bin/env python"))


def test_bench_and_tests_do_not_import_each_other():
    """bench/ (its scripts and bench/tests, which test them) and tests/ (the package's tests) share only the
    installed package: a test runs a benchmark as the script it is, and a benchmark's fixtures live in nextword."""
    bench_files = python_files("bench") + python_files("bench/tests")
    test_files = python_files("tests")
    bench_modules = {path.stem for path in bench_files}
    test_modules = {path.stem for path in test_files}
    assert {"common", "report", "recipe_bench"} <= bench_modules and {"conftest", "test_export_fixtures"} <= test_modules
    arrows = [f"{path.relative_to(REPO)} imports {name} (tests/)" for path in bench_files
              for name in imported_modules(path) if name.split(".")[0] in test_modules]
    arrows += [f"{path.relative_to(REPO)} imports {name} (bench/)" for path in test_files
               for name in imported_modules(path) if name.split(".")[0] in bench_modules]
    assert arrows == []


def test_nothing_imports_a_stage_by_its_bare_top_level_name():
    """Installed, `ingest`, `model`, ... are not top-level packages: every import goes through nextword."""
    bare = []
    for folder in ("nextword", *STAGES, "tests", "bench", "bench/tests"):
        for path in sorted((REPO / folder).glob("*.py")):
            bare += [f"{path.relative_to(REPO)}: {name}" for name in imported_modules(path) if name.split(".")[0] in STAGES]
    assert bare == []


@pytest.mark.slow
def test_the_wheel_installs_one_namespace_beside_another_project_s_model_package(tmp_path):
    """Build the wheel, install it (no dependencies: they come from this venv through a .pth) into a
    clean venv, and import it from a directory holding a top-level `model` package of its own."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, timeout=300)
    wheel, = wheels.glob("nextword-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (pathlib.Path(site) / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    other = tmp_path / "other_project"
    (other / "model").mkdir(parents=True)
    (other / "model" / "__init__.py").write_text("OTHER = True\n")
    check = ("import model, nextword, nextword.model.builder, nextword.ingest.pipeline, nextword.generate.cli, "
             "nextword.tfrecords.reader, nextword.cli\n"
             "assert model.OTHER\n"
             "assert all(p.startswith(%r) for p in nextword.__path__), nextword.__path__\n"
             "print(nextword.model.builder.__file__)") % site
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(python), "-c", check], cwd=other, capture_output=True, text=True, timeout=300,
                            env={**environment, "PYTHONPATH": str(other), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(site)
    for script in ("nextword", "gen"):
        shown = subprocess.run([str(venv / "bin" / script), "--help"], cwd=other, capture_output=True, text=True,
                               timeout=300, env={**environment, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert shown.returncode == 0 and "Usage" in shown.stdout, shown.stderr[-2000:]
