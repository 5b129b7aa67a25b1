"""Start a child process with a resource limit or SIGINT at its default, without `preexec_fn`.

`preexec_fn` makes subprocess fork() instead of vfork(), and fork() runs the atfork handlers of every
library loaded in the test process: once TensorFlow's gRPC has threads running there, its child handler
can abort the child before exec (seen in CI: exit -6, "Epoll1Poller ... epoll_wait error: Bad file
descriptor"). A small Python launcher applies the setting in the child and then execs the command.
"""

from __future__ import annotations

import sys

_LAUNCHER = """\
import os, resource, signal, sys
limit, sigint_default, command = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3:]
if limit > 0:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if sigint_default:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(command[0], command)
"""


def launched(command: list[str], *, file_size_limit: int = 0, sigint_default: bool = False) -> list[str]:
    """`command` (its first item a path to an executable) run through the launcher: with RLIMIT_FSIZE at
    `file_size_limit` bytes (a full disk: write() fails with EFBIG), and/or SIGINT at its default action, as a
    terminal's foreground job has it (a CI shell starts background jobs with SIGINT ignored, and exec keeps that)."""
    return [sys.executable, "-c", _LAUNCHER, str(file_size_limit), "1" if sigint_default else "0", *command]
