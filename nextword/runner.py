"""The CLI boundary every command runs through: errors become a message and a documented exit code.

Lives in the base layer so each stage's typer app (`gen` is its own console script) can use
it without importing the top-level `nextword` app, which mounts the stages.

Exit codes (README, "Exit codes"):
  0 done · 1 a dataset, run or export is missing or damaged (and `verify` found damage)
  2 a usage or input mistake · 70 a bug (message + where the traceback was written)
  74 the system refused: permission, disk space, open files, memory
  75 a multi-worker peer was lost: restart every worker · 130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import signal
import sys
import tempfile
import traceback

from nextword.errors import Interrupted, NextwordError, ResourceError

EXIT_BUG = 70
EXIT_INTERRUPTED = 130
TRACEBACK_ENV = "NEXTWORD_TRACEBACK"

_OS_REFUSALS = {
    errno.EACCES: ("permission denied", "choose a path you can write, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a path you can write, or fix its permissions"),
    errno.EROFS: ("the file system is read-only", "choose a writable path"),
    errno.ENOSPC: ("no space left on the device", "free space or choose another path; rerun the same command to resume"),
    errno.EDQUOT: ("disk quota exceeded", "free space or choose another path; rerun the same command to resume"),
    errno.EFBIG: ("file larger than this system allows (ulimit -f)", "raise the limit (ulimit -f unlimited) and rerun the same command"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n 4096) or use fewer --shards / --workers"),
    errno.ENFILE: ("too many open files on this system", "close other programs or use fewer --shards / --workers"),
}


def resource_error_from(error: BaseException) -> ResourceError | None:
    """A ResourceError for an OS or TensorFlow refusal a user can act on, else None (a bug)."""
    if isinstance(error, OSError) and error.errno in _OS_REFUSALS:
        what, hint = _OS_REFUSALS[error.errno]
        where = f": {error.filename}" if error.filename else ""
        return ResourceError(f"{what}{where}", hint=hint)
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    text = _op_text(error)
    if isinstance(error, tf.errors.ResourceExhaustedError) and ("OOM" in text or "memory" in text.lower()):
        return ResourceError(f"out of memory: {text}", hint="lower --batch-size (or --units / --layers) and rerun")
    if isinstance(error, tf.errors.PermissionDeniedError):
        return ResourceError(f"permission denied: {text}", hint="choose a path you can write, or fix its permissions")
    for code, (what, hint) in _OS_REFUSALS.items():
        if os.strerror(code) in text:
            return ResourceError(f"{what}: {text}", hint=hint)
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return ResourceError(f"a resource ran out: {text}", hint="free disk space or memory, then rerun")
    return None


def _op_text(error) -> str:
    """TF's message without its graph plumbing: no {{function_node ...}}, [Op:...] or [[node ...]]."""
    text = str(getattr(error, "message", error)).strip()
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[\[.*?\]\]|\s*\[Op:[^\]]*\]", "", text, flags=re.S)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:300]


def print_error(error: NextwordError) -> None:
    # An interruption is no error: its message ("interrupted: run the same command to resume") stands alone.
    print(error.message if isinstance(error, Interrupted) else f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"  → {error.hint}", file=sys.stderr)


def report_bug(error: BaseException) -> int:
    """A short message for an unexpected exception, its traceback kept in a file (or shown)."""
    text = "".join(traceback.format_exception(error))
    if os.environ.get(TRACEBACK_ENV):
        sys.stderr.write(text)
        print(f"error: unexpected {type(error).__name__} (a bug in nextword; the traceback is above)", file=sys.stderr)
        return EXIT_BUG
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(tempfile.gettempdir(), f"nextword-traceback-{stamp}-{os.getpid()}.txt")
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        where = f"the traceback is in {path}"
    except OSError:
        where = f"rerun with {TRACEBACK_ENV}=1 to see the traceback"
    summary = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    print(f"error: unexpected {type(error).__name__}{': ' + summary if summary else ''}", file=sys.stderr)
    print(f"  → this is a bug in nextword, not in your input: {where} "
          f"(or rerun with {TRACEBACK_ENV}=1); please report it", file=sys.stderr)
    return EXIT_BUG


def run_app(typer_app, prog_name: str, args: list[str] | None = None) -> None:
    """Run a typer app: NextwordError and OS refusals print as messages, bugs as a short note.

    typer turns Ctrl-C into a silent exit 130; a SIGINT handler records that it happened so
    the user reads "interrupted" (commands that can resume say so themselves, before this).
    """
    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(True)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        typer_app(args=args, prog_name=prog_name, standalone_mode=True)
    except SystemExit as done:
        if interrupted and done.code == EXIT_INTERRUPTED:
            print("interrupted", file=sys.stderr)
        raise
    except NextwordError as error:
        print_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: nothing escapes as a raw traceback
        refusal = resource_error_from(error)
        if refusal is not None:
            print_error(refusal)
            sys.exit(refusal.exit_code)
        sys.exit(report_bug(error))
