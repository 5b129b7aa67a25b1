"""How many steps a run takes and which epochs' batches feed them: steps per epoch (from the
reader's epoch plan, cached), the planned total, and one iterator chaining several epochs."""

from __future__ import annotations

import tensorflow as tf

from nextword.errors import SettingsError
from nextword.model.settings import TrainSettings
from nextword.model.strategy import is_multiworker
from nextword.tfrecords.reader import ReaderConfig, epoch_plan, epoch_selection, make_epochs_dataset

# Epochs read through one iterator (make_epochs_dataset): its table holds epochs x files names.
CHAIN_TABLE_ENTRIES, CHAIN_EPOCHS = 100_000, 1_000


class StepPlan:
    def __init__(self, settings: TrainSettings, manifest, strategy: tf.distribute.Strategy, reader_config: ReaderConfig,
                 global_batch: int):
        self.settings, self.manifest, self.strategy, self.reader_config = settings, manifest, strategy, reader_config
        self.pipelines = strategy.extended._num_workers if is_multiworker(strategy) else 1  # noqa: SLF001
        self.replicas_per_pipeline = strategy.num_replicas_in_sync // self.pipelines
        self._epoch_steps: dict[tuple, int] = {}
        if self.steps_per_epoch(0) < 1:  # with objective "all" on spans, epochs differ slightly
            raise SettingsError(
                f"the train split ({manifest.splits['train'].windows} windows) holds no full batch of {global_batch}",
                hint="pass a smaller --batch-size or ingest more text",
            )
        epoch_steps = sum(self.steps_per_epoch(epoch) for epoch in range(settings.epochs))
        # the planned number of steps, and which of --epochs / --max-steps set it
        self.target_steps = min(epoch_steps, settings.max_steps or epoch_steps)
        self.planned_by = "epochs" if self.target_steps == epoch_steps else "max_steps"

    def steps_per_epoch(self, epoch: int) -> int:
        # One pipeline reads every shard, so an epoch's size depends on its "all" offset alone (at
        # most `context` values): --epochs 100000 costs lookups, not 100000 plans (~1 ms each).
        key = ("offset", epoch_selection(self.manifest, self.reader_config, epoch)[0]) if self.pipelines == 1 \
            else ("epoch", epoch)
        if key not in self._epoch_steps:
            plan = epoch_plan(
                self.settings.data_dir, self.manifest, "train", self.reader_config, epoch, self.pipelines, 0,
                self.replicas_per_pipeline,
            )
            self._epoch_steps[key] = plan.batches // self.replicas_per_pipeline
        return self._epoch_steps[key]

    def chain_iterator(self, step: int, epoch: int, epoch_step: int):
        """(iterator over epochs [epoch, end) from epoch_step on, end): one iterator for every
        epoch up to the one that holds the target step, within the chain's table size."""
        files = len(self.manifest.split("train").shards)
        longest = max(1, min(CHAIN_EPOCHS, CHAIN_TABLE_ENTRIES // max(1, files)))
        end, start_of_end = epoch + 1, step - epoch_step + self.steps_per_epoch(epoch)
        while end - epoch < longest and start_of_end < self.target_steps:
            start_of_end += self.steps_per_epoch(end)
            end += 1
        skip = epoch_step * self.replicas_per_pipeline

        def dataset_fn(input_context):
            return make_epochs_dataset(
                self.settings.data_dir, "train", self.reader_config, range(epoch, end),
                input_context=input_context, skip_batches=skip, manifest=self.manifest,
            )

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn)), end


class BlendStepPlan:
    """StepPlan's interface for a weighted blend (tfrecords/blend.py): a blend epoch is as many
    global batches as the sources' train splits hold windows together (one epoch of each, whatever
    the weights), so --epochs keeps meaning "about the data's size"; the sources' own epochs are
    counted apart (a small, heavily weighted source repeats within one blend epoch)."""

    def __init__(self, settings: TrainSettings, sources, strategy: tf.distribute.Strategy, reader_config: ReaderConfig,
                 global_batch: int):
        from nextword.tfrecords.blend import blend_source_epochs, period_allocation, period_batches

        if is_multiworker(strategy):
            raise SettingsError("a blend of several DATA_DIRs trains on one machine (one input pipeline) in this version",
                                hint="train the blend with --strategy mirrored (or auto without TF_CONFIG)")
        self.settings, self.sources, self.strategy, self.reader_config = settings, sources, strategy, reader_config
        self.pipelines, self.replicas_per_pipeline = 1, strategy.num_replicas_in_sync
        self.global_batch = global_batch
        self.period_batches = period_batches(global_batch, settings.shuffle_buffer)
        self.allocation = period_allocation(tuple(source.weight for source in sources), self.period_batches * global_batch)
        self.source_epochs = blend_source_epochs(sources, reader_config, self.allocation)
        epoch_windows = sum(epochs.windows(0) for epochs in self.source_epochs)
        self.epoch_steps = epoch_windows // global_batch
        if self.epoch_steps < 1:
            raise SettingsError(f"the blend's train splits ({epoch_windows} windows) hold no full batch of {global_batch}",
                                hint="pass a smaller --batch-size or ingest more text")
        epoch_steps = self.epoch_steps * settings.epochs
        self.target_steps = min(epoch_steps, settings.max_steps or epoch_steps)
        self.planned_by = "epochs" if self.target_steps == epoch_steps else "max_steps"

    def steps_per_epoch(self, epoch: int) -> int:
        return self.epoch_steps

    def chain_iterator(self, step: int, epoch: int, epoch_step: int):
        """(iterator from global step `step` to the target, the blend epoch past the target): one
        iterator for the whole run (the sources chain their own epochs inside it)."""
        from nextword.tfrecords.blend import make_blend_dataset

        start_period, within = divmod(step, self.period_batches)
        end_period = -(-self.target_steps // self.period_batches)
        skip = within * self.replicas_per_pipeline

        def dataset_fn(input_context):
            return make_blend_dataset(self.sources, self.reader_config, self.allocation, start_period, end_period,
                                      skip, self.source_epochs)

        end_epoch = -(-self.target_steps // self.epoch_steps) + 1
        return iter(self.strategy.distribute_datasets_from_function(dataset_fn)), end_epoch

    def source_progress(self, step: int) -> list[dict]:
        """Per source at global step `step`: windows drawn, their share, and epochs of it completed."""
        from nextword.tfrecords.blend import drawn_windows

        drawn = drawn_windows(self.allocation, self.global_batch, step)
        total = max(1, sum(drawn))
        progress = []
        for source, windows, epochs in zip(self.sources, drawn, self.source_epochs):
            epoch, piece, within = epochs.locate(windows)
            progress.append({**source.record(), "windows_drawn": windows, "share_drawn": round(windows / total, 6),
                             "epochs_completed": epoch,
                             "epoch_fraction": round((piece * epochs.piece + within) / max(1, epochs.windows(epoch)), 4)})
        return progress
