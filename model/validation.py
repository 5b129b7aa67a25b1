"""Validation during training: a fixed sample of the val split, scored by one traced function,
and the best-so-far bookkeeping that early stopping and the export use.

The sample is the first `windows` windows of the val split in record order (ingest shuffles
records at write time, so they come from documents all over the split), read once into memory.
It is the same for every replica count and for a resumed run, so "better than the best so far"
means the same thing throughout a run. Every worker scores the whole sample with its own copy
of the weights (no collective: 2,048 windows are a few seconds on a CPU, milliseconds on a
GPU); multi-worker runs then agree on the mean of the workers' losses, so that every worker
takes the same early-stopping decision.

The whole split is scored once at the end, for the weights that are exported (model.metrics'
evaluate_split, spread over every replica and worker).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from nextword.model.metrics import MetricTotals, eval_batch_per_replica, final_word_sums

# Validate after this many samples' worth of trained windows: a forward pass of a window costs
# ~1/3 of a training step's (bench/RESULTS.md), so validation costs ~1/(3 x 4) = 8% of the
# training time, and a 180 s run on 2 cores validates ~10 times.
TRAINED_SAMPLES_PER_VALIDATION = 4


def auto_validate_every(sample_windows: int, global_batch: int) -> int:
    """Steps between validations: TRAINED_SAMPLES_PER_VALIDATION samples' worth of windows."""
    return max(1, math.ceil(TRAINED_SAMPLES_PER_VALIDATION * sample_windows / global_batch))


def read_sample(data_dir: str, manifest, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """(contexts int32[n, C], targets int32[n]): the first `windows` windows of the val split in
    record order (objective "last"; pad targets included, as the metrics skip them)."""
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    config = ReaderConfig(batch_size=eval_batch_per_replica(manifest.vocab_size), objective="last", training=False)
    contexts, targets, held = [], [], 0
    val = manifest.splits.get("val")
    if windows > 0 and val is not None and val.windows:
        for context, target, _ in make_dataset(data_dir, "val", config, manifest=manifest):
            contexts.append(context.numpy())
            targets.append(target.numpy())
            held += len(target)
            if held >= windows:
                break
    if not contexts:
        return np.zeros((0, manifest.context_length), np.int32), np.zeros(0, np.int32)
    return np.concatenate(contexts)[:windows], np.concatenate(targets)[:windows]


class ValidationSample:
    """The first `windows` windows of DATA_DIR's val split, scored by `final_logits_fn`
    (int32[b, C] -> float32[b, vocab]) through one tf.function traced once."""

    def __init__(self, data_dir: str, manifest, final_logits_fn, windows: int):
        self.manifest = manifest
        self.batch = eval_batch_per_replica(manifest.vocab_size)
        self.contexts, self.targets = read_sample(data_dir, manifest, windows)
        context_length = manifest.context_length
        signature = [tf.TensorSpec([None, context_length], tf.int32), tf.TensorSpec([None], tf.int32)]
        self._sums = tf.function(lambda context, target: final_word_sums(final_logits_fn(context), target),
                                 input_signature=signature)

    @property
    def windows(self) -> int:
        return len(self.targets)

    def score(self) -> dict:
        """The metrics of model.metrics.MetricTotals.result over the sample."""
        totals = MetricTotals()
        for start in range(0, self.windows, self.batch):
            totals.add(self._sums(self.contexts[start:start + self.batch], self.targets[start:start + self.batch]))
        return totals.result(self.manifest, "val")
