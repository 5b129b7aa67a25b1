"""Loss and metric code shared by the training loop, per-epoch validation and `nextword eval`.

Validation and eval score the window's FINAL word for every objective, so the notebook's
"last" model and an "all" model are compared on the same targets. Pad targets never count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


def weighted_token_loss(logits: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Sparse cross-entropy from logits, times weights, summed: float32 scalar.

    logits float[..., vocab]; targets int32[...]; weights float32[...] (0 for pad targets).
    """
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(losses * weights)


def final_word(logits: tf.Tensor) -> tf.Tensor:
    """float[batch, context, vocab] ("all") or float[batch, vocab] ("last") -> float32[batch, vocab]."""
    logits = tf.cast(logits, tf.float32)
    return logits[:, -1, :] if logits.shape.rank == 3 else logits


def final_word_sums(logits: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums over one batch of the window's final word: loss, top-1 and top-5 hits, counted windows.

    logits float32[batch, vocab]; targets int32[batch]. Windows whose target is pad (0) weigh 0.
    """
    weights = tf.cast(tf.not_equal(targets, 0), tf.float32)
    top5 = tf.math.top_k(logits, k=min(5, logits.shape[-1])).indices
    hits = tf.cast(tf.equal(top5, targets[:, None]), tf.float32)
    return {
        "loss": weighted_token_loss(logits, targets, weights),
        "top1": tf.reduce_sum(hits[:, 0] * weights),
        "top5": tf.reduce_sum(tf.reduce_max(hits, axis=1) * weights),
        "windows": tf.reduce_sum(weights),
        "rows": tf.cast(tf.shape(targets)[0], tf.float32),
    }


@dataclass
class MetricTotals:
    """Running sums over batches -> loss, perplexity, top-1, top-5."""

    loss: float = 0.0
    top1: float = 0.0
    top5: float = 0.0
    windows: float = 0.0  # windows whose target counts (not pad)
    rows: float = 0.0  # windows read

    def add(self, sums: dict) -> None:
        for name in ("loss", "top1", "top5", "windows", "rows"):
            setattr(self, name, getattr(self, name) + float(sums[name]))

    def result(self) -> dict:
        count = max(self.windows, 1.0)
        loss = self.loss / count
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "top1": self.top1 / count,
            "top5": self.top5 / count,
            "windows": int(self.windows),
        }


def evaluate_batches(final_logits_fn, dataset: tf.data.Dataset) -> MetricTotals:
    """Run `final_logits_fn(context int32[b, C]) -> float32[b, vocab]` over (context, targets, _) batches.

    targets may be int32[b] (window's final word) or int32[b, C] (its last column is used).
    """

    @tf.function(reduce_retracing=True)
    def batch_sums(context, targets):
        last_targets = targets if targets.shape.rank == 1 else targets[:, -1]
        return final_word_sums(final_logits_fn(context), last_targets)

    totals = MetricTotals()
    for context, targets, _ in dataset:
        totals.add(batch_sums(context, targets))
    return totals
