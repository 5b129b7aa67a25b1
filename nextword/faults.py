"""Deterministic fault injection for tests: die with SIGKILL at a named point of a run.

    NEXTWORD_KILL_AT=best_saved@40   # the process kills itself right after saving the best
                                     # checkpoint of step 40, before the checkpoint recording it

A timed kill lands wherever the process happens to be (often nowhere interesting, and
differently on a loaded CI machine); a named point is the exact moment a test is about.
Unset (always, outside tests), `reached` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "NEXTWORD_KILL_AT"


def reached(point: str, step: int) -> None:
    """SIGKILL this process if NEXTWORD_KILL_AT names `point`@`step`."""
    if os.environ.get(VARIABLE) == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)
