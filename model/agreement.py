"""What every worker of a multi-worker run must agree on, by all-reduce: whether to stop (one
worker stopping alone leaves the others waiting forever in the next all-reduce), the seconds
trained, and the checkpoint they resumed from. Under one worker every answer is its own."""

from __future__ import annotations

import tensorflow as tf

from nextword.errors import ArtifactError
from nextword.model.strategy import is_multiworker


class WorkerAgreement:
    def __init__(self, strategy: tf.distribute.Strategy):
        self.strategy = strategy
        self._sum = tf.function(self._sum_fn) if is_multiworker(strategy) else None

    @property
    def needed(self) -> bool:
        return self._sum is not None

    def _sum_fn(self, values):
        per_replica = self.strategy.run(lambda value: tf.identity(value), args=(values,))
        return self.strategy.reduce("sum", per_replica, axis=None)  # ReduceOp has no MAX; any flag > 0

    def stop_and_seconds(self, stop: bool, seconds: float) -> tuple[bool, float]:
        """(any worker wants to stop, the workers' mean seconds trained): one all-reduce a call."""
        if self._sum is None:
            return stop, seconds
        total = self._sum(tf.constant([1.0 if stop else 0.0, seconds], tf.float64)).numpy()
        return bool(total[0] > 0), float(total[1]) / self.strategy.num_replicas_in_sync

    def mean(self, value: float) -> float:
        return self.stop_and_seconds(False, value)[1]

    def check_resumed_alike(self, step: int) -> None:
        """Every worker must restore the same checkpoint. A RUN_DIR that is not one shared location
        (each machine its own local path) would leave the others at step 0 beside the chief."""
        if self._sum is None:
            return
        step, replicas = float(step), self.strategy.num_replicas_in_sync
        total, squares = (float(value) for value in self._sum(tf.constant([step, step * step], tf.float64)).numpy())
        # equal sums of x and x² <=> all equal
        if total != replicas * step or squares != replicas * step * step:
            raise ArtifactError(
                f"the workers resumed from different checkpoints (this worker: step {int(step)}, "
                f"the cluster's mean: step {total / replicas:g})",
                hint="give every worker the same DATA_DIR and RUN_DIR on shared storage (gs://, s3://, NFS): "
                "only the chief writes checkpoints and every worker restores from RUN_DIR/checkpoints",
            )
