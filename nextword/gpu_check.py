"""`nextword gpu-check`: the devices TensorFlow sees, whether training runs cuDNN's recurrent kernels,
and training windows/s (with its share of the matmul peak) on 1..N GPUs. Run it on the GPU machine
before a long training run.

    nextword gpu-check                  # everything: a synthetic 8 MB corpus, vocabulary 20,000 (cached)
    nextword gpu-check --quick          # tiny model and data, few steps (~30 s on CPU; what CI runs)
    nextword gpu-check --data DATA_DIR  # measure on your own dataset (a `nextword ingest` DATA_DIR)
    nextword gpu-check --json           # also print one JSON object (the last line)

1. devices: the NVIDIA GPUs the driver lists (found without TensorFlow), TensorFlow's physical
   and logical devices, and the CUDA/cuDNN versions TensorFlow was built with. GPUs on the
   machine that TensorFlow cannot use fail the check with the message `nextword train` gives.
2. cuDNN: every recurrent layer of the default recipe's model and of the notebook preset must
   pass model.builder.is_cudnn_eligible; then the real training step (model.loop.Trainer, in the
   precision `nextword train` would pick) is traced and every function of its graph searched for
   CudnnRNN* ops, the ops Keras emits only when it picks cuDNN and which only have GPU kernels;
   with a GPU the step then runs once, so they were executed. With GPUs, "absent" fails.
3. throughput: for k = 1..N GPUs (one CPU device when there is no GPU) a subprocess runs the
   real training step (model.strategy.configure_devices(k), make_strategy, Trainer, the tf.data
   reader) at a fixed batch per device; windows/s is the median of --repeats timed runs of
   --steps steps after a warm-up call (tracing and pipeline start excluded), with the matmul FLOP/s
   and their share of the devices' calibrated peak, as `nextword train` reports them.

Exit 0 when every check passed, 1 otherwise. Without a GPU it says "no GPU: ..." and checks
what the CPU can: eligibility, the graph search (absent, as expected) and CPU windows/s.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

import typer

CUDNN_OPS = "CudnnRNN"  # prefix of CudnnRNN, CudnnRNNV2/V3 and their Backprop ops
TINY_MODEL = dict(layers=1, units=16)  # --quick: any family (a transformer's embeddings are --units wide)
FULL_CORPUS_BYTES = 8_000_000


# ---- 1. devices -----------------------------------------------------------------------------
def device_report() -> dict:
    import tensorflow as tf

    from nextword.model.strategy import check_gpus_usable, nvidia_gpus_on_machine
    from nextword.errors import ResourceError

    physical = tf.config.list_physical_devices()
    gpus = [device for device in physical if device.device_type == "GPU"]
    machine_gpus = nvidia_gpus_on_machine()
    build = dict(tf.sysconfig.get_build_info())
    problem = None
    try:
        check_gpus_usable(len(gpus), machine_gpus, allow_cpu=False)
    except ResourceError as error:
        problem = str(error)
    details = {}
    for gpu in gpus:
        try:
            details[gpu.name] = tf.config.experimental.get_device_details(gpu)
        except (ValueError, RuntimeError):
            details[gpu.name] = {}
    return {
        "machine_nvidia_gpus": machine_gpus,
        "physical": [device.name for device in physical],
        "gpus": len(gpus),
        "gpu_details": {name: {key: str(value) for key, value in info.items()} for name, info in details.items()},
        "logical": [device.name for device in tf.config.list_logical_devices()],
        "is_cuda_build": bool(build.get("is_cuda_build")),
        "cuda_version": build.get("cuda_version"),
        "cudnn_version": build.get("cudnn_version"),
        "problem": problem,
    }


# ---- 2. cuDNN -------------------------------------------------------------------------------
def op_types(graph_def) -> set[str]:
    """Every op type of a GraphDef, the functions of its library included (loop bodies,
    strategy.run and the gradient live there, not in the top-level nodes)."""
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types.update(node.op for node in function.node_def)
    return types


def traced_train_step_ops(trainer, global_batch: int) -> set[str]:
    """Trace (not run) the real multi-step training function on constant batches; its op types."""
    import tensorflow as tf

    config = trainer.model_config
    shape = [global_batch, config.context_length] if config.objective == "all" else [global_batch]
    batch = (tf.ones([global_batch, config.context_length], tf.int32), tf.ones(shape, tf.int32), tf.ones(shape))
    iterator = iter(trainer.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat()))
    concrete = trainer._train_steps.get_concrete_function(iterator, tf.constant(1, tf.int32))  # noqa: SLF001
    return op_types(concrete.graph.as_graph_def())


def cudnn_report(vocab_size: int, context_length: int, quick: bool, run_step: bool) -> list[dict]:
    """For the LSTM recipe and the notebook preset: eligibility per layer, CudnnRNN ops in the
    traced step, and (run_step, with a GPU) one executed step. (The default recipe is a transformer
    since issue 11: no recurrent layer, so nothing of its own to check here.)"""
    import tensorflow as tf

    from nextword.model.builder import is_cudnn_eligible
    from nextword.model.loop import Trainer
    from nextword.model.settings import TrainSettings
    from nextword.model.strategy import choose_precision

    rows = []
    for preset in (None, "notebook"):
        arch = "lstm" if preset is None else None
        settings = TrainSettings(data_dir="unused", out="unused", preset=preset, arch=arch, **(TINY_MODEL if quick else {}))
        config = settings.model_config(vocab_size, context_length)
        precision = choose_precision(None)
        trainer = Trainer(tf.distribute.get_strategy(), config, settings.training_choice("optimizer"),
                          settings.training_choice("learning_rate"), precision=precision)
        recurrent = [layer for layer in trainer.model.layers if layer.name.startswith("rnn_")]
        batch = 8 if quick else settings.training_choice("batch_size")
        found = sorted(op for op in traced_train_step_ops(trainer, batch) if op.startswith(CUDNN_OPS))
        executed = None
        if run_step and found:
            shape = [batch, config.context_length] if config.objective == "all" else [batch]
            data = tf.data.Dataset.from_tensors((tf.ones([batch, config.context_length], tf.int32),
                                                 tf.ones(shape, tf.int32), tf.ones(shape))).repeat()
            loss, _ = trainer.train_steps(iter(data), 1)
            executed = bool(tf.math.is_finite(loss))
        rows.append({
            "model": preset or "LSTM recipe",
            "config": f"{config.arch}, {config.layers} x {'bidirectional ' if config.bidirectional else ''}{config.units}, "
                      f"objective {config.objective}",
            "precision": precision,
            "recurrent_layers": len(recurrent),
            "eligible_layers": sum(is_cudnn_eligible(layer) for layer in recurrent),
            "cudnn_ops": found,
            "executed": executed,
        })
    return rows


# ---- 3. throughput --------------------------------------------------------------------------
def measure_worker(devices: int, data_dir: str, batch_per_device: int, steps: int, repeats: int, quick: bool) -> dict:
    """In a fresh process: windows/s of the real training step on the first `devices` GPUs."""
    from nextword.model.strategy import choose_precision, configure_devices, make_strategy

    plan = configure_devices(devices)
    import tensorflow as tf

    from nextword.model.loop import Trainer
    from nextword.model.settings import TrainSettings
    from nextword.tfrecords.manifest import load_manifest
    from nextword.tfrecords.reader import ReaderConfig, make_dataset

    manifest = load_manifest(data_dir)
    settings = TrainSettings(data_dir=data_dir, out="unused", **(TINY_MODEL if quick else {}))
    config = settings.model_config(manifest.vocab_size, manifest.context_length)
    strategy = make_strategy("auto", devices)
    if manifest.splits["train"].windows < 2 * batch_per_device * strategy.num_replicas_in_sync:
        sys.exit(f"{data_dir}: {manifest.splits['train'].windows} train windows, too few for batches of "
                 f"{batch_per_device} on {strategy.num_replicas_in_sync} device(s); pass a smaller --batch-per-device")
    precision = choose_precision(None)
    trainer = Trainer(strategy, config, settings.training_choice("optimizer"), settings.training_choice("learning_rate"),
                      precision=precision, jit_compile=settings.jit_compile_for(config.arch))
    reader_config = ReaderConfig(batch_size=batch_per_device, objective=config.objective)

    def dataset_fn(context: tf.distribute.InputContext):
        # Repeat epochs so a long measurement never runs dry on a small split.
        return make_dataset(data_dir, "train", reader_config, input_context=context, manifest=manifest).repeat()

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    per_call = min(settings.steps_per_call, steps)
    float(trainer.train_steps(iterator, per_call)[0])  # warm-up: trace, fill the prefetch buffer
    global_batch = batch_per_device * strategy.num_replicas_in_sync
    rates = []
    for _ in range(repeats):
        done, started = 0, time.perf_counter()
        while done < steps:
            loss, _ = trainer.train_steps(iterator, per_call)
            done += per_call
        float(loss)  # wait for the last step
        rates.append(done * global_batch / (time.perf_counter() - started))
    return {"devices": devices, "device_kind": "GPU" if plan.gpus else "CPU", "replicas": strategy.num_replicas_in_sync,
            "precision": precision, "global_batch": global_batch, "steps": steps, "windows_per_second_runs": rates,
            "windows_per_second": statistics.median(rates), **utilisation(config, precision, plan, statistics.median(rates))}


def utilisation(config, precision: str, plan, windows_per_second: float) -> dict:
    """The step's matmul FLOP/s and its share of the devices' calibrated matmul peak (model/flops.py),
    in the dtype the step computes in: what `nextword train` reports as utilisation."""
    from nextword.model import flops

    dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16" if plan.gpus else "float32"}.get(precision, "float32")
    peak = flops.matmul_peak(dtype, plan.gpus or 1)
    achieved, share = flops.utilisation(windows_per_second, flops.training_flops_per_window(config), peak["flops_per_second"])
    return {"achieved_flops_per_second": achieved, "peak_flops_per_second": peak["flops_per_second"],
            "utilisation": share, "peak_source": peak["source"]}


@dataclass(frozen=True)
class GpuCheckSettings:
    """`nextword gpu-check`'s options after the --quick defaults."""

    quick: bool = False
    data: str | None = None
    steps: int = 64
    repeats: int = 3
    batch_per_device: int = 512
    max_devices: int | None = None
    timeout: float = 900.0
    json: bool = False

    @classmethod
    def resolve(cls, quick: bool, steps: int | None, repeats: int | None, batch_per_device: int | None, **rest):
        return cls(quick=quick, steps=steps or (8 if quick else 64), repeats=repeats or (2 if quick else 3),
                   batch_per_device=batch_per_device or (32 if quick else 512), **rest)


