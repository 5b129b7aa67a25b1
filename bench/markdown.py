"""Markdown for RESULTS.md: tables generated from rows of figures, and the sections written by hand (kept as they
are, their marked tables generated anew).

    table([Column("arm", lambda row: row["arm"]), Column("perplexity", lambda row: f"{row['perplexity']:.2f}", True)],
          [*rows, ["**5-gram**", "**22.65**"]])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

TABLE_START = re.compile(r"<!-- table: (\S+) -->")
TABLE_END = "<!-- end table -->"


@dataclass(frozen=True)
class Column:
    """A table column: its header, the cell it shows for one row, and whether it holds numbers (aligned right)."""

    header: str
    cell: Callable[[Any], str]
    numeric: bool = False


def number(value, digits: int = 0) -> str:
    """A figure with thousands separators, "n/a" when it was not measured."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def row(cells: Iterable[str]) -> str:
    """One markdown table row; an empty cell is written `| |`."""
    return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"


def table(columns: list[Column], rows: Iterable) -> list[str]:
    """The header, its rule, then a line an item of `rows`: each column's cell of it, or, for a list, those cells as
    they are (a baseline's or a ratio's row, whose cells are not the columns' own)."""
    return [row(column.header for column in columns), row("---:" if column.numeric else "---" for column in columns),
            *(row(item if isinstance(item, list) else [column.cell(item) for column in columns]) for item in rows)]


def fill_generated_tables(lines: list[str], tables: dict[str, Callable[[], str]]) -> list[str]:
    """A hand-written section's generated tables, rendered anew: the lines between `<!-- table: NAME -->` and
    `<!-- end table -->` are replaced by tables[NAME]() (markdown), so prose stays as written and figures come from
    the results store. A marker without its end, or a name no benchmark renders, is refused before anything is lost."""
    out, index = [], 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        started = TABLE_START.fullmatch(line.strip())
        if not started:
            continue
        name = started.group(1)
        try:
            end = next(at for at in range(index, len(lines)) if lines[at].strip() == TABLE_END)
        except StopIteration:
            raise ValueError(f"RESULTS.md: `{line.strip()}` has no `{TABLE_END}` after it: add it where the table "
                             "ends (everything between the two is generated)") from None
        if name not in tables:
            raise ValueError(f"RESULTS.md: no benchmark renders a table named {name!r} (`{line.strip()}`); "
                             f"known: {', '.join(sorted(tables)) or 'none'}")
        out += tables[name]().strip("\n").splitlines()
        index = end  # the end marker is copied next
    return out


def sections_of(lines: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A RESULTS.md's lines split into its header (before the first `## `) and its `## ` sections in their order:
    (title, the section's lines, its `## ` line included)."""
    header, sections = [], []
    for line in lines:
        if line.startswith("## "):
            sections.append((line[3:], [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            header.append(line)
    return header, sections


def merged_sections(path: str, generated: list[tuple[str, list[str]]], tables: dict[str, Callable[[], str]],
                    dropped: Iterable[str] = ()) -> list[str]:
    """The `## ` sections of a RESULTS.md: those of the file at `path` in the file's order, a section bench/run
    generates replacing its old text in place, one written by hand (serve, dedup, precision, ...) kept as it is but
    for its marked tables (rendered anew from `tables`); generated sections the file lacks come after the others.
    A rerun must neither drop nor move what people wrote. `dropped`: titles written once and retired since."""
    fresh = dict(generated)
    existing = []
    if os.path.exists(path):
        with open(path) as handle:
            existing = sections_of(handle.read().splitlines())[1]
    out, placed = [], set()

    def add(lines: list[str]) -> None:  # one blank line between sections, however many the text ended with
        while lines and not lines[-1]:
            lines = lines[:-1]
        out.extend([*lines, ""])

    for title, lines in existing:
        if title in dropped or title in placed:
            continue
        add([f"## {title}", "", *fresh[title]] if title in fresh else fill_generated_tables(lines, tables))
        placed.add(title)
    for title, lines in generated:
        if title not in placed:
            add([f"## {title}", "", *lines])
    return out


def hand_header(path: str, generated_prefixes: tuple[str, ...]) -> list[str]:
    """The lines of the file's header (before its first `## `) that bench/run does not write: notes added by hand
    (e.g. which sections are newer than the run), kept under the generated header."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        header = sections_of(handle.read().splitlines())[0]
    kept = [line for line in header if not line.startswith(generated_prefixes)]
    while kept and not kept[0]:
        kept.pop(0)
    while kept and not kept[-1]:
        kept.pop()
    return kept + [""] if kept else []
