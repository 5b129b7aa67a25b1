"""Weighted blends of datasets: several compatible DATA_DIRs read as one training stream.

A weight is the share of the WINDOWS drawn (of the trained targets' windows), not of documents
or tokens: a source of weight 0.3 gives 30% of every batch's windows, whatever its size; a small
source repeats (its own epochs are counted), a large one is partly read per blend epoch.

The stream is built in periods of P global batches (P x B windows, ~shuffle_buffer windows):
  - each period takes exactly K_i windows from source i, K = `period_allocation` (largest
    remainder of w_i x P x B, so the shares over any number of whole periods are the weights to
    within half a window per period);
  - source i is its own training reader (make_epochs_dataset: its own seed, its own epochs, each
    reshuffled) read as ONE continuous window stream across its epochs (span records: each
    epoch runs on into the next, ReaderConfig.keep_last_batch, so no window is dropped however the
    epoch sizes vary with the "all" offset), cut into elements of K_i windows: the
    n-th is what period n takes, so zip() of the sources yields one period;
  - the period's windows are interleaved by a fixed order (`period_order`: window j of source i
    sits at (j + 1/2) / K_i of the period), so EVERY batch holds each source's share to within
    one window, then cut into per-replica batches.
The stream depends on the global batch, never on the replica count: 1 replica x 2b and
2 replicas x b read the same windows. Everything is a pure function of (seed, period index):
a resumed run starts at period step // P with each source at window period x K_i of its stream
(`SourceEpochs.locate`: its epoch, the piece and the window in it), and skips the batches of the
period already trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from nextword.errors import SettingsError
from nextword.tfrecords.manifest import SPAN_LAYOUTS, Manifest, load_manifest
from nextword.tfrecords.reader import ReaderConfig, _finish, epoch_plan, epoch_selection, make_epochs_dataset
from nextword.tfrecords.spans import selection_period


@dataclass(frozen=True)
class BlendSource:
    """One dataset of a blend: where it is, its manifest, its share of the windows (normalised)."""

    name: str
    data_dir: str
    manifest: Manifest
    weight: float

    def record(self) -> dict:
        """What run.json, summary.json and the export's card record of this source."""
        return {"name": self.name, "data_dir": self.data_dir, "fingerprint": self.manifest.fingerprint,
                "weight": self.weight}


def load_sources(data_dirs: tuple[str, ...], weights: tuple[float, ...]) -> list[BlendSource]:
    """The blend's sources (manifests loaded, compatibility checked); names are the DATA_DIRs'
    last path components, with the position appended where two are alike."""
    names = [data_dir.rstrip("/").rsplit("/", 1)[-1] or data_dir for data_dir in data_dirs]
    names = [f"{name}#{index}" if names.count(name) > 1 else name for index, name in enumerate(names)]
    sources = [BlendSource(name, data_dir, load_manifest(data_dir), weight)
               for name, data_dir, weight in zip(names, data_dirs, weights)]
    check_compatible(sources)
    return sources


def _record_kind(manifest: Manifest) -> str:
    return "span records" if manifest.layout in SPAN_LAYOUTS else "one window a record"


# (what is compared, how it reads in a message, what to do): every field the model or the reader
# needs equal. Ids must name the same words (tokenizer, vocabulary), windows must have the same
# shape, and under --objective all a "windows" dataset weights each token ~C times an epoch where
# span records weight it once, so a blended weight would not be a share of targets.
COMPATIBILITY = (
    (lambda m: m.tokenizer, "tokenizer", "ingest the other datasets with `--vocab-from` the first one"),
    (lambda m: m.vocab_sha256, "vocabulary sha256", "ingest the other datasets with `--vocab-from` the first one"),
    (lambda m: m.context_length, "context length", "ingest them with the same --context"),
    (lambda m: (m.pad_id, m.unk_id), "pad and unk ids", "ingest them with the same nextword version"),
    (_record_kind, "record layout", "ingest them with the same --layout (packed or spans, or windows for both)"),
)


def check_compatible(sources: list[BlendSource]) -> None:
    """Refuse a blend whose datasets differ in anything the model or reader needs equal, naming
    the field, both values and what to do."""
    first = sources[0]
    for other in sources[1:]:
        for read, label, remedy in COMPATIBILITY:
            if read(first.manifest) != read(other.manifest):
                raise SettingsError(
                    f"cannot blend {other.data_dir} with {first.data_dir}: their {label} differs "
                    f"({_shown(read(other.manifest))} vs {_shown(read(first.manifest))})",
                    hint=f"blended datasets must share tokenizer, vocabulary, context and layout: {remedy}",
                )


