"""RUN_DIR bookkeeping: run.json, checkpoints of model + optimizer + training position.

The checkpoint holds the model's variables (weights AND dropout seed-generator states), the
optimizer's variables, and the position: global step, epoch, and steps done in that epoch.
Together with a reader that is a pure function of (seed, epoch), that is an exact resume.
`tf.train.CheckpointManager` writes the data files first and the `checkpoint` index last, so
a run killed mid-save resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import json
import tempfile

import tensorflow as tf

from nextword import storage
from nextword.differences import changed_settings
from nextword.errors import ArtifactError
from nextword.model.config import ModelConfig

RUN_FORMAT = "nextword.run"
RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
BEST = "best"  # RUN_DIR/checkpoints/best: the weights with the lowest held-out loss so far (model variables only)
# ModelConfig fields as a user names them (vocabulary and context come from DATA_DIR, not a flag)
MODEL_LABELS = {"vocab_size": "vocabulary size (from DATA_DIR)", "context_length": "context length (from DATA_DIR)",
                "arch": "--arch", "layers": "--layers", "units": "--units", "embedding_dim": "--embedding-dim",
                "dropout": "--dropout", "bidirectional": "--bidirectional", "objective": "--objective",
                "heads": "--heads", "ff_dim": "--ff-dim", "tie_embeddings": "--tie-embeddings",
                "ignore_padding": "--ignore-padding (runs of 0.2: --no-ignore-padding)",
                "positions": "--positions (0.3's runs before ALiBi: --positions learned)"}


NO_EARLY_DECAY = -1.0
# A checkpoint written before early stopping finished wsd's decay (2026-12-06): a spent patience still ends its run,
# so a run that ended that way is not trained again by a rerun.
DECAY_UNRECORDED = -2.0


class TrainingPosition:
    """Checkpointed with the model and optimizer: step, epoch, epoch_step (int64), train_seconds
    (float64: seconds of training steps over every session, what --time-budget counts), and the
    early-stopping state: best_step (-1: no validation yet), best_loss (float64, the lowest
    held-out sample loss so far) and stale_validations (validations since the best), and decay_from (float64:
    the schedule's progress where early stopping started wsd's decay; NO_EARLY_DECAY: it did not;
    DECAY_UNRECORDED: a checkpoint from before early stopping could start it, whose run keeps the rule it had)."""

    def __init__(self) -> None:
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds")
        self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_step")
        self.best_loss = tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="best_loss")
        self.stale_validations = tf.Variable(0, dtype=tf.int64, trainable=False, name="stale_validations")
        self.decay_from = tf.Variable(NO_EARLY_DECAY, dtype=tf.float64, trainable=False, name="decay_from")

    def variables(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "epoch_step": self.epoch_step, "train_seconds": self.train_seconds,
                "best_step": self.best_step, "best_loss": self.best_loss, "stale_validations": self.stale_validations,
                "decay_from": self.decay_from}

    def as_dict(self) -> dict:
        return {"step": int(self.step.numpy()), "epoch": int(self.epoch.numpy()), "epoch_step": int(self.epoch_step.numpy())}


def make_checkpoint(model, optimizer=None, position: TrainingPosition | None = None) -> tf.train.Checkpoint:
    # Lists of variables, not the Keras objects: Keras 3 models are not checkpoint children,
    # and the model's variables include the dropout seed states the optimizer does not track.
    parts = {"model_variables": list(model.variables)}
    if optimizer is not None:
        parts["optimizer_variables"] = list(optimizer.variables)
    if position is not None:
        parts.update(position.variables())
    return tf.train.Checkpoint(**parts)


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, position: TrainingPosition | None = None) -> None:
    """Restore every part of `checkpoint` from `path`. A checkpoint written by an older nextword
    restores without the parts it lacks (train_seconds before 0.2, the early-stopping state
    before 0.3): those start afresh; without decay_from (before 2026-12-06), `position`'s is DECAY_UNRECORDED."""
    saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    status = checkpoint.restore(path)
    if {"train_seconds", "best_step", "decay_from"} <= saved:
        status.assert_existing_objects_matched()
    else:
        status.expect_partial()
    if position is not None and "decay_from" not in saved:
        position.decay_from.assign(DECAY_UNRECORDED)


def checkpoint_dir(run_dir: str, chief: bool) -> str:
    """The chief writes into RUN_DIR/checkpoints; other workers into a temp dir (removed at the end)."""
    if chief:
        return storage.join(run_dir, CHECKPOINTS)
    return tempfile.mkdtemp(prefix="nextword-worker-ckpt-")


def latest_checkpoint(run_dir: str) -> str | None:
    directory = storage.join(run_dir, CHECKPOINTS)
    return tf.train.latest_checkpoint(directory) if storage.isdir(directory) else None


def best_checkpoint(run_dir: str) -> str | None:
    directory = storage.join(run_dir, CHECKPOINTS, BEST)
    return tf.train.latest_checkpoint(directory) if storage.isdir(directory) else None


