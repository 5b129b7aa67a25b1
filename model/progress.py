"""The training progress bar (rich): step, epoch, loss, windows/s and ETA."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, enabled: bool, total: int, done: int = 0, notes: bool = True):
        self.enabled = enabled
        self.notes = notes  # per-epoch validation lines, printed even without the bar
        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[windows_per_second]:>9,.0f} windows/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, completed=done, epoch=0, loss=float("nan"), windows_per_second=0.0)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, step: int, epoch: int, loss: float, windows_per_second: float) -> None:
        self.progress.update(self.task, completed=step, epoch=epoch, loss=loss, windows_per_second=windows_per_second)

    def note(self, message: str) -> None:
        if self.notes:
            self.progress.console.print(message)
