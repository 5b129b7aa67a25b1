"""FLOP accounting: what a training window costs, what the machine can do, and the utilisation between.

Only matrix products are counted (2 FLOPs a multiply-add), as nanoGPT and PaLM's MFU count them:
norms, activations, softmax and the optimizer are a few percent at these widths and are what a
step does beyond the arithmetic the model needs. A training window costs 3 forward passes (the
backward pass computes two products per forward product: the input's and the weights' gradients).

Forward multiply-adds of one window of T = context ids, P positions predicted (T for objective
"all", 1 for "last"), vocabulary V:

- transformer, width d, feed-forward f, L blocks: every block computes every position,
  L * (T * (4 d^2 + 2 d f) + 2 T^2 d): query/key/value and output projections, the feed-forward
  pair, and the scores and the weighted values over the whole T x T (the causal mask hides half
  of it, the matmul still computes it); then P * d * V for the logits;
- LSTM/GRU, u units, embedding e, L layers, b = 2 if bidirectional: layer i reads T steps of
  width e (i = 0) or b u, at g * u * (input + u) per step and direction (g = 4 gates for an LSTM,
  3 for a GRU); then P * b u * V, with a tied projection P * (b u * e + e * V) when b u != e.

`tests/test_flops.py` checks the formula against the products in the traced graph (transformer)
and against the weights the layers hold (recurrent models).
"""

from __future__ import annotations

import json
import os
import platform
import time

from nextword.model.config import ModelConfig

BACKWARD_FACTOR = 3  # forward + backward (gradients of inputs and of weights)
CALIBRATION_SIZE = 2048  # a square matmul this size: ~17 GFLOP, ~0.1 s on 2 cores of this VM
CACHE_NAME = "matmul-peak.json"


def forward_multiply_adds(config: ModelConfig) -> int:
    """Multiply-adds of one window's forward pass (the module docstring's formula)."""
    steps, vocab = config.context_length, config.vocab_size
    predicted = steps if config.objective == "all" else 1
    if config.arch == "transformer":
        width, ff = config.units, config.feed_forward_dim
        blocks = config.layers * (steps * (4 * width * width + 2 * width * ff) + 2 * steps * steps * width)
        return blocks + predicted * width * vocab
    gates = 4 if config.arch == "lstm" else 3
    directions = 2 if config.bidirectional else 1
    total, width_in = 0, config.embedding_dim
    for _ in range(config.layers):
        total += directions * steps * gates * config.units * (width_in + config.units)
        width_in = directions * config.units
    if config.tie_embeddings and width_in != config.embedding_dim:
        return total + predicted * (width_in * config.embedding_dim + config.embedding_dim * vocab)
    return total + predicted * width_in * vocab


def training_flops_per_window(config: ModelConfig) -> int:
    return BACKWARD_FACTOR * 2 * forward_multiply_adds(config)


def measure_matmul_peak(dtype: str = "float32", device: str | None = None, size: int = CALIBRATION_SIZE,
                        repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` square matmuls of `size` in `dtype` on `device` (default: TF's
    choice, the first GPU if any). A dense matmul is the best this hardware does on these models'
    main operation, so it is the ceiling a training step's utilisation is measured against."""
    import tensorflow as tf

    with tf.device(device or ("/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0")):
        # stateless: a stateful random op is refused under --deterministic (op determinism wants a seed)
        left = tf.random.stateless_normal([size, size], seed=[1, 2], dtype=tf.float32)
        left, right = tf.cast(left, dtype), tf.cast(tf.transpose(left), dtype)
        # the whole product is summed: a slice of it would let Grappler multiply only that slice
        product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, b), tf.float32)))
        product(left, right).numpy()  # trace and warm up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            product(left, right).numpy()  # .numpy() waits for the device
            best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


def machine_key(dtype: str, device_name: str) -> str:
    """What a cached peak belongs to: the processor (or GPU), the threads TensorFlow may use, the dtype."""
    import tensorflow as tf

    return json.dumps({"device": device_name, "processor": _processor_name(), "cpus": os.cpu_count(),
                       "threads": tf.config.threading.get_intra_op_parallelism_threads(),
                       "dtype": dtype, "tensorflow": tf.__version__}, sort_keys=True)


def _processor_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nextword")


def matmul_peak(dtype: str = "float32", devices: int = 1, given: float | None = None) -> dict:
    """{"flops_per_second", "source"}: the peak training utilisation is measured against.

    given: FLOP/s the user passed (--peak-flops: the data sheet's figure for the whole run). Else one
    device's calibrated matmul rate (cached per machine in ~/.cache/nextword), times `devices` on
    GPUs (each replica has its own); on a CPU the replicas share the cores the matmul already used.
    """
    if given is not None:
        return {"flops_per_second": float(given), "source": "--peak-flops"}
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    device_name = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
        "device_name", "GPU") if gpus else "CPU"
    key = machine_key(dtype, device_name)
    path = os.path.join(cache_dir(), CACHE_NAME)
    cached = _read_cache(path)
    if key in cached:
        per_device = cached[key]
    else:
        busy = not gpus and _busy()  # a CPU shared with other work measures low: used, not kept
        per_device = measure_matmul_peak(dtype)
        if not busy:
            cached[key] = per_device
            _write_cache(path, cached)
    count = devices if gpus else 1
    return {"flops_per_second": per_device * count, "dtype": dtype, "device": device_name,
            "source": f"{dtype} {CALIBRATION_SIZE}x{CALIBRATION_SIZE} matmul on {device_name}"
                      + (f" x {count} devices" if count > 1 else "")
                      + (f" (cached in {path})" if key in cached else " (measured on a busy CPU: not cached)")}


def _busy() -> bool:
    """The CPU already has work: a 1-minute load average of at least half its cores."""
    try:
        return os.getloadavg()[0] >= 0.5 * (os.cpu_count() or 1)
    except OSError:
        return False


def forget_peak(dtype: str, device_name: str) -> None:
    """Drop a cached peak a run has exceeded (it was measured while the machine was busy): the next run
    measures again."""
    path = os.path.join(cache_dir(), CACHE_NAME)
    cached = _read_cache(path)
    if cached.pop(machine_key(dtype, device_name), None) is not None:
        _write_cache(path, cached)


def _read_cache(path: str) -> dict:
    try:
        with open(path) as handle:
            cached = json.load(handle)
        return cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: measure again


def _write_cache(path: str, cached: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + f".tmp-{os.getpid()}", "w") as handle:
            json.dump(cached, handle, indent=1)
        os.replace(path + f".tmp-{os.getpid()}", path)
    except OSError:
        pass  # a read-only home: measure again next time


def utilisation(windows_per_second: float, flops_per_window: int, peak: float) -> tuple[float, float]:
    """(achieved FLOP/s, share of the peak)."""
    achieved = windows_per_second * flops_per_window
    return achieved, (achieved / peak if peak > 0 else 0.0)