def checkpoint_step(path: str) -> int | None:
    """ckpt-240 -> 240 (the managers number checkpoints by global step)."""
    tail = path.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def chosen_checkpoint(run_dir: str, which: str = "best") -> str | None:
    """`which` "best": the best held-out checkpoint, else (no validation ran) the latest."""
    return (best_checkpoint(run_dir) if which == "best" else None) or latest_checkpoint(run_dir)


def drop_checkpoints_after(directory: str, step: int) -> None:
    """Forget the checkpoints of `directory` numbered above `step`: a run resumed from step S
    replays what came after S, so a best checkpoint saved after S (killed before the latest
    checkpoint that would have recorded it) belongs to a trajectory that is being replayed."""
    state = tf.train.get_checkpoint_state(directory) if storage.isdir(directory) else None
    if state is None:
        return
    paths = list(state.all_model_checkpoint_paths)
    kept = [path for path in paths if (checkpoint_step(path) or 0) <= step]
    if kept == paths:
        return
    for path in paths:
        if path not in kept:
            for name in tf.io.gfile.glob(path + ".*"):
                tf.io.gfile.remove(name)
    if kept:
        tf.compat.v1.train.update_checkpoint_state(directory, kept[-1], all_model_checkpoint_paths=kept)
    else:
        tf.io.gfile.remove(storage.join(directory, "checkpoint"))


def write_run_file(run_dir: str, settings: dict, model_config: ModelConfig, data_dir: str, fingerprint: str,
                   blend: dict | None = None) -> None:
    """blend: a blended run's {"fingerprint", "sources": [{name, data_dir, fingerprint, weight}]}; its
    fingerprint is then run.json's dataset_fingerprint and data_dir the first source's."""
    record = {
        "format": RUN_FORMAT,
        "format_version": 1,
        "data_dir": data_dir,
        "dataset_fingerprint": fingerprint,
        "model_config": model_config.to_dict(),
        "settings": settings,
        **({"blend": blend} if blend else {}),
    }
    storage.makedirs(run_dir)
    storage.write_atomic(storage.join(run_dir, RUN_FILE), json.dumps(record, indent=2) + "\n")


def read_run_file(run_dir: str) -> dict:
    path = storage.join(run_dir, RUN_FILE)
    if not storage.exists(path):
        raise ArtifactError(f"{run_dir} holds no {RUN_FILE}: it is not a nextword RUN_DIR", hint="pass the --out directory of `nextword train`")
    try:
        record = json.loads(storage.read_text(path))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON ({error})", hint="the RUN_DIR is damaged; train into a new --out") from None
    if record.get("format") != RUN_FORMAT:
        raise ArtifactError(f"{path} is not a nextword run record (format={record.get('format')!r})")
    return record


def check_resumable(run_dir: str, model_config: ModelConfig, fingerprint: str, precision: str | None = None) -> None:
    """Refuse to resume a RUN_DIR made with another dataset, another model config, or a precision
    whose optimizer state differs (float16's loss scaling has variables the others lack)."""
    record = read_run_file(run_dir)
    saved_precision = record.get("settings", {}).get("precision")
    if precision and saved_precision and (saved_precision == "mixed_float16") != (precision == "mixed_float16"):
        raise ArtifactError(
            f"{run_dir} was trained under --precision {saved_precision}, this run would use {precision}: "
            f"only mixed_float16 scales the loss, so their checkpoints hold different optimizer state",
            hint=f"pass --precision {saved_precision} to resume, or train into a new --out",
        )
    if record["dataset_fingerprint"] != fingerprint:
        blend = record.get("blend")
        was = ("a blend of " + ", ".join(f"{source['data_dir']} ({source['weight']:.3g})" for source in blend["sources"])
               if blend else "another dataset")
        now = "this blend" if fingerprint.startswith("blend-") else "this DATA_DIR"
        raise ArtifactError(
            f"{run_dir} was trained on {was} (fingerprint {record['dataset_fingerprint']}, {now} has {fingerprint})",
            hint="train into a new --out, or pass the DATA_DIR(s) and --weights it was made with (see run.json)",
        )
    saved = ModelConfig.from_dict(record["model_config"]).to_dict()  # fields added since: their defaults
    if saved != model_config.to_dict():
        changed = changed_settings(saved, model_config.to_dict(), MODEL_LABELS, "run")
        raise ArtifactError(
            f"{run_dir} holds a model with another config: {'; '.join(changed)}",
            hint="repeat the original flags to resume (see run.json), or train into a new --out",
        )


def restore_model_weights(run_dir: str, model, which: str = "latest") -> str:
    """Load the checkpoint's model variables into `model` (`which`: "latest", or "best" — the best
    held-out weights, the latest when no validation ran); returns the checkpoint path."""
    path = chosen_checkpoint(run_dir, which)
    if path is None:
        raise ArtifactError(f"{run_dir} holds no checkpoint", hint="train first (`nextword train DATA_DIR --out RUN_DIR`)")
    make_checkpoint(model).restore(path).expect_partial().assert_existing_objects_matched()
    return path
