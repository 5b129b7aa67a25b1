"""The learning-rate schedule: linear warm-up, then a decay to the planned end of training.

The planned end is whichever comes first of the step plan (`--epochs` / `--max-steps`) and the
time budget (`--time-budget`, seconds of training steps), so the fraction of training done is

    progress = max(step / planned_steps, train_seconds / time_budget)      (in [0, 1])

and the rate at optimizer step `step` (0-based) is

    peak * min(1, (step + 1) / warmup_steps) * decay(progress)
    decay(p) = final_fraction + (1 - final_fraction) * (1 + cos(pi * p)) / 2     (cosine)
    decay(p) = clip((end - p) / DECAY_SHARE, 0, 1), end = 1 or decay_from + DECAY_SHARE  (wsd)
    decay(p) = 1                                                               (constant)

"wsd" (warm-up, stable, decay: Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations"; MiniCPM) holds the peak and decays linearly to 0 over the last
DECAY_SHARE of the plan. Early stopping never cuts that decay short: a patience that runs out while the rate is
still at its peak starts the decay there (`decay_from`, the progress then; the run ends once the rate reaches 0),
and one that runs out during the decay lets it finish. The loss falls most in the decay, and a run cut off at or
near the peak rate never had it (bench/RESULTS.md, "Early stopping finishes wsd's decay"). Cosine starts decaying
at once, which costs an under-trained run more than its annealing gains (measured on the King James Bible at 180 s,
bench/RESULTS.md).

The step part is computed in the graph from the optimizer's own iteration count (checkpointed
with the optimizer, so a resumed run continues the curve exactly); the time part is a variable
the training loop sets before every call from the seconds trained so far (also checkpointed,
as `train_seconds`), agreed between workers. (The graph half is model.loop.ScheduledRate:
this module imports no TensorFlow, so the CLI can list its choices before TF loads.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("cosine", "constant", "wsd")
# Where cosine decay ends, as a fraction of the peak: 0.1 as in Chinchilla / nanoGPT.
FINAL_FRACTION = 0.1
# wsd: the share of the plan, at its end, over which the rate decays linearly to 0.
DECAY_SHARE = 0.2
# At most this share of the step plan warms up (a 40-step test run does not spend it all warming).
MAX_WARMUP_SHARE = 0.1


@dataclass(frozen=True)
class Schedule:
    kind: str
    peak: float
    warmup_steps: int
    planned_steps: int  # the step plan: epochs' steps capped by --max-steps
    time_budget: float | None = None
    final_fraction: float = FINAL_FRACTION

    @classmethod
    def plan(cls, kind: str, peak: float, warmup_steps: int, planned_steps: int, time_budget: float | None):
        """The warm-up is capped at MAX_WARMUP_SHARE of the step plan."""
        warmup = min(warmup_steps, int(MAX_WARMUP_SHARE * planned_steps))
        return cls(kind, peak, max(0, warmup), max(1, planned_steps), time_budget)

    def progress(self, step: int, train_seconds: float = 0.0) -> float:
        by_steps = step / self.planned_steps
        by_time = train_seconds / self.time_budget if self.time_budget else 0.0
        return min(1.0, max(by_steps, by_time))

    def decays_early(self, progress: float) -> bool:
        """Whether early stopping at `progress` starts the decay: under wsd, while the rate is still at its peak."""
        return self.kind == "wsd" and progress < 1.0 - DECAY_SHARE

    @property
    def finishes_its_decay(self) -> bool:
        """Whether early stopping lets the rate reach 0 rather than end the run (wsd: see the module's docstring)."""
        return self.kind == "wsd"

    @staticmethod
    def decay_end(decay_from: float) -> float:
        """The progress where the rate reaches 0: the plan's end, or DECAY_SHARE after an early decay's start
        (decay_from < 0: none)."""
        return decay_from + DECAY_SHARE if decay_from >= 0 else 1.0

    def rate(self, step: int, train_seconds: float = 0.0, decay_from: float = -1.0) -> float:
        """The learning rate at 0-based optimizer step `step` (the graph computes the same)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.kind == "constant":
            return self.peak * warm
        progress = self.progress(step, train_seconds)
        if self.kind == "wsd":
            return self.peak * warm * min(1.0, max(0.0, (self.decay_end(decay_from) - progress) / DECAY_SHARE))
        return self.peak * warm * (self.final_fraction + (1 - self.final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    def to_dict(self) -> dict:
        return {"schedule": self.kind, "peak_learning_rate": self.peak, "warmup_steps": self.warmup_steps,
                "planned_steps": self.planned_steps, "time_budget": self.time_budget,
                "final_fraction": {"cosine": self.final_fraction, "wsd": 0.0}.get(self.kind, 1.0)}
