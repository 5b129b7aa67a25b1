"""Validation of a blended run (tfrecords/blend.py): each source's val split scored apart, and the
blend's figure as the weighted mean of the sources' (a window of source i is drawn with
probability w_i, so its expected loss is sum_i w_i x loss_i; perplexity is exp of that loss).
The blended loss is what early stopping and the best checkpoint follow."""

from __future__ import annotations

import math

from nextword.model.metrics import metrics_line
from nextword.model.validation import ValidationSample

AVERAGED = ("loss", "top1", "top5", "tokens_per_word")


def blended_metrics(per_source: dict[str, dict], weights: dict[str, float]) -> dict:
    """{name: metrics} -> the blend's metrics (MetricTotals.result's keys) plus "sources": {name: metrics}.
    Sources without scored windows (an empty val split) are left out and the weights renormalised."""
    scored = {name: metrics for name, metrics in per_source.items() if metrics and metrics.get("windows")}
    total = sum(weights[name] for name in scored) or 1.0
    blended = {}
    for key in AVERAGED:
        if scored and all(key in metrics for metrics in scored.values()):
            blended[key] = sum(weights[name] * metrics[key] for name, metrics in scored.items()) / total
    if "loss" in blended:
        blended["perplexity"] = _exp(blended["loss"])
        word_loss = sum(weights[name] * metrics["loss"] * metrics.get("tokens_per_word", 1.0)
                        for name, metrics in scored.items()) / total
        blended["word_perplexity"] = _exp(word_loss)
    blended["windows"] = sum(int(metrics.get("windows", 0)) for metrics in per_source.values() if metrics)
    blended["sources"] = per_source
    return blended


def _exp(loss: float) -> float:
    return math.exp(min(loss, 700.0))


def flat_source_metrics(metrics: dict, prefix: str = "val_") -> dict:
    """history.json's per-source columns: val_loss/NAME, ... (TensorBoard: val/loss/NAME)."""
    return {f"{prefix}{key}/{name}": value for name, source in (metrics.get("sources") or {}).items()
            for key, value in (source or {}).items() if key != "windows"}


def sources_line(metrics: dict) -> str:
    """"NAME loss 3.1 perplexity 22.2 ...; NAME2 ..." for a progress note and the summary."""
    return "; ".join(f"{name}: {metrics_line(source, accuracy_digits=3)}"
                     for name, source in (metrics.get("sources") or {}).items() if source and source.get("windows"))


class BlendedSample:
    """ValidationSample's interface over a blend: each source's first `windows` val windows,
    scored apart; score() -> blended_metrics."""

    def __init__(self, sources, final_logits_fn, windows: int):
        self.weights = {source.name: source.weight for source in sources}
        self.samples = {source.name: ValidationSample(source.data_dir, source.manifest, final_logits_fn, windows)
                        for source in sources
                        if source.manifest.splits.get("val") is not None and source.manifest.splits["val"].windows}

    @property
    def windows(self) -> int:
        return sum(sample.windows for sample in self.samples.values())

    def score(self) -> dict:
        return blended_metrics({name: sample.score() for name, sample in self.samples.items()}, self.weights)
