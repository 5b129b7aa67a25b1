"""The training progress bar (rich): step, epoch, loss, windows/s, utilisation of the matmul peak and ETA."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, enabled: bool, total: int, done: int = 0, notes: bool = True, time_budget: float | None = None,
                 flops_per_window: int = 0, peak_flops: float = 0.0):
        self.enabled = enabled
        # utilisation: the step's matmul FLOP/s over the machine's measured peak (model/flops.py)
        self.flops_per_window, self.peak_flops = flops_per_window, peak_flops
        # With a time budget the bar tracks the budget (seconds): a run told to stop after N
        # seconds with a large --epochs would otherwise sit near 0% with an ETA of days.
        self.time_budget = time_budget
        self.started = time.monotonic()
        self.notes = notes  # per-epoch validation lines, printed even without the bar
        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("step {task.fields[step]:,}") if time_budget is not None else MofNCompleteColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s") if time_budget is not None else TextColumn(""),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[windows_per_second]:>9,.0f} windows/s"),
            TextColumn("{task.fields[utilisation]:>6.1%} of peak"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=time_budget or total, completed=0.0 if time_budget else done, epoch=0, loss=float("nan"), windows_per_second=0.0,
                                          step=done, utilisation=0.0)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, epoch: int, loss: float, windows_per_second: float,
               trained_seconds: float | None = None) -> None:
        """trained_seconds: this session's seconds of training steps (what the budget counts;
        validation and checkpoints excluded); default: the wall time since the bar started."""
        spent = time.monotonic() - self.started if trained_seconds is None else trained_seconds
        completed = step if self.time_budget is None else min(spent, self.time_budget)
        utilisation = windows_per_second * self.flops_per_window / self.peak_flops if self.peak_flops > 0 else 0.0
        self.progress.update(self.task, completed=completed, epoch=epoch, loss=loss, windows_per_second=windows_per_second,
                             step=step, utilisation=utilisation)

    def note(self, message: str) -> None:
        if self.notes:
            self.progress.console.print(message)
