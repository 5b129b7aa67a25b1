"""Loss and metric code shared by the training loop, per-epoch validation and `nextword eval`.

Validation and eval score the window's FINAL token for every objective, so the notebook's
"last" model and an "all" model are compared on the same targets. Pad targets never count.

A token is a word for `--tokenizer word` and a piece for `--tokenizer wordpiece`. `loss` and
`perplexity` are per token; `word_perplexity` spreads the same total NLL over the words those
tokens spell (see `tokens_per_word`), so runs on either tokenizer compare. top-1/top-5 are
next-word accuracy only when tokens are words: for wordpiece the keys are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from nextword.errors import ArtifactError


def weighted_token_loss(logits: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Sparse cross-entropy from logits, times weights, summed: float32 scalar.

    logits float[..., vocab]; targets int32[...]; weights float32[...] (0 for pad targets).
    """
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(losses * weights)


def final_word_sums(logits: tf.Tensor, targets: tf.Tensor) -> dict[str, tf.Tensor]:
    """Sums over one batch of the window's final word: loss, top-1 and top-5 hits, counted windows.

    logits float32[batch, vocab]; targets int32[batch]. Windows whose target is pad (0) weigh 0;
    rows whose target is -1 are the reader's padding (see make_dataset pad_to_batches): not read.
    """
    read = tf.greater_equal(targets, 0)
    targets = tf.maximum(targets, 0)
    weights = tf.cast(tf.not_equal(targets, 0), tf.float32)
    top5 = tf.math.top_k(logits, k=min(5, logits.shape[-1])).indices
    hits = tf.cast(tf.equal(top5, targets[:, None]), tf.float32)
    return {
        "loss": weighted_token_loss(logits, targets, weights),
        "top1": tf.reduce_sum(hits[:, 0] * weights),
        "top5": tf.reduce_sum(tf.reduce_max(hits, axis=1) * weights),
        "windows": tf.reduce_sum(weights),
        "rows": tf.reduce_sum(tf.cast(read, tf.float32)),
    }


def tokens_per_word(manifest, split: str) -> float:
    """Scored targets per scored word in `split`: 1.0 for a word dataset, ~1.2 for wordpiece.

    The first token of each document is never a target (windows == tokens - documents at stride
    1), and a document's first piece starts its first word, so both counts drop one per document.
    With stride > 1 the windows are a sample of the targets and this is the split's ratio, not
    the scored windows' own.
    """
    counts = manifest.split(split)
    words = manifest.extra.get("words", {}).get(split) if manifest.tokenizer_choice == "wordpiece" else counts.tokens
    if words is None:
        raise ArtifactError(
            f"the {manifest.tokenizer_choice} dataset's manifest has no word count for its {split} split "
            "(extra.words), so perplexity per word cannot be computed",
            hint="re-run `nextword ingest` with this version of nextword",
        )
    target_tokens, target_words = counts.tokens - counts.documents, words - counts.documents
    return target_tokens / target_words if target_tokens > 0 and target_words > 0 else 1.0


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # exp(>709) overflows a float


@dataclass
class MetricTotals:
    """Running sums over batches -> loss, perplexity (per token and per word), top-1, top-5."""

    loss: float = 0.0
    top1: float = 0.0
    top5: float = 0.0
    windows: float = 0.0  # windows whose target counts (not pad)
    rows: float = 0.0  # windows read

    def add(self, sums: dict) -> None:
        for name in ("loss", "top1", "top5", "windows", "rows"):
            setattr(self, name, getattr(self, name) + float(sums[name]))

    def result(self, manifest, split: str) -> dict:
        """{"loss", "perplexity", "word_perplexity", "tokens_per_word", "windows"}, plus "top1" and
        "top5" when the manifest's tokens are words. loss: mean NLL (nats) per scored token."""
        count = max(self.windows, 1.0)
        loss = self.loss / count
        ratio = tokens_per_word(manifest, split)
        result = {
            "loss": loss,
            "perplexity": _perplexity(loss),
            # exp(total NLL / words): the loss per token times tokens per word
            "word_perplexity": _perplexity(loss * ratio),
            "tokens_per_word": ratio,
            "windows": int(self.windows),
        }
        if manifest.tokenizer_choice == "word":  # a piece's top-1 is not the next word's
            result.update(top1=self.top1 / count, top5=self.top5 / count)
        return result


