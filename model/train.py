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

from nextword import faults, storage
from nextword.errors import ArtifactError, SettingsError
from nextword.model import checkpointing
from nextword.model.agreement import WorkerAgreement
from nextword.model.history import History, plot_history
from nextword.model.loop import ScheduledRate, Trainer
from nextword.model.metrics import evaluate_split, metrics_line
from nextword.model.schedule import DECAY_SHARE, Schedule
from nextword.model.settings import TrainSettings
from nextword.model.blending import flat_source_metrics, sources_line
from nextword.model.step_plan import BlendStepPlan, StepPlan
from nextword.model.strategy import (configure_devices, fail_fast_on_lost_worker, is_chief, is_multiworker, make_strategy,
                            choose_precision)
from nextword.model.progress import TrainingProgress
from nextword.model.validation import ValidationSample, auto_validate_every
from nextword.model import flops
from nextword.tfrecords.manifest import load_manifest
from nextword.tfrecords.reader import ReaderConfig

SUMMARY_FILE = "summary.json"
LOG_EVERY_STEPS = 50


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
    if settings.data_dirs:  # a weighted blend: every source loaded and checked before any work
        from nextword.tfrecords.blend import load_sources

        sources = load_sources(settings.data_dirs, settings.blend_weights())
        manifest = sources[0].manifest
    else:
        manifest, sources = load_manifest(settings.data_dir), None
    strategy = make_strategy(settings.strategy, settings.devices)
    with fail_fast_on_lost_worker(strategy, settings.out):
        session = TrainingSession(settings, manifest, strategy, sources)
    with StopSignal() as stop, fail_fast_on_lost_worker(strategy, settings.out, on_failure=session._cleanup):
        return session.run(stop)


