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


def kept_sections(path: str, written: set[str]) -> list[str]:
    """The `## ` sections of the RESULTS.md at `path` that bench/run does not write (written by hand from a
    benchmark of their own: serve, dedup, precision, ...), as they are, in their order: a rerun of bench/run must
    not drop them."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        lines = handle.read().splitlines()
    kept, keeping = [], False
    for line in lines:
        if line.startswith("## "):
            keeping = line[3:] not in written
        if keeping:
            kept.append(line)
    return kept + ([""] if kept and kept[-1] else [])