def nextword_argv(*arguments: str) -> list[str]:
    """This interpreter's `nextword` (a console script on PATH may belong to another install)."""
    return [sys.executable, "-m", "nextword", *arguments]


def measure(devices: int, settings: GpuCheckSettings, data_dir: str) -> dict:
    argv = nextword_argv("gpu-check", "--worker", str(devices), "--data", data_dir,
                         "--batch-per-device", str(settings.batch_per_device), "--steps", str(settings.steps),
                         "--repeats", str(settings.repeats), *(["--quick"] if settings.quick else []))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=settings.timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        return {"devices": devices, "error": (done.stderr.strip() or done.stdout.strip())[-1500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare_data(settings: GpuCheckSettings) -> str:
    """--data, or a DATA_DIR ingested here (quick: the embedded corpus in a temp dir; full: a
    synthetic 8 MB corpus at vocabulary 20,000, cached in ~/.cache/nextword/gpu-check for later runs)."""
    if settings.data:
        return settings.data
    if settings.quick:
        scratch = tempfile.mkdtemp(prefix="gpu-check-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        out = os.path.join(scratch, "data")
        ingest(["--builtin", "--out", out, "--vocab-size", "500", "--context", "16"])
        return out
    from nextword.model.flops import cache_dir
    from nextword.synthetic import write_zipf_corpus

    work = os.path.join(cache_dir(), "gpu-check")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, "zipf-8mb.txt")
    if not os.path.exists(corpus):
        write_zipf_corpus(corpus + ".tmp", FULL_CORPUS_BYTES)
        os.replace(corpus + ".tmp", corpus)
    out = os.path.join(work, "data-v20000")
    ingest([corpus, "--out", out, "--vocab-size", "20000"])  # a finished DATA_DIR is reused, not rewritten
    return out


def ingest(arguments: list[str]) -> None:
    done = subprocess.run(nextword_argv("ingest", *arguments, "--json"), capture_output=True, text=True)
    if done.returncode != 0:
        from nextword.errors import ArtifactError

        raise ArtifactError(f"the check's own dataset could not be written: nextword ingest {' '.join(arguments)} "
                            f"exited {done.returncode}:\n{done.stderr.strip()[-3000:]}",
                            hint="pass a dataset of yours with --data DATA_DIR")


# ---- report ---------------------------------------------------------------------------------
def print_devices(devices: dict) -> None:
    print("devices")
    print(f"  NVIDIA GPUs the driver lists: {devices['machine_nvidia_gpus']}")
    print(f"  TensorFlow physical: {', '.join(devices['physical'])}")
    print(f"  TensorFlow logical:  {', '.join(devices['logical'])}")
    for name, info in devices["gpu_details"].items():
        print(f"  {name}: {info.get('device_name', '?')} (compute capability {info.get('compute_capability', '?')})")
    if devices["is_cuda_build"]:
        print(f"  TensorFlow built with CUDA {devices['cuda_version']}, cuDNN {devices['cudnn_version']}")
    else:
        print("  TensorFlow built without CUDA")
    if devices["problem"]:
        print(f"  FAIL: {devices['problem']}")
    elif not devices["gpus"]:
        print("  no GPU: TensorFlow sees none and the driver lists none; checking the CPU path only")


def print_cudnn(rows: list[dict], gpus: int) -> list[str]:
    failures = []
    print("cuDNN kernels (the real training step, traced)")
    for row in rows:
        eligible = f"{row['eligible_layers']}/{row['recurrent_layers']} recurrent layers cuDNN-eligible"
        if row["cudnn_ops"]:
            ops = f"CudnnRNN present ({', '.join(row['cudnn_ops'])})"
            if row["executed"] is not None:
                ops += ", executed" if row["executed"] else ", executed with a non-finite loss"
        elif gpus:
            ops = "CudnnRNN absent: FAIL (Keras fell back to the generic kernel on a GPU)"
        else:
            ops = "CudnnRNN absent (no GPU: Keras picks cuDNN only when a GPU is visible)"
        print(f"  {row['model']} ({row['config']}, precision {row['precision']}): "
              f"{eligible}; {ops}")
        if row["eligible_layers"] != row["recurrent_layers"]:
            failures.append(f"{row['model']}: not every recurrent layer is cuDNN-eligible")
        if gpus and not row["cudnn_ops"]:
            failures.append(f"{row['model']}: no CudnnRNN op in the training step on a GPU machine")
        if row["executed"] is False:
            failures.append(f"{row['model']}: the cuDNN step gave a non-finite loss")
    return failures


def print_throughput(rows: list[dict], settings: GpuCheckSettings, gpus: int) -> list[str]:
    print(f"throughput (median windows/s of {settings.repeats} timed runs of {settings.steps} steps, "
          f"batch {settings.batch_per_device} per device)")
    failures, base = [], None
    for row in rows:
        if "error" in row:
            print(f"  {row['devices']} device(s): FAIL\n    " + row["error"].replace("\n", "\n    "))
            failures.append(f"the measurement on {row['devices']} device(s) failed")
            continue
        kind = row["device_kind"]
        label = f"{row['devices']} {kind}{'s' if row['devices'] > 1 else ''}" if kind == "GPU" else "1 CPU device"
        base = base or row["windows_per_second"]
        speedup = f"  ({row['windows_per_second'] / base:.2f}x of 1)" if gpus > 1 else ""
        print(f"  {label}: {row['windows_per_second']:,.0f} windows/s, {row['replicas']} replica(s), "
              f"precision {row['precision']}{speedup}\n    {row['achieved_flops_per_second'] / 1e9:,.1f} GFLOP/s of matmuls, "
              f"{row['utilisation']:.0%} of the {row['peak_flops_per_second'] / 1e9:,.1f} GFLOP/s peak ({row['peak_source']})")
    if not gpus:
        print("  no GPU: measured the CPU only (run `nextword gpu-check` on the GPU machine for 1..N GPUs)")
    return failures


def run_check(settings: GpuCheckSettings) -> int:
    """The three checks and their report; the exit code (1 when a check failed)."""
    from nextword.quiet import load_tensorflow

    tf = load_tensorflow()
    import keras

    print(f"gpu-check: TensorFlow {tf.__version__}, Keras {keras.__version__}{' (quick)' if settings.quick else ''}\n")
    devices = device_report()
    print_devices(devices)
    data_dir = prepare_data(settings)
    from nextword.tfrecords.manifest import load_manifest

    manifest = load_manifest(data_dir)
    print()
    cudnn = cudnn_report(manifest.vocab_size, manifest.context_length, settings.quick, run_step=devices["gpus"] > 0)
    failures = [devices["problem"]] if devices["problem"] else []
    failures += print_cudnn(cudnn, devices["gpus"])
    print()
    counts = range(1, min(devices["gpus"], settings.max_devices or devices["gpus"]) + 1) if devices["gpus"] else [1]
    throughput = [measure(count, settings, data_dir) for count in counts]
    failures += print_throughput(throughput, settings, devices["gpus"])
    print()
    if failures:
        print("result: FAIL\n  " + "\n  ".join(failures))
    elif devices["gpus"]:
        print(f"result: OK on {devices['gpus']} GPU(s)")
    else:
        print("result: OK (no GPU: the cuDNN and multi-GPU checks need a GPU machine)")
    if settings.json:
        print(json.dumps({"devices": devices, "cudnn": cudnn, "throughput": throughput, "failures": failures,
                          "data_dir": data_dir if settings.data or not settings.quick else None, "quick": settings.quick}))
    return 1 if failures else 0


def gpu_check(
    quick: bool = typer.Option(False, "--quick", help="tiny model, data and step counts: a ~30 s smoke run"),
    data: Optional[str] = typer.Option(None, "--data", metavar="DATA_DIR", help="measure on this dataset (default: the embedded corpus with --quick, else a synthetic 8 MB corpus at vocabulary 20,000, cached in ~/.cache/nextword/gpu-check)"),
    steps: Optional[int] = typer.Option(None, help="timed steps per run (default 64; --quick 8)"),
    repeats: Optional[int] = typer.Option(None, help="timed runs per device count (default 3; --quick 2)"),
    batch_per_device: Optional[int] = typer.Option(None, help="default 512; --quick 32"),
    max_devices: Optional[int] = typer.Option(None, help="measure 1..this many GPUs (default: all)"),
    timeout: float = typer.Option(900, help="seconds per measurement subprocess"),
    json_output: bool = typer.Option(False, "--json", help="also print the results as one JSON object (the last line)"),
    worker: Optional[int] = typer.Option(None, hidden=True, help="internal: measure this many devices in this process"),
) -> None:
    """Check the GPUs before a long run: devices, cuDNN kernels, windows/s and utilisation on 1..N GPUs.

    Without a GPU it says so and checks what a CPU can. Exit 0 when every check passed, 1 otherwise."""
    settings = GpuCheckSettings.resolve(quick, steps, repeats, batch_per_device, data=data, max_devices=max_devices,
                                        timeout=timeout, json=json_output)
    if worker is not None:
        print(json.dumps(measure_worker(worker, settings.data, settings.batch_per_device, settings.steps,
                                        settings.repeats, settings.quick)))
        return
    code = run_check(settings)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    from nextword.clihelp import Command

    app.command("gpu-check", cls=Command)(gpu_check)
