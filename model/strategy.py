"""Picking the devices (--devices, GPUs, logical CPU devices), the tf.distribute strategy,
mixed precision, chief detection."""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass

import tensorflow as tf

from nextword.errors import NextwordError, ResourceError, SettingsError

CUDA_INSTALL = "pip install 'tensorflow[and-cuda]==2.21.*'"


@dataclass(frozen=True)
class DevicePlan:
    """What `--devices` means on this machine: the first `gpus` GPUs, or the CPU split into
    `cpu_devices` logical devices (1: not split). Exactly one of the two is in use."""

    gpus: int
    cpu_devices: int

    @property
    def replicas(self) -> int:
        return self.gpus or self.cpu_devices


def plan_devices(requested: int | None, gpus: int) -> DevicePlan:
    """requested: --devices (None: all GPUs, else one CPU device); gpus: GPUs TensorFlow sees.

    With GPUs, N means the first N of them (never more than exist); without, N logical CPU
    devices (a real MirroredStrategy on a CPU machine, for tests and benchmarks).
    """
    if gpus == 0:
        return DevicePlan(gpus=0, cpu_devices=requested or 1)
    if requested is None:
        return DevicePlan(gpus=gpus, cpu_devices=1)
    if requested > gpus:
        raise SettingsError(
            f"--devices {requested} asks for {requested} GPUs but TensorFlow sees {gpus} GPU(s) on this machine",
            hint=f"pass --devices {gpus} or fewer, or leave --devices out to use all {gpus}",
        )
    return DevicePlan(gpus=requested, cpu_devices=1)


def nvidia_gpus_on_machine(proc_gpus: str = "/proc/driver/nvidia/gpus", dev: str = "/dev") -> int:
    """NVIDIA GPUs the kernel driver knows, found without TensorFlow (whose CUDA libraries may
    have failed to load), narrowed as CUDA narrows them by CUDA_VISIBLE_DEVICES."""
    try:
        count = len(os.listdir(proc_gpus))  # one entry per GPU (its PCI bus id)
    except OSError:
        try:
            count = sum(1 for name in os.listdir(dev) if re.fullmatch(r"nvidia\d+", name))
        except OSError:
            count = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        # CUDA enumerates the listed devices up to the first invalid entry ("" or "-1" hides all).
        entries = [entry.strip() for entry in visible.split(",")]
        listed = next((index for index, entry in enumerate(entries) if not entry or entry.startswith("-")), len(entries))
        count = min(count, listed)
    return count


def check_gpus_usable(tensorflow_gpus: int, machine_gpus: int, allow_cpu: bool) -> None:
    """Refuse to train on the CPU silently when the machine has GPUs TensorFlow cannot use."""
    if machine_gpus and not tensorflow_gpus and not allow_cpu:
        raise ResourceError(
            f"this machine has {machine_gpus} NVIDIA GPU(s) but TensorFlow cannot use them "
            "(its CUDA libraries did not load)",
            hint=f"install them with {CUDA_INSTALL} (NEXTWORD_TF_LOGS=1 shows TensorFlow's loading errors), "
            "or pass --allow-cpu to train on the CPU",
        )


def configure_devices(requested: int | None, allow_cpu: bool = False) -> DevicePlan:
    """Check the GPUs, then make the planned devices visible (the first N GPUs) or split the CPU.

    Must run before TensorFlow initialises its runtime (before the first op).
    """
    gpus = tf.config.list_physical_devices("GPU")
    check_gpus_usable(len(gpus), nvidia_gpus_on_machine(), allow_cpu)
    plan = plan_devices(requested, len(gpus))
    if plan.gpus and plan.gpus < len(gpus):
        try:
            tf.config.set_visible_devices(gpus[: plan.gpus], "GPU")
        except RuntimeError as error:
            raise SettingsError(
                f"cannot limit training to {plan.gpus} GPU(s): TensorFlow is already initialised ({error})",
                hint="call configure_devices before any TensorFlow op (the CLI does this first)",
            ) from None
    split_cpu(plan.cpu_devices)
    return plan


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
    """GPUs training may use: the visible ones (configure_devices hides all but the first N)."""
    return len(tf.config.get_visible_devices("GPU"))


def resolve_strategy_name(name: str, devices: int | None) -> str:
    if name != "auto":
        return name
    if os.environ.get("TF_CONFIG"):
        return "multiworker"
    if gpu_count() > 1 or (devices or 1) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str, devices: int | None = None) -> tf.distribute.Strategy:
    """auto: multiworker if TF_CONFIG is set, mirrored if >1 visible GPU (or --devices > 1), else default."""
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


BFLOAT16_COMPUTE_CAPABILITY = (8, 0)  # Ampere: bfloat16 tensor cores


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) of each GPU training may use."""
    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
            for gpu in tf.config.get_visible_devices("GPU")]


def choose_precision(setting: str | None) -> str:
    """--precision, else by hardware. GPUs: bfloat16 where every GPU has it (float32's range, so no
    loss scaling), else float16 with loss scaling. CPUs: float32, for every architecture. On this
    AVX512-BF16 CPU a bfloat16 matmul runs 2x float32's rate, but the default (compiled transformer)
    step did not gain (bench/step_bench.py: x0.93 compiled, x1.02 uncompiled); an LSTM step did
    (x1.39), yet a default that follows CPU flags would give one command other numerics on another
    CPU, and the notebook preset must stay the notebook's float32: recurrent models opt in."""
    if setting is not None:
        return setting
    capabilities = gpu_compute_capabilities()
    if not capabilities:
        return "float32"
    return "mixed_bfloat16" if min(capabilities) >= BFLOAT16_COMPUTE_CAPABILITY else "mixed_float16"


class WorkerLostError(NextwordError):
    """A peer of a multi-worker run died or became unreachable: every worker must restart."""

    exit_code = 75  # EX_TEMPFAIL: a launcher may restart the whole job on this code


# TF's own failure detection raises these: the coordination service's heartbeats (a peer
# stopped sending them) and gRPC (a peer's socket closed) abort every pending collective.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
# Cancelled and FailedPrecondition also follow a lost peer (ops cancelled by the abort), but
# they are what many genuine bugs raise too: a restart loop would hide those. They count as a
# lost peer only when TF's message says a peer or a collective was lost.
_AMBIGUOUS_FAILURES = (tf.errors.CancelledError, tf.errors.FailedPreconditionError)
_PEER_MARKERS = ("Collective ops is aborted", "stopped sending heartbeats", "unhealthy", "Socket closed",
                 "coordination service", "Connection reset by peer", "failed to connect to all addresses")


def is_peer_failure(error: BaseException) -> bool:
    """True when a TF error means a worker of the cluster was lost (restart all), not a bug."""
    if isinstance(error, _PEER_FAILURES):
        return True
    if isinstance(error, _AMBIGUOUS_FAILURES):
        message = getattr(error, "message", str(error))
        return any(marker.lower() in message.lower() for marker in _PEER_MARKERS)
    return False


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
    except tf.errors.OpError as error:
        if not is_peer_failure(error):
            raise
        if on_failure is not None:
            on_failure()
        workers = strategy.extended._num_workers  # noqa: SLF001
        from nextword.model.checkpointing import latest_checkpoint

        try:
            latest = latest_checkpoint(run_dir)
        except (tf.errors.OpError, OSError):
            latest = None
        resume = f"from {latest}" if latest else "from the start (no checkpoint was written yet)"
        raise WorkerLostError(
            f"multi-worker training stopped: a worker was lost ({_failure_reason(error)})",
            hint=f"restart ALL {workers} workers with the same command and TF_CONFIG; training resumes {resume}",
        ) from None
