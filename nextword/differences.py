"""What differs between what an artifact recorded and what a command asks for, in words.

`nextword ingest` (DATA_DIR) and `nextword train` (RUN_DIR) resume a rerun of the same
command and refuse any other; both say which settings differ through `changed_settings`.
No TensorFlow here.
"""

from __future__ import annotations


def show(value) -> str:
    """A recorded or requested value as a user reads it (None is an option left to its default)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def changed_settings(recorded: dict, wanted: dict, labels: dict[str, str], holder: str) -> list[str]:
    """"LABEL: the HOLDER has X, this command asks for Y" for each key whose values differ: those
    of `labels` in its order, then any other recorded key under its own name. Keys `recorded`
    lacks (an artifact of an older version) are skipped."""
    keys = [*labels, *sorted(key for key in recorded if key not in labels)]
    return [f"{labels.get(key, key)}: the {holder} has {show(recorded[key])}, this command asks for {show(wanted.get(key))}"
            for key in keys if key in recorded and recorded[key] != wanted.get(key)]