class TrainingSession:
    def __init__(self, settings: TrainSettings, manifest, strategy: tf.distribute.Strategy, sources=None):
        """sources: a blend's tfrecords.blend.BlendSource list (manifest is the first's), or None."""
        self.settings, self.manifest, self.strategy, self.sources = settings, manifest, strategy, sources
        if sources:
            from nextword.tfrecords.blend import blend_fingerprint

            self.fingerprint = blend_fingerprint(sources)
            self.blend = {"fingerprint": self.fingerprint, "vocab_sha256": manifest.vocab_sha256,
                          "sources": [source.record() for source in sources]}
        else:
            self.fingerprint, self.blend = manifest.fingerprint, None
        self.chief = is_chief(strategy)
        self.model_config = settings.model_config(manifest.vocab_size, manifest.context_length)
        self.optimization = settings.optimization()
        self.global_batch = self.optimization.batch_size
        replicas = strategy.num_replicas_in_sync
        if self.global_batch % replicas:
            raise SettingsError(
                f"--batch-size {self.global_batch} does not split over {replicas} replicas",
                hint=f"pass a multiple of {replicas}",
            )
        self.precision = choose_precision(settings.precision)
        self.flops_per_window = flops.training_flops_per_window(self.model_config)
        self.peak = self._matmul_peak(replicas)
        latest = self._check_run_dir()
        self.reader_config = ReaderConfig(
            batch_size=self.global_batch // replicas, objective=self.model_config.objective,
            seed=settings.seed, shuffle_buffer=settings.shuffle_buffer,
        )
        self.plan = (BlendStepPlan(settings, sources, strategy, self.reader_config, self.global_batch) if sources
                     else StepPlan(settings, manifest, strategy, self.reader_config, self.global_batch))
        self.target_steps, self.planned_by = self.plan.target_steps, self.plan.planned_by
        self.schedule = Schedule.plan(self.optimization.schedule, self.optimization.learning_rate,
                                      self.optimization.warmup_steps, self.target_steps, settings.time_budget)
        self.trainer = Trainer(
            strategy, self.model_config, self.optimization.optimizer, lambda: ScheduledRate(self.schedule),
            self.precision, settings.seed, self.optimization.weight_decay, self.optimization.clip_norm,
            settings.jit_compile_for(self.model_config.arch),
        )
        self.position = checkpointing.TrainingPosition()
        checkpoint = checkpointing.make_checkpoint(self.trainer.model, self.trainer.optimizer, self.position)
        self.checkpoint_dir = checkpointing.checkpoint_dir(settings.out, self.chief)
        self.manager = tf.train.CheckpointManager(checkpoint, self.checkpoint_dir, max_to_keep=3)
        best_dir = storage.join(self.checkpoint_dir, checkpointing.BEST)
        if latest:
            checkpointing.restore_checkpoint(checkpoint, latest, self.position)
            checkpointing.drop_checkpoints_after(best_dir, self.position.as_dict()["step"])
        # Two: a kill after a new best but before the checkpoint that records it resumes with the one before.
        self.best_manager = tf.train.CheckpointManager(checkpointing.make_checkpoint(self.trainer.model), best_dir,
                                                       max_to_keep=2)
        if self.chief:
            checkpointing.write_run_file(
                settings.out, {**settings.to_dict(), "precision": self.precision, "optimization": self.optimization.to_dict(),
                               "schedule": self.schedule.to_dict()},
                self.model_config, settings.data_dir, self.fingerprint, blend=self.blend,
            )
        self.history = History(settings.out, self.chief, resume_step=self.position.as_dict()["step"])
        self.agreement = WorkerAgreement(strategy)
        val = manifest.splits.get("val")
        if sources:
            from nextword.model.blending import BlendedSample

            blended = BlendedSample(sources, self.trainer.final_word_logits, settings.validation_sample)
            self.sample = blended if blended.samples else None
        else:
            self.sample = (ValidationSample(settings.data_dir, manifest, self.trainer.final_word_logits,
                                            settings.validation_sample) if val is not None and val.windows else None)
        self.validate_every = settings.validate_every or auto_validate_every(
            self.sample.windows if self.sample else 0, self.global_batch)
        step = self.position.as_dict()["step"]
        self.validated_at_step = step - step % self.validate_every  # validations run at multiples, before the save
        self.wall = {"training_steps": 0.0, "validation": 0.0, "checkpoints": 0.0, "final_validation": 0.0, "export": 0.0}

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
            checkpointing.check_resumable(out, self.model_config, self.fingerprint, self.precision)
        return latest

    def run(self, stop: StopSignal) -> dict:
        settings = self.settings
        self.agreement.check_resumed_alike(self.position.as_dict()["step"])
        started_wall = time.monotonic()
        start_step = self.position.as_dict()["step"]
        # Restored from the checkpoint, so equal on every worker: they all decide alike.
        self.seconds_before = self.train_clock = float(self.position.train_seconds.numpy())
        budget_spent = settings.time_budget is not None and self.seconds_before >= settings.time_budget
        stopped_early = self._stops_early(start_step, self.seconds_before)
        if start_step >= self.target_steps or budget_spent or stopped_early:
            reason = ("early_stopping" if stopped_early else "time_budget" if budget_spent and start_step < self.target_steps
                      else self.planned_by)
            return self._already_complete(reason)
        progress = TrainingProgress(enabled=self.chief and settings.progress, total=self.target_steps, done=start_step,
                                    flops_per_window=self.flops_per_window, peak_flops=self.peak["flops_per_second"],
                                    notes=self.chief, time_budget=None if settings.time_budget is None
                                    else settings.time_budget - self.seconds_before)  # the bar: this session's share
        with progress:
            if start_step:
                progress.note(f"resuming from step {start_step:,} (epoch {int(self.position.epoch.numpy())}"
                              + (f"; {self.seconds_before:.1f} s of the {settings.time_budget:g} s budget spent)"
                                 if settings.time_budget is not None else ")"))
            stopped_by = self._train(stop, progress) or self.planned_by
            self.position.train_seconds.assign(self.train_clock)
            if (stopped_by != "interrupt" and self.sample is not None
                    and self.validated_at_step != self.position.as_dict()["step"]):
                self._validate(progress)  # the final weights are a candidate for the best too
        self._timed("checkpoints", lambda: self.manager.save(checkpoint_number=self.position.as_dict()["step"]))
        final_weights = weights_fingerprint(self.trainer.model)
        exported = self._select_export_weights() if stopped_by != "interrupt" else None
        full = self._timed("final_validation", self.validate) if exported and self.sample else {}
        self.wall["total"] = time.monotonic() - started_wall  # before the export, which reads the summary
        summary = self._summary(stopped_by, start_step, self.train_clock - self.seconds_before, final_weights, exported, full)
        self._write_summary(summary)
        if self.chief and (self.history.record["steps"] or self.history.record["epochs"]):
            plot_history(settings.out)
        if settings.export and exported:
            self._timed("export", lambda: self._export(summary))
        self._cleanup()
        return summary

    def _patience_spent(self, stale: int) -> bool:
        return bool(self.optimization.patience) and stale >= self.optimization.patience

    def _decay_from(self) -> float:
        return float(self.position.decay_from.numpy())

    def _stops_early(self, step: int, seconds: float) -> bool:
        """Whether early stopping ends the run here: its patience spent, or under wsd (which finishes its decay) the
        decay a spent patience started has reached 0 (Schedule.decays_early); a wsd run whose patience ran out in
        the planned decay trains to the plan's end."""
        decay_from = self._decay_from()
        if decay_from >= 0:
            return self.schedule.progress(step, seconds) >= Schedule.decay_end(decay_from)
        old_rule = decay_from == checkpointing.DECAY_UNRECORDED  # a run begun before this rule keeps its own
        return (old_rule or not self.schedule.finishes_its_decay) and self._patience_spent(
            int(self.position.stale_validations.numpy()))

    def _timed(self, part: str, work):
        started = time.monotonic()
        try:
            return work()
        finally:
            self.wall[part] += time.monotonic() - started

    def _write_summary(self, summary: dict) -> None:
        self.history.save(summary)
        if self.chief:
            storage.write_atomic(storage.join(self.settings.out, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")

    def _already_complete(self, stopped_by: str) -> dict:
        """A rerun of a finished run: nothing to train, save or validate again; the export is
        written only if it is missing (the first run had --no-export)."""
        previous = self._previous_summary()
        final_weights = weights_fingerprint(self.trainer.model)
        exported = self._select_export_weights()
        summary = self._summary(stopped_by, self.position.as_dict()["step"], 0.0, final_weights, exported,
                                previous.get("validation") or {}, already_complete=True)
        self._write_summary(summary)
        if self.settings.export and not storage.exists(storage.join(self.settings.out, "export", "card.json")):
            self._export(summary)
        self._cleanup()
        return summary

    def _previous_summary(self) -> dict:
        """RUN_DIR/summary.json of the session that finished this run ({} if it is not there)."""
        path = storage.join(self.settings.out, SUMMARY_FILE)
        try:
            summary = json.loads(storage.read_text(path)) if storage.exists(path) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            summary = {}
        return summary if isinstance(summary, dict) and summary.get("steps") == self.position.as_dict()["step"] else {}

    def _save(self) -> None:
        """A checkpoint of this moment, with the seconds trained so far over every session."""
        self.position.train_seconds.assign(self.train_clock)
        self._timed("checkpoints", lambda: self.manager.save(checkpoint_number=self.position.as_dict()["step"]))
        faults.reached("checkpoint_saved", self.position.as_dict()["step"])

    def _train(self, stop, progress) -> str | None:
        """Train until the plan's end (None) or a stop: "interrupt", "time_budget", "early_stopping"."""
        settings, position = self.settings, self.position
        window_sum, loss_sum, weight_sum, since = 0, 0.0, 0.0, time.monotonic()
        iterator, chain_end = None, 0
        while position.as_dict()["step"] < self.target_steps:
            step, epoch, epoch_step = position.as_dict()["step"], int(position.epoch.numpy()), int(position.epoch_step.numpy())
            steps_per_epoch = self.plan.steps_per_epoch(epoch)
            if epoch >= chain_end:
                iterator, chain_end = self.plan.chain_iterator(step, epoch, epoch_step)
            steps = min(
                settings.steps_per_call, steps_per_epoch - epoch_step, self.target_steps - step,
                settings.checkpoint_every - step % settings.checkpoint_every,
                self.validate_every - step % self.validate_every,
            )
            loss, weight = self._train_call(iterator, steps, epoch, epoch_step, steps_per_epoch)
            epoch_step += steps
            position.step.assign_add(steps)
            # An epoch that ends on this call is counted now, whatever stops the run next.
            position.epoch.assign(epoch + 1 if epoch_step == steps_per_epoch else epoch)
            position.epoch_step.assign(0 if epoch_step == steps_per_epoch else epoch_step)
            loss_sum, weight_sum, window_sum = loss_sum + loss, weight_sum + weight, window_sum + steps * self.global_batch
            step = position.as_dict()["step"]
            elapsed = time.monotonic() - since
            progress.update(step, epoch, loss / max(weight, 1.0), window_sum / max(elapsed, 1e-9),
                            trained_seconds=self.train_clock - self.seconds_before)
            if step % LOG_EVERY_STEPS < steps or epoch_step == steps_per_epoch:
                self.history.log_steps({
                    "step": step, "epoch": epoch, "loss": loss_sum / max(weight_sum, 1.0),
                    "windows_per_second": window_sum / max(elapsed, 1e-9),
                    "utilisation": flops.utilisation(window_sum / max(elapsed, 1e-9), self.flops_per_window,
                                                     self.peak["flops_per_second"])[1],
                    "learning_rate": self.schedule.rate(step - 1, self.train_clock, self._decay_from()),
                })
                window_sum, loss_sum, weight_sum, since = 0, 0.0, 0.0, time.monotonic()
            if step % self.validate_every == 0 and self.sample is not None:
                self._validate(progress)
            elif step % settings.checkpoint_every == 0:
                self.history.save()
                self._save()
            # --time-budget counts the seconds of training steps of every session (validation excluded)
            over_budget = settings.time_budget is not None and self.train_clock >= settings.time_budget
            wants_stop, self.train_clock = self.agreement.stop_and_seconds(stop.interrupted or over_budget, self.train_clock)
            if self._stops_early(step, self.train_clock):  # the clock agreed: every worker decides alike
                return "early_stopping"
            if wants_stop:
                return "interrupt" if stop.interrupted else "time_budget"
        return None

    def _train_call(self, iterator, steps: int, epoch: int, epoch_step: int, steps_per_epoch: int) -> tuple[float, float]:
        """`steps` training steps in one tf.function call; (loss sum, weight sum). Its seconds go
        to the train clock (what --time-budget and the schedule's time part count)."""
        self.trainer.learning_rate.set_seconds(self.train_clock, self._decay_from())
        started = time.monotonic()
        try:
            loss, weight = self.trainer.train_steps(iterator, steps)
            loss, weight = float(loss), float(weight)  # waits for the steps to finish
        except (tf.errors.OutOfRangeError, tf.errors.FailedPreconditionError) as error:
            # FailedPrecondition: the reader's per-epoch assert_cardinality (any other is re-raised)
            if isinstance(error, tf.errors.FailedPreconditionError) and "expected to contain" not in str(error):
                raise
            raise ArtifactError(
                f"epoch {epoch} of the train split ended after {epoch_step} of {steps_per_epoch} steps: "
                "the shards hold fewer windows than dataset.json says",
                hint="the dataset was modified after ingest; run `nextword verify` or re-ingest",
            ) from None
        seconds = time.monotonic() - started
        self.train_clock += seconds
        self.wall["training_steps"] += seconds
        return loss, weight

    def _validate(self, progress) -> None:
        """Score the val sample; keep the weights if they are the best so far; when the patience is spent at wsd's
        peak rate, start the decay (Schedule.decays_early); save a checkpoint (which records the best, the patience
        count and the decay's start). Whether the run stops is `_stops_early`'s call."""
        position, step = self.position, self.position.as_dict()["step"]
        metrics = self._timed("validation", self.sample.score)
        loss = self.agreement.mean(metrics["loss"])
        improved = loss < float(position.best_loss.numpy())  # strictly: a plateau is no progress, NaN never is
        if improved:
            position.best_loss.assign(loss)
            position.best_step.assign(step)
            position.stale_validations.assign(0)
            # The best first, then the checkpoint that records it (see drop_checkpoints_after).
            self._timed("checkpoints", lambda: self.best_manager.save(checkpoint_number=step))
            faults.reached("best_saved", step)
        else:
            position.stale_validations.assign_add(1)
        self.validated_at_step = step
        stale = int(position.stale_validations.numpy())
        if self.chief:  # the history before the checkpoint: a resume drops rows past its step and replays them
            epoch = int(position.epoch.numpy())
            train_loss = self.history.record["steps"][-1]["loss"] if self.history.record["steps"] else None
            row = {"epoch": epoch, "step": step, "train_loss": train_loss, "best": improved,
                   **{f"val_{key}": value for key, value in metrics.items() if key not in ("windows", "sources")},
                   **flat_source_metrics(metrics)}
            self.history.log_epoch(row)
            self.history.save()
            mark = "best so far" if improved else f"{stale} without improvement"
            progress.note(f"step {step:,} (epoch {epoch}, {mark}): val {metrics_line(metrics, accuracy_digits=3)}"
                          + (f" (blended; {sources_line(metrics)})" if metrics.get("sources") else ""))
        if self._patience_spent(stale) and self._decay_from() == checkpointing.NO_EARLY_DECAY:
            # the workers' mean clock, so that every replica computes the same rates from here
            _, self.train_clock = self.agreement.stop_and_seconds(False, self.train_clock)
            now = self.schedule.progress(step, self.train_clock)
            if self.schedule.decays_early(now):
                position.decay_from.assign(now)
                progress.note(f"no improvement in {stale} validations at the peak learning rate: it decays to 0 from "
                              f"here over {DECAY_SHARE:.0%} of the plan, then training stops (best: step "
                              f"{int(position.best_step.numpy()):,})")
        self._save()

    def _select_export_weights(self) -> dict:
        """Load the weights to export into the model: the best held-out checkpoint (unless
        --export-checkpoint latest, or no validation ran). Returns what was chosen."""
        best_step = int(self.position.best_step.numpy())
        step = self.position.as_dict()["step"]
        if self.settings.export_checkpoint == "latest" or best_step < 0:
            return {"checkpoint": "latest", "step": step}
        if best_step != step:
            path = self.best_manager.latest_checkpoint
            if path is None or checkpointing.checkpoint_step(path) != best_step:
                raise ArtifactError(
                    f"the best checkpoint of step {best_step} is missing from {self.best_manager.directory} (found {path})",
                    hint="export the latest weights with --export-checkpoint latest, or train into a new --out",
                )
            checkpointing.make_checkpoint(self.trainer.model).restore(path).expect_partial().assert_existing_objects_matched()
        return {"checkpoint": "best", "step": best_step, "sample_loss": float(self.position.best_loss.numpy()),
                "weights_sha256": weights_fingerprint(self.trainer.model)}

    def validate(self) -> dict:
        """Every worker's replicas score their part of the whole val split; all get the same totals.
        A blend: each source's val split, and the blend's weighted figures (model/blending.py)."""
        if self.sources:
            from nextword.model.blending import blended_metrics

            per_source = {source.name: self._validate_split(source.data_dir, source.manifest)
                          for source in self.sources if source.name in self.sample.samples}
            return blended_metrics(per_source, {source.name: source.weight for source in self.sources})
        return self._validate_split(self.settings.data_dir, self.manifest)

    def _validate_split(self, data_dir: str, manifest) -> dict:
        totals = evaluate_split(self.strategy, self.trainer.final_word_logits, data_dir, "val", manifest,
                                self.plan.pipelines)
        expected = manifest.splits["val"].windows
        if int(totals.rows) != expected:
            raise ArtifactError(f"the val split of {data_dir} read {int(totals.rows)} windows, dataset.json says {expected}",
                                hint="the dataset was modified after ingest; re-run `nextword ingest`")
        return totals.result(manifest, "val")

    def _matmul_peak(self, replicas: int) -> dict:
        """The ceiling utilisation is measured against (model/flops.py): each GPU replica has its own
        device; on CPUs the replicas of one worker share the cores one calibration already used."""
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
        # the dtype the step's matmuls run in (float16 on a CPU is emulated: float32's rate is the ceiling)
        dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16" if on_gpu else "float32"}.get(self.precision, "float32")
        devices = replicas if on_gpu else (self.strategy.extended._num_workers if is_multiworker(self.strategy)  # noqa: SLF001
                                           else 1)
        return flops.matmul_peak(dtype, devices, self.settings.peak_flops)

    def compute_figures(self, windows_per_second: float | None) -> dict:
        """FLOPs a training window costs, the rate achieved and its share of the peak (summary.json's `compute`)."""
        figures = {"training_flops_per_window": self.flops_per_window,
                   "peak_flops_per_second": round(self.peak["flops_per_second"]), "peak_source": self.peak["source"]}
        if windows_per_second:
            achieved, share = flops.utilisation(windows_per_second, self.flops_per_window, self.peak["flops_per_second"])
            figures.update(achieved_flops_per_second=round(achieved), utilisation=share)
            if share > 1 and "device" in self.peak:  # a peak below what a step achieved was measured under load
                flops.forget_peak(self.peak["dtype"], self.peak["device"])
                figures["peak_source"] += "; below the rate achieved, so it was measured under load: measured again next run"
        return figures

    def _summary(self, stopped_by: str, start_step: int, train_seconds: float, weights_sha256: str,
                 exported: dict | None, validation: dict, already_complete: bool = False) -> dict:
        position = self.position.as_dict()
        trained = (position["step"] - start_step) * self.global_batch
        last_steps = self.history.record["steps"][-1] if self.history.record["steps"] else {}
        windows_per_second = trained / train_seconds if trained and train_seconds > 0 else None
        decay_from = self._decay_from()
        return {
            "stopped_by": stopped_by,
            "already_complete": already_complete,  # a rerun that found nothing left to train
            "resumed_from_step": start_step,
            "steps": position["step"],
            "epochs_completed": position["epoch"],
            "windows_trained_this_session": trained,
            "train_seconds_this_session": round(train_seconds, 3),  # seconds of training steps
            "train_seconds": round(float(self.position.train_seconds.numpy()), 3),  # over every session
            "time_budget": self.settings.time_budget,
            "wall_seconds": {part: round(seconds, 3) for part, seconds in self.wall.items()},
            "windows_per_second": round(windows_per_second, 1) if windows_per_second else None,
            "compute": self.compute_figures(windows_per_second),
            "train_loss": last_steps.get("loss"),
            # the whole val split, scored for the exported weights
            "validation": {key: value for key, value in validation.items() if key != "windows"},
            "exported": exported,
            "best_step": int(self.position.best_step.numpy()),
            "validations_without_improvement": int(self.position.stale_validations.numpy()),
            # where early stopping started wsd's decay (the schedule's progress, 0-1), None if it did not
            "early_decay_from": round(decay_from, 6) if decay_from >= 0 else None,
            "validation_sample_windows": self.sample.windows if self.sample else 0,
            "validate_every": self.validate_every,
            "strategy": type(self.strategy).__name__.replace("_DefaultDistributionStrategy", "default"),
            "replicas": self.strategy.num_replicas_in_sync,
            "precision": self.precision,
            "mixed_precision": self.precision != "float32",  # before 0.3 the only record of it
            "jit_compile": self.trainer.jit_compile,
            "batch_size": self.global_batch,
            "optimizer": self.optimization.optimizer,
            "learning_rate": self.optimization.learning_rate,
            "optimization": self.optimization.to_dict(),
            "schedule": self.schedule.to_dict(),
            "parameters": int(self.trainer.model.count_params()),
            # The last step's weights: equal on every worker of a multi-worker run (and between a
            # resumed and an uninterrupted run). The exported weights' are under "exported".
            "weights_sha256": weights_sha256,
            "model_config": self.model_config.to_dict(),
            "dataset_fingerprint": self.fingerprint,
            **({"blend": {**self.blend, "period_batches": self.plan.period_batches,
                          "period_windows": list(self.plan.allocation),
                          "sources": self.plan.source_progress(position["step"])}} if self.blend else {}),
        }

    def _export(self, summary: dict) -> None:
        try:
            from nextword.model.export import export_model
        except ImportError as error:
            raise SettingsError(f"the export is not available in this build ({error})", hint="pass --no-export") from None
        import tempfile

        export_dir = storage.join(self.settings.out, "export") if self.chief else tempfile.mkdtemp(prefix="nextword-worker-export-")
        export_model(self.trainer.model, self.model_config, self.settings.data_dir, export_dir, summary,
                     ngram_order=self.settings.export_ngram_order(), sample_windows=self.settings.validation_sample,
                     blend=self.blend, context_cache=self.settings.context_cache)
        if not self.chief:
            storage.remove(export_dir)

    def _cleanup(self) -> None:
        if not self.chief:
            storage.remove(self.checkpoint_dir)
