"""`nextword train`: the pure core. Settings in, RUN_DIR out, a summary dict back.

Order matters: logical CPU devices and op determinism are configured before TensorFlow
runs its first op; the strategy before the model; the model inside `strategy.scope()`.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time

import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError, SettingsError
from model import checkpointing
from model.history import History, plot_history
from model.loop import Trainer
from model.metrics import evaluate_split, metrics_line
from model.settings import TrainSettings
from model.strategy import (configure_devices, fail_fast_on_lost_worker, is_chief, is_multiworker, make_strategy,
                            use_mixed_precision)
from model.progress import TrainingProgress
from tfrecords.manifest import load_manifest
from tfrecords.reader import ReaderConfig, epoch_plan, epoch_selection, make_epochs_dataset

SUMMARY_FILE = "summary.json"
LOG_EVERY_STEPS = 50
# Validation reads every val window once, forward only: ~1/3 of a training window's time (default
# recipe, embedded corpus, 2 cores: 0.65 vs 1.90 ms), so validating after VALIDATE_EVERY val
# splits' worth of trained windows keeps it near 1 / (3 * VALIDATE_EVERY) of the training time.
# With 1 it took ~25% of a 60 s run there (bench/tune_defaults.py candidate 1: 182 steps, not 288).
VALIDATE_EVERY = 4
# Epochs read through one iterator (make_epochs_dataset): its table holds epochs x files names.
CHAIN_TABLE_ENTRIES, CHAIN_EPOCHS = 100_000, 1_000


class StopSignal:
    """SIGINT sets a flag; the loop saves a checkpoint and leaves at the next call boundary."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.interrupted = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def weights_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for variable in model.trainable_variables:
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()


def run_training(settings: TrainSettings) -> dict:
    configure_devices(settings.devices, settings.allow_cpu)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    manifest = load_manifest(settings.data_dir)
    strategy = make_strategy(settings.strategy, settings.devices)
    with fail_fast_on_lost_worker(strategy, settings.out):
        session = TrainingSession(settings, manifest, strategy)
    with StopSignal() as stop, fail_fast_on_lost_worker(strategy, settings.out, on_failure=session._cleanup):
        return session.run(stop)


