"""Picking the tf.distribute strategy, logical CPU devices, mixed precision, chief detection."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from nextword.errors import SettingsError


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
