"""The one error type every stage raises for problems a user can fix.

Messages say what was expected, what was received and what to do. The CLI boundary
prints them without a traceback and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class NextwordError(Exception):
    """A problem with the user's input, files or settings (not a bug)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  → {hint}")


class InputError(NextwordError):
    """The corpus or a file named on the command line cannot be used."""


class ArtifactError(NextwordError):
    """A dataset, checkpoint or export on disk is missing, foreign or damaged."""

    exit_code = 1


class SettingsError(NextwordError):
    """Command-line settings that contradict each other or are out of range."""


class ResourceError(NextwordError):
    """The system refused: permission, disk space, open files or memory (the run can be retried)."""

    exit_code = 74  # EX_IOERR


class Interrupted(NextwordError):
    """Ctrl-C (SIGINT) stopped a command; the message says whether rerunning resumes it."""

    exit_code = 130