def perplexity_text(metrics: dict, digits: int = 2) -> str:
    """"perplexity 45.20" for words; for pieces "perplexity 45.20 per piece, 98.10 per word (1.19 pieces/word)"."""
    if "top1" in metrics or "word_perplexity" not in metrics:  # tokens are words (or an older summary)
        return f"perplexity {metrics['perplexity']:.{digits}f}"
    return (f"perplexity {metrics['perplexity']:.{digits}f} per piece, {metrics['word_perplexity']:.{digits}f} per word "
            f"({metrics['tokens_per_word']:.2f} pieces/word)")


def accuracy_text(metrics: dict, digits: int = 4) -> str:
    """"top-1 0.1200  top-5 0.2400", or "" where the tokens are not words (no next-word accuracy)."""
    if "top1" not in metrics:
        return ""
    return f"top-1 {metrics['top1']:.{digits}f}  top-5 {metrics['top5']:.{digits}f}"


def metrics_line(metrics: dict, accuracy_digits: int = 4) -> str:
    """loss, perplexity and (for words) accuracy on one line, as train and eval print them."""
    parts = [f"loss {metrics['loss']:.4f}", perplexity_text(metrics), accuracy_text(metrics, accuracy_digits)]
    return "  ".join(part for part in parts if part)


# Floats of [batch, vocab] logits one replica holds per evaluation step (64 MB in float32): the
# batch shrinks as the vocabulary grows, so peak memory stays flat in batch x vocabulary.
EVAL_LOGITS_PER_REPLICA = 1 << 24
EVAL_BATCH_RANGE = (16, 1024)


def eval_batch_per_replica(vocab_size: int) -> int:
    low, high = EVAL_BATCH_RANGE
    return max(low, min(high, EVAL_LOGITS_PER_REPLICA // max(vocab_size, 1)))


def evaluate_split(strategy: tf.distribute.Strategy, final_logits_fn, data_dir: str, split: str, manifest,
                   pipelines: int = 1) -> MetricTotals:
    """Score the final word of every window of `split`, spread over the strategy's replicas and
    workers: each pipeline (worker) reads its own part of the split, each replica scores its
    batches, and the sums are all-reduced, so every worker returns the same totals.

    final_logits_fn(context int32[b, C]) -> float32[b, vocab] runs on each replica. Workers and
    replicas must take the same number of steps (their all-reduces pair up), so pipelines with
    fewer batches are padded with unread one-row batches.
    """
    from nextword.tfrecords.reader import ReaderConfig, epoch_plan, make_dataset

    replicas_per_pipeline = strategy.num_replicas_in_sync // pipelines
    config = ReaderConfig(batch_size=eval_batch_per_replica(manifest.vocab_size), objective="last", training=False)
    plans = [epoch_plan(data_dir, manifest, split, config, 0, pipelines, index) for index in range(pipelines)]
    steps = max(-(-plan.batches // replicas_per_pipeline) for plan in plans)

    def dataset_fn(input_context):
        return make_dataset(data_dir, split, config, input_context=input_context, manifest=manifest,
                            pad_to_batches=steps * replicas_per_pipeline)

    def replica_sums(context, targets, weights):
        last_targets = targets if targets.shape.rank == 1 else targets[:, -1]
        return final_word_sums(final_logits_fn(context), last_targets)

    @tf.function
    def step(iterator):
        per_replica = strategy.run(replica_sums, args=next(iterator))
        return {name: strategy.reduce("sum", value, axis=None) for name, value in per_replica.items()}

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    totals = MetricTotals()
    for _ in range(steps):
        totals.add(step(iterator))
    return totals
