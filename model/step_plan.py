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