class TrainingSession:
    def __init__(self, settings: TrainSettings, manifest, strategy: tf.distribute.Strategy):
        self.settings, self.manifest, self.strategy = settings, manifest, strategy
        self.chief = is_chief(strategy)
        self.model_config = settings.model_config(manifest.vocab_size, manifest.context_length)
        self.global_batch = settings.training_choice("batch_size")
        replicas = strategy.num_replicas_in_sync
        if self.global_batch % replicas:
            raise SettingsError(
                f"--batch-size {self.global_batch} does not split over {replicas} replicas",
                hint=f"pass a multiple of {replicas}",
            )
        self.mixed_precision = use_mixed_precision(settings.mixed_precision)
        latest = self._check_run_dir()
        self.trainer = Trainer(
            strategy, self.model_config, settings.training_choice("optimizer"),
            settings.training_choice("learning_rate"), self.mixed_precision, settings.seed,
        )
        self.position = checkpointing.TrainingPosition()
        checkpoint = checkpointing.make_checkpoint(self.trainer.model, self.trainer.optimizer, self.position)
        self.checkpoint_dir = checkpointing.checkpoint_dir(settings.out, self.chief)
        self.manager = tf.train.CheckpointManager(checkpoint, self.checkpoint_dir, max_to_keep=3)
        if latest:
            checkpointing.restore_checkpoint(checkpoint, latest)
        if self.chief:
            checkpointing.write_run_file(
                settings.out, settings.to_dict(), self.model_config, settings.data_dir, manifest.fingerprint
            )
        self.history = History(settings.out, self.chief, resume_step=self.position.as_dict()["step"])
        self.reader_config = ReaderConfig(
            batch_size=self.global_batch // replicas, objective=self.model_config.objective,
            seed=settings.seed, shuffle_buffer=settings.shuffle_buffer,
        )
        self.pipelines = strategy.extended._num_workers if is_multiworker(strategy) else 1  # noqa: SLF001
        self.replicas_per_pipeline = replicas // self.pipelines
        self._agree = tf.function(self._agree_fn) if is_multiworker(strategy) else None
        self._epoch_steps: dict[tuple, int] = {}
        self.validated_at_step = self._last_validation_before(int(self.position.epoch.numpy()))

    def _check_run_dir(self) -> str | None:
        out = self.settings.out
        if self.chief:  # a file, under a file, or unwritable: said before the model is built
            storage.prepare_out_dir(out)
        latest = checkpointing.latest_checkpoint(out)
        if latest and self.settings.resume is False:
            raise SettingsError(
                f"{out} already holds checkpoints and --no-resume was given",
                hint="train into a new --out, remove the old RUN_DIR, or drop --no-resume to continue it",
            )
        if storage.exists(storage.join(out, checkpointing.RUN_FILE)):
            checkpointing.check_resumable(out, self.model_config, self.manifest.fingerprint)
        return latest

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

    def _agree_fn(self, flag):
        # Every worker must stop at the same step, or the others wait forever in all-reduce.
        per_replica = self.strategy.run(lambda value: tf.identity(value), args=(flag,))
        return self.strategy.reduce("sum", per_replica, axis=None)  # ReduceOp has no MAX; any flag > 0

    def agree(self, stop: bool) -> bool:
        if self._agree is None:
            return stop
        return bool(self._agree(tf.constant(1 if stop else 0, tf.int32)) > 0)

    def chain_iterator(self, epoch: int, epoch_step: int, target_steps: int):
        """(iterator over epochs [epoch, end) from epoch_step on, end): one iterator for every
        epoch up to the one that holds target_steps, within the chain's table size."""
        files = len(self.manifest.split("train").shards)
        longest = max(1, min(CHAIN_EPOCHS, CHAIN_TABLE_ENTRIES // max(1, files)))
        end, start_of_end = epoch + 1, self.position.as_dict()["step"] - epoch_step + self.steps_per_epoch(epoch)
        while end - epoch < longest and start_of_end < target_steps:
            start_of_end += self.steps_per_epoch(end)
            end += 1
        skip = epoch_step * self.replicas_per_pipeline

        def dataset_fn(input_context):
            return make_epochs_dataset(
                self.settings.data_dir, "train", self.reader_config, range(epoch, end),
                input_context=input_context, skip_batches=skip, manifest=self.manifest,
            )

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn)), end

    def check_workers_resumed_alike(self) -> None:
        """Every worker must restore the same checkpoint. A RUN_DIR that is not one shared location
        (each machine its own local path) would leave the others at step 0 beside the chief."""
        if self._agree is None:
            return
        step, replicas = float(self.position.as_dict()["step"]), self.strategy.num_replicas_in_sync
        total = float(self._agree(tf.constant(step, tf.float64)))
        squares = float(self._agree(tf.constant(step * step, tf.float64)))  # equal sums of x and x² <=> all equal
        if total != replicas * step or squares != replicas * step * step:
            raise ArtifactError(
                f"the workers resumed from different checkpoints (this worker: step {int(step)}, "
                f"the cluster's mean: step {total / replicas:g})",
                hint="give every worker the same DATA_DIR and RUN_DIR on shared storage (gs://, s3://, NFS): "
                "only the chief writes checkpoints and every worker restores from RUN_DIR/checkpoints",
            )

    def run(self, stop: StopSignal) -> dict:
        settings = self.settings
        self.check_workers_resumed_alike()
        steps_per_epoch = self.steps_per_epoch(0)  # with objective "all" on spans, epochs differ slightly
        if steps_per_epoch < 1:
            raise SettingsError(
                f"the train split ({self.manifest.splits['train'].windows} windows) holds no full batch of {self.global_batch}",
                hint="pass a smaller --batch-size or ingest more text",
            )
        epoch_steps = sum(self.steps_per_epoch(epoch) for epoch in range(settings.epochs))
        target_steps = min(epoch_steps, settings.max_steps or epoch_steps)
        stopped_by = "epochs" if target_steps == epoch_steps else "max_steps"
        start_step = self.position.as_dict()["step"]
        # Restored from the checkpoint, so equal on every worker: they all decide alike.
        self.seconds_before = float(self.position.train_seconds.numpy())
        budget_spent = settings.time_budget is not None and self.seconds_before >= settings.time_budget
        if start_step >= target_steps or budget_spent:
            return self._already_complete("time_budget" if budget_spent and start_step < target_steps else stopped_by)
        self.started = started = time.monotonic()
        progress = TrainingProgress(enabled=self.chief and settings.progress, total=target_steps, done=start_step,
                                    notes=self.chief, time_budget=None if settings.time_budget is None
                                    else settings.time_budget - self.seconds_before)  # the bar: this session's share
        with progress:
            if start_step:
                progress.note(f"resuming from step {start_step:,} (epoch {int(self.position.epoch.numpy())}"
                              + (f"; {self.seconds_before:.1f} s of the {settings.time_budget:g} s budget spent)"
                                 if settings.time_budget is not None else ")"))
            stopped_by = self._train(stop, target_steps, started, progress) or stopped_by
        train_seconds = time.monotonic() - started
        self.position.train_seconds.assign(self.seconds_before + train_seconds)  # validation and export excluded
        if stopped_by != "interrupt":
            self._validate_final_weights(progress)
        self.manager.save(checkpoint_number=self.position.as_dict()["step"])
        summary = self._summary(stopped_by, start_step, train_seconds)
        self.history.save(summary)
        if self.chief:
            storage.write_atomic(storage.join(settings.out, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
            if self.history.record["steps"] or self.history.record["epochs"]:
                plot_history(settings.out)
        if settings.export and stopped_by != "interrupt":
            self._export(summary)
        self._cleanup()
        return summary

    def _already_complete(self, stopped_by: str) -> dict:
        """A rerun of a finished run: nothing to train, save or validate again; the export is
        written only if it is missing (the first run had --no-export)."""
        summary = self._summary(stopped_by, self.position.as_dict()["step"], 0.0, already_complete=True)
        self.history.save(summary)
        if self.chief:
            storage.write_atomic(storage.join(self.settings.out, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
        if self.settings.export and not storage.exists(storage.join(self.settings.out, "export", "card.json")):
            self._export(summary)
        self._cleanup()
        return summary

    def _save(self) -> None:
        """A checkpoint of this moment, with the seconds trained so far over every session."""
        self.position.train_seconds.assign(self.seconds_before + time.monotonic() - self.started)
        self.manager.save(checkpoint_number=self.position.as_dict()["step"])

    def _train(self, stop, target_steps, started, progress) -> str | None:
        settings, position = self.settings, self.position
        window_sum, loss_sum, weight_sum, since = 0, 0.0, 0.0, time.monotonic()
        iterator, chain_end = None, 0
        while position.as_dict()["step"] < target_steps:
            epoch, epoch_step = int(position.epoch.numpy()), int(position.epoch_step.numpy())
            steps_per_epoch = self.steps_per_epoch(epoch)
            if epoch >= chain_end:
                iterator, chain_end = self.chain_iterator(epoch, epoch_step, target_steps)
            while epoch_step < steps_per_epoch and position.as_dict()["step"] < target_steps:
                step = position.as_dict()["step"]
                steps = min(
                    settings.steps_per_call, steps_per_epoch - epoch_step, target_steps - step,
                    settings.checkpoint_every - step % settings.checkpoint_every,
                )
                try:
                    loss, weight = self.trainer.train_steps(iterator, steps)
                except (tf.errors.OutOfRangeError, tf.errors.FailedPreconditionError) as error:
                    # FailedPrecondition: the reader's per-epoch assert_cardinality (any other is re-raised)
                    if isinstance(error, tf.errors.FailedPreconditionError) and "expected to contain" not in str(error):
                        raise
                    raise ArtifactError(
                        f"epoch {epoch} of the train split ended after {epoch_step} of {steps_per_epoch} steps: "
                        "the shards hold fewer windows than dataset.json says",
                        hint="the dataset was modified after ingest; run `nextword verify` or re-ingest",
                    ) from None
                epoch_step += steps
                position.step.assign_add(steps)
                position.epoch_step.assign(epoch_step)
                loss_sum, weight_sum, window_sum = loss_sum + float(loss), weight_sum + float(weight), window_sum + steps * self.global_batch
                step = position.as_dict()["step"]
                elapsed = time.monotonic() - since
                progress.update(step, epoch, float(loss) / max(float(weight), 1.0), window_sum / max(elapsed, 1e-9))
                if step % LOG_EVERY_STEPS < steps or epoch_step == steps_per_epoch:
                    self.history.log_steps({
                        "step": step, "epoch": epoch, "loss": loss_sum / max(weight_sum, 1.0),
                        "windows_per_second": window_sum / max(elapsed, 1e-9),
                    })
                    window_sum, loss_sum, weight_sum, since = 0, 0.0, 0.0, time.monotonic()
                if step % settings.checkpoint_every == 0:
                    self._save()
                    self.history.save()
                # --time-budget counts the seconds of every session (like --max-steps their steps)
                over_budget = (settings.time_budget is not None
                               and self.seconds_before + time.monotonic() - started >= settings.time_budget)
                if self.agree(stop.interrupted or over_budget):
                    return "interrupt" if stop.interrupted else "time_budget"
            if epoch_step >= steps_per_epoch:
                self._end_epoch(epoch, progress)
        return None

    def _end_epoch(self, epoch: int, progress) -> None:
        self.position.epoch.assign(epoch + 1)
        self.position.epoch_step.assign(0)
        if self._validation_due():
            self.validated_at_step = self.position.as_dict()["step"]
            self._log_validation(f"epoch {epoch}", epoch, progress)
            self._save()
            self.history.save()

    def _last_validation_before(self, epoch: int) -> int:
        """The step of the last epoch-end validation before `epoch` (0: none), replayed from the
        schedule of _validation_due: the same on every worker (the history is the chief's alone)
        and for a resumed run as for an uninterrupted one."""
        step = validated = 0
        for past in range(epoch):
            step += self.steps_per_epoch(past)
            if self._worth_a_validation(step - validated):
                validated = step
        return validated

    def _worth_a_validation(self, steps: int) -> bool:
        val = self.manifest.splits.get("val")
        return steps * self.global_batch >= VALIDATE_EVERY * (val.windows if val is not None else 0)

    def _validation_due(self) -> bool:
        """At an epoch's end: once VALIDATE_EVERY times as many windows were trained since the last
        validation as the val split holds. One-pass epochs of a small corpus are far shorter than a
        validation (objective all on the embedded corpus: ~14 steps), which would otherwise spend
        more time validating than training."""
        return self._worth_a_validation(self.position.as_dict()["step"] - self.validated_at_step)

    def _validate_final_weights(self, progress) -> None:
        """A run reports the weights it ends with: stopped mid-epoch (time budget, max steps), or
        at the end of an epoch that was not validated (see _validation_due)."""
        step = self.position.as_dict()["step"]
        if self.validated_at_step == step:  # the same on every worker (the history is the chief's alone)
            return
        epoch = int(self.position.epoch.numpy())
        partial = int(self.position.epoch_step.numpy()) > 0 or epoch == 0
        if partial:
            self._log_validation(f"final (step {step}, epoch {epoch} partial)", epoch, progress, partial=True)
        else:
            self._log_validation(f"epoch {epoch - 1}", epoch - 1, progress)

    def _log_validation(self, label: str, epoch: int, progress, partial: bool = False) -> None:
        # Every worker validates (the val split is spread over all replicas); the chief logs.
        if not ("val" in self.manifest.splits and self.manifest.splits["val"].windows):
            return
        metrics = self.validate()
        self.validated_at_step = self.position.as_dict()["step"]
        if not self.chief:
            return
        train_loss = self.history.record["steps"][-1]["loss"] if self.history.record["steps"] else None
        row = {"epoch": epoch, "step": self.position.as_dict()["step"], "train_loss": train_loss}
        if partial:
            row["partial_epoch"] = True
        row.update({f"val_{key}": value for key, value in metrics.items() if key != "windows"})
        self.history.log_epoch(row)
        progress.note(f"{label}: val {metrics_line(metrics, accuracy_digits=3)}")

    def validate(self) -> dict:
        """Every worker's replicas score their part of the val split; all get the same totals."""
        totals = evaluate_split(self.strategy, self.trainer.final_word_logits, self.settings.data_dir, "val",
                                self.manifest, self.pipelines)
        expected = self.manifest.splits["val"].windows
        if int(totals.rows) != expected:
            raise ArtifactError(f"the val split read {int(totals.rows)} windows, dataset.json says {expected}",
                                hint="the dataset was modified after ingest; re-run `nextword ingest`")
        return totals.result(self.manifest, "val")

    def _summary(self, stopped_by: str, start_step: int, train_seconds: float, already_complete: bool = False) -> dict:
        position = self.position.as_dict()
        trained = (position["step"] - start_step) * self.global_batch
        last_epoch = self.history.record["epochs"][-1] if self.history.record["epochs"] else {}
        last_steps = self.history.record["steps"][-1] if self.history.record["steps"] else {}
        return {
            "stopped_by": stopped_by,
            "already_complete": already_complete,  # a rerun that found nothing left to train
            "resumed_from_step": start_step,
            "steps": position["step"],
            "epochs_completed": position["epoch"],
            "windows_trained_this_session": trained,
            "train_seconds_this_session": round(train_seconds, 3),
            "train_seconds": round(float(self.position.train_seconds.numpy()), 3),  # over every session
            "time_budget": self.settings.time_budget,
            "windows_per_second": round(trained / train_seconds, 1) if trained and train_seconds > 0 else None,
            "train_loss": last_steps.get("loss"),
            "validation": {key[4:]: value for key, value in last_epoch.items() if key.startswith("val_")},
            "strategy": type(self.strategy).__name__.replace("_DefaultDistributionStrategy", "default"),
            "replicas": self.strategy.num_replicas_in_sync,
            "mixed_precision": self.mixed_precision,
            "batch_size": self.global_batch,
            "optimizer": self.settings.training_choice("optimizer"),
            "learning_rate": self.settings.training_choice("learning_rate"),
            "parameters": int(self.trainer.model.count_params()),
            # Equal on every worker of a multi-worker run (and between a resumed and an uninterrupted run).
            "weights_sha256": weights_fingerprint(self.trainer.model),
            "model_config": self.model_config.to_dict(),
            "dataset_fingerprint": self.manifest.fingerprint,
        }

    def _export(self, summary: dict) -> None:
        try:
            from model.export import export_model
        except ImportError as error:
            raise SettingsError(f"the export is not available in this build ({error})", hint="pass --no-export") from None
        import tempfile

        export_dir = storage.join(self.settings.out, "export") if self.chief else tempfile.mkdtemp(prefix="nextword-worker-export-")
        export_model(self.trainer.model, self.model_config, self.settings.data_dir, export_dir, summary)
        if not self.chief:
            storage.remove(export_dir)

    def _cleanup(self) -> None:
        if not self.chief:
            storage.remove(self.checkpoint_dir)