def _shown(value) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def blend_fingerprint(sources: list[BlendSource]) -> str:
    """What run.json records as the dataset of a blended run: the sources' fingerprints and weights."""
    identity = [[source.manifest.fingerprint, round(source.weight, 12)] for source in sources]
    return "blend-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def period_allocation(weights: tuple[float, ...], period_windows: int) -> tuple[int, ...]:
    """K_i windows of each source per period: floor(w_i x period_windows), the windows left over
    going to the largest remainders (ties: the earlier source). Sums to period_windows."""
    exact = [weight * period_windows for weight in weights]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[:period_windows - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def period_order(allocation: tuple[int, ...]) -> np.ndarray:
    """int32[sum K]: the period's positions -> index into the sources' windows laid end to end.
    Window j of source i sits at (j + 1/2) / K_i of the period, so any run of n consecutive
    positions holds n x K_i / sum(K) of source i's windows, to within one."""
    keys = np.concatenate([(np.arange(count) + 0.5) / count for count in allocation if count])
    sources = np.concatenate([np.full(count, i) for i, count in enumerate(allocation) if count])
    return np.lexsort((sources, keys)).astype(np.int32)


def period_batches(global_batch: int, shuffle_buffer: int) -> int:
    """P: global batches per period, ~shuffle_buffer windows (the interleave's granularity)."""
    return max(1, -(-shuffle_buffer // global_batch))


# "windows" layout: a source's reader yields pieces that leave at most 1/PIECES_PER_EPOCH of an epoch over
# (an epoch drops its last partial piece, as a training epoch drops its last partial batch): under 0.4%.
PIECES_PER_EPOCH = 256


def piece_windows(share: int, epoch_windows: int, layout: str) -> int:
    """x: windows a source's reader yields at a time. Span records: the share of a period (the reader
    keeps each epoch's last partial piece, so nothing is dropped and the re-cut handles ~1 element a
    period). "windows" (every epoch the same size): the share if an epoch drops under 1/256 of its
    windows to it, else the largest piece that does."""
    if layout in SPAN_LAYOUTS:
        return share
    smallest = max(1, min(share, epoch_windows // PIECES_PER_EPOCH))
    for parts in range(max(1, -(-epoch_windows // share)), PIECES_PER_EPOCH + 1):
        piece = min(share, epoch_windows // parts)
        if piece <= smallest:
            break
        if epoch_windows % piece * PIECES_PER_EPOCH <= epoch_windows:
            return piece
    return smallest


def source_config(config: ReaderConfig, index: int, piece: int) -> ReaderConfig:
    """Source `index`'s reader: pieces of `piece` windows, and its own seed (two sources, or one
    dataset given twice, never read in lockstep). Source 0 keeps the run's seed."""
    return dataclasses.replace(config, batch_size=piece, seed=config.seed + 1_000 * index, keep_last_batch=True)


class SourceEpochs:
    """One source's reader as a continuous window stream across its own epochs: its pieces in
    each epoch (cached by what decides it: the "all" offset, with one pipeline), and where its
    n-th window lies."""

    def __init__(self, source: BlendSource, config: ReaderConfig, share: int):
        self.source, self.config, self.share = source, config, share  # config.batch_size: the piece
        self._plans: dict[int, tuple[int, int]] = {}
        if self.windows(0) < 1:
            raise SettingsError(f"{source.data_dir}'s train split holds no windows to blend",
                                hint="ingest more text into it, or leave it out of the blend")

    @property
    def piece(self) -> int:
        return self.config.batch_size

    def batches(self, epoch: int) -> int:
        """Pieces in the source's epoch `epoch` (the last may be partial on span records)."""
        return self._plan(epoch)[0]

    def windows(self, epoch: int) -> int:
        """Windows the source's epoch `epoch` yields."""
        return self._plan(epoch)[1]

    def _plan(self, epoch: int) -> tuple[int, int]:
        key = epoch_selection(self.source.manifest, self.config, epoch)[0]
        if key not in self._plans:
            plan = epoch_plan(self.source.data_dir, self.source.manifest, "train", self.config, epoch)
            kept = plan.windows if self.source.manifest.layout in SPAN_LAYOUTS else plan.batches * self.piece
            self._plans[key] = (plan.batches, kept)
        return self._plans[key]

    def locate(self, window: int) -> tuple[int, int, int]:
        """(epoch, piece within it, window within the piece) of the source's window-th window."""
        epoch = 0
        epochs = _cycle_epochs(self.source.manifest, self.config)
        cycle = sum(self.windows(e) for e in range(epochs))
        if window >= cycle:  # every `epochs` epochs the sizes recur: jump whole cycles
            epoch, window = window // cycle * epochs, window % cycle
        while window >= self.windows(epoch):
            window -= self.windows(epoch)
            epoch += 1
        return epoch, window // self.piece, window % self.piece

    def stream(self, first_window: int, end_window: int, with_source: int | None = None) -> tf.data.Dataset:
        """Elements of `share` windows from window first_window (a multiple of share) on, up to
        at least end_window: the source's chained epochs as one stream cut into shares."""
        epoch, element, within = self.locate(first_window)
        last_epoch = self.locate(max(first_window, end_window - 1))[0]
        epochs = range(epoch, last_epoch + 1)
        if self.source.manifest.layout in SPAN_LAYOUTS:  # cut into shares by the reader, once (keep_last_batch)
            shares = make_epochs_dataset(self.source.data_dir, "train", self.config, epochs, manifest=self.source.manifest,
                                         skip_windows=element * self.piece + within)
            return shares if with_source is None else shares.map(_tagged(with_source))
        pieces = make_epochs_dataset(self.source.data_dir, "train", self.config, epochs, skip_batches=element,
                                     manifest=self.source.manifest)
        if with_source is not None:
            pieces = pieces.map(_tagged(with_source))
        if within:  # a resume inside a piece: drop the windows of it already drawn
            pieces = pieces.take(1).map(lambda *parts: tuple(part[within:] for part in parts)).concatenate(pieces.skip(1))
        if self.piece == self.share and not within:
            return pieces
        # A copy of each piece first: rebatch() over the slices the reader's own rebatch yields logs
        # "Tensor RefCount not reliable if buf_ points to a SubBuffer" (TF 2.21) once per piece.
        copied = pieces.map(lambda *parts: tuple(tf.concat([part, part[:0]], 0) for part in parts))
        return copied.rebatch(self.share)


def _tagged(source_index: int):
    """(context, targets, weights) -> the same + int32[n] source_index (benchmarks and tests)."""
    return lambda context, targets, weights: (context, targets, weights, tf.fill(tf.shape(context)[:1], source_index))


def _cycle_epochs(manifest: Manifest, config: ReaderConfig) -> int:
    """Epochs after which a source's epoch sizes repeat: the "all" offsets' period, else 1."""
    if config.objective == "last" or manifest.layout not in SPAN_LAYOUTS:
        return 1
    return selection_period(manifest.context_length, manifest.stride)


def make_blend_dataset(sources: list[BlendSource], config: ReaderConfig, allocation: tuple[int, ...],
                       start_period: int, end_period: int, skip_batches: int = 0,
                       source_epochs: list[SourceEpochs] | None = None, with_source: bool = False) -> tf.data.Dataset:
    """Batches of the blend from period start_period (skipping skip_batches per-replica batches of
    it) to end_period: (context int32[b, C], targets, weights) with b = config.batch_size, the
    per-replica batch; with_source adds int32[b], the source of each window (benchmarks, tests).

    One input pipeline (every replica's batches come from this one stream, in order)."""
    source_epochs = source_epochs or blend_source_epochs(sources, config, allocation)
    streams = [epochs.stream(start_period * share, end_period * share, i if with_source else None)
               for i, (epochs, share) in enumerate(zip(source_epochs, allocation))]
    # Where each source's windows go in the period: one dynamic_stitch per tensor (no concat, then gather).
    positions = np.argsort(period_order(allocation)).astype(np.int32)
    bounds = np.cumsum((0,) + tuple(allocation))
    destinations = [tf.constant(positions[bounds[i]:bounds[i + 1]]) for i in range(len(allocation))]
    batch = config.batch_size

    def interleave(*parts):
        merged = [tf.dynamic_stitch(destinations, [part[n] for part in parts]) for n in range(len(parts[0]))]
        return tuple(tf.reshape(part, [-1, batch] + part.shape[1:].as_list()) for part in merged)

    periods = tf.data.Dataset.zip(tuple(streams)).take(end_period - start_period).map(interleave)
    return _finish(periods.flat_map(lambda *parts: tf.data.Dataset.from_tensor_slices(parts)).skip(skip_batches))


def blend_source_epochs(sources: list[BlendSource], config: ReaderConfig, allocation: tuple[int, ...]) -> list[SourceEpochs]:
    """Each source's SourceEpochs for the run's reader config and period allocation."""
    result = []
    for i, (source, share) in enumerate(zip(sources, allocation)):
        if share < 1:
            raise SettingsError(f"{source.data_dir}'s weight ({source.weight:.3g}) gives it no window of a period of "
                                f"{sum(allocation)}", hint="give it a larger weight, or leave it out of the blend")
        windows = epoch_plan(source.data_dir, source.manifest, "train", source_config(config, i, 1), 0).windows
        piece = piece_windows(share, windows, source.manifest.layout)
        result.append(SourceEpochs(source, source_config(config, i, piece), share))
    return result


def drawn_windows(allocation: tuple[int, ...], global_batch: int, steps: int) -> list[int]:
    """Windows drawn from each source in the first `steps` global batches."""
    period = sum(allocation) // global_batch
    whole, rest = divmod(steps, period)
    order = period_order(allocation)[:rest * global_batch]
    bounds = np.cumsum((0,) + allocation)
    return [whole * count + int(((order >= bounds[i]) & (order < bounds[i + 1])).sum())
            for i, count in enumerate(allocation)]
