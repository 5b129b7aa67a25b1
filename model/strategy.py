"""Picking the tf.distribute strategy, logical CPU devices, mixed precision, chief detection."""

from __future__ import annotations

import contextlib
import json
import os
import re

import tensorflow as tf

from nextword.errors import NextwordError, SettingsError


def split_cpu(devices: int | None) -> None:
    """Split the CPU into N logical devices (a real MirroredStrategy on a CPU machine).

    Must run before TensorFlow initialises its runtime (before the first op).
    """
    if not devices or devices < 2:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    except RuntimeError as error:
        raise SettingsError(
            f"cannot split the CPU into {devices} devices: TensorFlow is already initialised ({error})",
            hint="call split_cpu before any TensorFlow op (the CLI does this first)",
        ) from None


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def resolve_strategy_name(name: str, devices: int | None) -> str:
    if name != "auto":
        return name
    if os.environ.get("TF_CONFIG"):
        return "multiworker"
    if gpu_count() > 1 or (devices or 1) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str, devices: int | None = None) -> tf.distribute.Strategy:
    """auto: multiworker if TF_CONFIG is set, mirrored if >1 GPU (or --devices > 1), else default."""
    resolved = resolve_strategy_name(name, devices)
    if resolved == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise SettingsError(
                "--strategy multiworker needs the TF_CONFIG environment variable",
                hint='set TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}\' on every worker',
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if resolved == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        names = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(names)
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief writes checkpoints, logs, history and the export; other workers write to temp dirs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def is_multiworker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def use_mixed_precision(setting: bool | None) -> bool:
    """Default on only with a GPU: on CPU float16 math is emulated and slower."""
    return gpu_count() > 0 if setting is None else setting


class WorkerLostError(NextwordError):
    """A peer of a multi-worker run died or became unreachable: every worker must restart."""

    exit_code = 75  # EX_TEMPFAIL: a launcher may restart the whole job on this code


# TF's own failure detection raises these: the coordination service's heartbeats (a peer
# stopped sending them) and gRPC (a peer's socket closed) abort every pending collective.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                  tf.errors.CancelledError, tf.errors.FailedPreconditionError)


def _failure_reason(error: tf.errors.OpError) -> str:
    """The part of TF's message that names the lost peer, on one line."""
    text = error.message.rsplit("aborted by:", 1)[-1]
    lines = [line.strip() for line in text.split("The error could be from", 1)[0].splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    named_tasks = [line for line in lines[1:] if line.startswith("/job:")]  # the heartbeat error lists them
    return re.sub(r"\s+", " ", " ".join(lines[:1] + named_tasks))[:300]


@contextlib.contextmanager
def fail_fast_on_lost_worker(strategy: tf.distribute.Strategy, run_dir: str, on_failure=None):
    """Turn TF's peer-failure errors into a WorkerLostError that says to restart all workers.

    Collectives cannot continue with a missing worker, and a restarted worker cannot rejoin
    a running cluster (TF 2.x has no elastic MultiWorkerMirroredStrategy): the only recovery
    is to restart every worker, which resumes from the chief's last checkpoint.
    """
    if not is_multiworker(strategy):
        yield
        return
    try:
        yield
    except _PEER_FAILURES as error:
        if on_failure is not None:
            on_failure()
        workers = strategy.extended._num_workers  # noqa: SLF001
        from model.checkpointing import latest_checkpoint

        try:
            latest = latest_checkpoint(run_dir)
        except (tf.errors.OpError, OSError):
            latest = None
        resume = f"from {latest}" if latest else "from the start (no checkpoint was written yet)"
        raise WorkerLostError(
            f"multi-worker training stopped: a worker was lost ({_failure_reason(error)})",
            hint=f"restart ALL {workers} workers with the same command and TF_CONFIG; training resumes {resume}",
        ) from None
