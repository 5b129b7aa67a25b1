"""GPU paths tested on CPU: mixed precision's vocabulary projection, --devices on GPU machines,
CUDA libraries that did not load, 2 replicas == 1 under mixed precision, and `nextword gpu-check`."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from _cli import run_cli
from _train_data import write_data_dir
from nextword.model import strategy as strategy_module
from nextword.model.builder import build_model
from nextword.model.checkpointing import make_checkpoint
from nextword.model.config import ModelConfig
from nextword.model.loop import Trainer
from nextword.model.strategy import DevicePlan, configure_devices, nvidia_gpus_on_machine, plan_devices
from nextword.errors import ResourceError, SettingsError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_CHECK = os.path.join(REPO, "bench", "gpu_check")
TINY = dict(vocab_size=30, context_length=5, layers=1, units=8, embedding_dim=4, dropout=0.0)


def load_gpu_check():
    from nextword import gpu_check

    return gpu_check


# ---- mixed precision: the vocabulary projection in float16, float32 logits --------------------
@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_mixed_precision_projects_the_vocabulary_in_float16_and_returns_float32_logits(arch):
    config = ModelConfig(**TINY, arch=arch, heads=2, objective="all")
    trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-2, precision="mixed_float16")
    projection = trainer.model.get_layer("logits")
    assert projection.compute_dtype == "float16"  # the hidden x vocabulary matmul (was float32)
    assert projection.output.dtype == "float16" and projection.kernel.dtype == "float32"  # float32 master weights
    assert trainer.model.output.dtype == "float32"
    assert trainer.model(tf.zeros([2, 5], tf.int32)).dtype == tf.float32
    batch = (tf.ones([4, 5], tf.int32), tf.fill([4, 5], 3), tf.ones([4, 5]))
    before = projection.kernel.numpy().copy()
    # 4 steps: dynamic loss scaling starts at 2**15 and skips the steps that overflow float16 while it
    # halves (the transformer's first two here); every later step applies.
    loss, weight = trainer.train_steps(iter(tf.data.Dataset.from_tensors(batch).repeat()), 4)
    assert np.isfinite(float(loss)) and float(weight) == 80.0
    assert not np.allclose(before, projection.kernel.numpy())


def test_a_checkpoint_of_the_network_before_the_float32_cast_layer_still_loads(tmp_path):
    config = ModelConfig(**TINY, objective="last")
    # The network as built before the cast layer existed: a float32 "logits" Dense as the output.
    context = keras.Input(shape=(5,), dtype="int32")
    hidden = keras.layers.Embedding(30, 4, name="embedding")(context)
    hidden = keras.layers.LSTM(8, name="rnn_0")(hidden)
    old = keras.Model(context, keras.layers.Dense(30, dtype="float32", name="logits")(hidden))
    path = make_checkpoint(old).save(str(tmp_path / "ckpt"))
    new = build_model(config)
    assert new.get_layer("logits_float32").weights == []
    make_checkpoint(new).restore(path).expect_partial().assert_existing_objects_matched()
    ids = tf.constant([[0, 3, 4, 5, 6], [7, 8, 9, 2, 1]], tf.int32)
    np.testing.assert_array_equal(old(ids).numpy(), new(ids).numpy())


# ---- --devices: the first N GPUs, or N logical CPU devices --------------------------------------
@pytest.mark.parametrize("requested,gpus,plan", [
    (None, 0, DevicePlan(gpus=0, cpu_devices=1)),
    (3, 0, DevicePlan(gpus=0, cpu_devices=3)),
    (None, 4, DevicePlan(gpus=4, cpu_devices=1)),
    (1, 4, DevicePlan(gpus=1, cpu_devices=1)),
    (2, 4, DevicePlan(gpus=2, cpu_devices=1)),
    (4, 4, DevicePlan(gpus=4, cpu_devices=1)),
])
def test_devices_means_the_first_n_gpus_or_n_cpu_devices(requested, gpus, plan):
    assert plan_devices(requested, gpus) == plan
    assert plan.replicas == (requested or gpus or 1)


def test_more_devices_than_gpus_is_refused_naming_both_numbers():
    with pytest.raises(SettingsError, match=r"--devices 5 .*sees 4 GPU") as raised:
        plan_devices(5, 4)
    assert "--devices 4 or fewer" in raised.value.hint


class FakeGpu:
    device_type = "GPU"

    def __init__(self, index: int):
        self.name = f"/physical_device:GPU:{index}"


def test_configure_devices_makes_only_the_first_n_gpus_visible(monkeypatch):
    gpus = [FakeGpu(index) for index in range(4)]
    made_visible = []
    monkeypatch.setattr(strategy_module.tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(strategy_module.tf.config, "set_visible_devices",
                        lambda devices, kind=None: made_visible.append(([d.name for d in devices], kind)))
    monkeypatch.setattr(strategy_module, "nvidia_gpus_on_machine", lambda: 4)
    assert configure_devices(2) == DevicePlan(gpus=2, cpu_devices=1)
    assert made_visible == [(["/physical_device:GPU:0", "/physical_device:GPU:1"], "GPU")]
    made_visible.clear()
    assert configure_devices(None) == DevicePlan(gpus=4, cpu_devices=1)
    assert made_visible == []  # all four: nothing to hide
    with pytest.raises(SettingsError, match="--devices 8"):
        configure_devices(8)


# ---- CUDA libraries that did not load -------------------------------------------------------------
def test_nvidia_gpus_are_counted_from_the_driver_not_from_tensorflow(tmp_path, monkeypatch):
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"):
        (dev / name).touch()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert nvidia_gpus_on_machine(str(proc), str(dev)) == 2  # no /proc entry: the device files
    proc.mkdir()
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (proc / bus).mkdir()
    assert nvidia_gpus_on_machine(str(proc), str(dev)) == 3
    for visible, expected in (("1", 1), ("0,2", 2), ("", 0), ("-1", 0), ("0,-1,1", 1)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert nvidia_gpus_on_machine(str(proc), str(dev)) == expected, visible
    assert nvidia_gpus_on_machine(str(tmp_path / "none"), str(tmp_path / "none")) == 0


def test_gpus_tensorflow_cannot_use_are_a_resource_error_unless_cpu_is_allowed(monkeypatch):
    monkeypatch.setattr(strategy_module, "nvidia_gpus_on_machine", lambda: 2)
    with pytest.raises(ResourceError) as raised:
        configure_devices(None)
    assert raised.value.exit_code == 74
    assert "this machine has 2 NVIDIA GPU(s) but TensorFlow cannot use them (its CUDA libraries did not load)" in raised.value.message
    assert "tensorflow[and-cuda]==2.21.*" in raised.value.hint and "--allow-cpu" in raised.value.hint
    assert configure_devices(None, allow_cpu=True) == DevicePlan(gpus=0, cpu_devices=1)


def test_train_exits_74_with_the_message_and_allow_cpu_gets_past_it(monkeypatch, tmp_path):
    monkeypatch.setattr(strategy_module, "nvidia_gpus_on_machine", lambda: 1)
    missing = str(tmp_path / "no-data")
    refused = run_cli("train", missing, "--out", str(tmp_path / "run"), "--no-progress")
    assert refused.exit_code == 74, refused.output
    assert "1 NVIDIA GPU(s) but TensorFlow cannot use them" in refused.stderr and "Traceback" not in refused.output
    allowed = run_cli("train", missing, "--out", str(tmp_path / "run"), "--no-progress", "--allow-cpu")
    assert allowed.exit_code not in (0, 74) and "NVIDIA" not in allowed.output  # on to the missing DATA_DIR


# ---- 2 replicas == 1 under mixed precision ----------------------------------------------------------
# Like tests/test_train_loop.py's float32 test, in a subprocess (logical CPU devices must exist
# before TensorFlow's runtime starts), but both runs in ONE process to pay TF's start-up once:
# the CPU split in two, 1 replica under the default strategy, then 2 under MirroredStrategy.
MIXED_ONE_AND_TWO_REPLICAS = textwrap.dedent(
    """
    import sys, numpy as np
    from nextword.model.strategy import split_cpu, make_strategy
    data_dir, out, arch = sys.argv[1], sys.argv[2], sys.argv[3]
    split_cpu(2)
    import tensorflow as tf
    from nextword.model.config import ModelConfig
    from nextword.model.loop import Trainer
    from nextword.tfrecords.reader import ReaderConfig, make_dataset
    config = ModelConfig(vocab_size=22, context_length=6, arch=arch, layers=2, units=16, embedding_dim=8, heads=2,
                         dropout=0.0, objective="all")
    saved = {}
    for name, strategy in (("one", tf.distribute.get_strategy()), ("two", make_strategy("mirrored", 2))):
        assert strategy.num_replicas_in_sync == (1 if name == "one" else 2)
        trainer = Trainer(strategy, config, "sgd", 0.5, precision="mixed_float16", seed=7)
        # Below the float16 edge for both: whether a step overflows at 2**15 depends on how many terms each
        # replica sums in float16 (the transformer's residual stream overflowed on 1 replica, not on 2).
        trainer.optimizer.dynamic_scale.assign(2.0 ** 10)
        saved.update({f"{name}_initial_{i}": v.numpy() for i, v in enumerate(trainer.model.trainable_variables)})
        def dataset_fn(ctx):
            reader = ReaderConfig(batch_size=ctx.get_per_replica_batch_size(16), objective="all", seed=1)
            return make_dataset(data_dir, "train", reader, input_context=ctx)
        loss, weight = trainer.train_steps(iter(strategy.distribute_datasets_from_function(dataset_fn)), 2)
        saved[f"{name}_loss"] = float(loss / weight)
        saved[f"{name}_loss_scale"] = float(trainer.optimizer.dynamic_scale.numpy())  # halved by a skipped step
        saved.update({f"{name}_{i}": v.numpy() for i, v in enumerate(trainer.model.trainable_variables)})
    np.savez(out, **saved)
    """
)


@pytest.mark.slow
# atol: the transformer sums more float16 terms per gradient (every position's residual stream reaches
# the position embeddings), so its half-batch partial sums round differently by up to ~1e-3 after 2 steps.
# lstm: weights of ~0.02-0.07 sit where float16's spacing is 1.5e-5-6e-5, so one rounding apart is up to
# ~6e-5 (CI saw 3.4e-5 against the old atol of 1e-5): allow a few float16 ulps at that scale.
@pytest.mark.parametrize("arch, variable_count, atol", [("lstm", 9, 1.5e-4), ("transformer", 30, 1e-3)])
def test_mixed_precision_two_replicas_equal_one_replica_at_the_same_global_batch(tmp_path, arch, variable_count, atol):
    data_dir = write_data_dir(str(tmp_path / "data"))
    out = str(tmp_path / "steps.npz")
    subprocess.run([sys.executable, "-c", MIXED_ONE_AND_TWO_REPLICAS, data_dir, out, arch], check=True, timeout=240,
                   env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True)
    saved = dict(np.load(out))
    assert saved["one_loss_scale"] == saved["two_loss_scale"] > 1  # loss scaling on, the same steps applied
    np.testing.assert_allclose(saved["one_loss"], saved["two_loss"], rtol=1e-3)
    variables = sorted(key[4:] for key in saved if key.startswith("one_") and key[4:].isdigit())
    # lstm: embedding, 2 x (kernel, recurrent kernel, bias), logits kernel and bias; transformer: token and
    # position embeddings, 2 blocks x (2 layer norms x 2 + 4 dense x 2), final norm x 2, logits x 2
    assert len(variables) == variable_count
    for index in variables:
        one, two, initial = saved[f"one_{index}"], saved[f"two_{index}"], saved[f"one_initial_{index}"]
        np.testing.assert_array_equal(initial, saved[f"two_initial_{index}"])
        # float16 activations and per-replica float16 partial sums: equal to fp16 precision,
        # and far closer than the step moved the weights (a broken loop that never applies fails here).
        np.testing.assert_allclose(one, two, rtol=1e-3, atol=atol, err_msg=f"variable {index}")
        assert np.max(np.abs(one - two)) < 0.05 * np.max(np.abs(one - initial)), f"variable {index}"


# ---- nextword gpu-check ---------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [dict(arch="lstm", objective="all"), dict(arch="gru", bidirectional=True, objective="last")])
def test_the_graph_search_finds_cudnn_ops_exactly_when_keras_selects_cudnn(monkeypatch, overrides):
    gpu_check = load_gpu_check()
    config = ModelConfig(**{**TINY, **overrides})
    on_cpu = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3)
    assert not any(op.startswith("CudnnRNN") for op in gpu_check.traced_train_step_ops(on_cpu, 4))
    # Keras picks cuDNN when it sees a GPU: make it see one (tracing never runs the ops).
    monkeypatch.setattr(importlib.import_module("keras.src.backend.tensorflow.rnn"), "_is_gpu_available", lambda: True)
    as_on_gpu = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-3, precision="mixed_float16")
    ops = gpu_check.traced_train_step_ops(as_on_gpu, 4)
    assert {"CudnnRNNV3", "CudnnRNNBackpropV3"} <= ops  # forward in the step, backward in its gradient


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_and_says_no_gpu(tiny_dataset):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "nextword", "gpu-check", "--quick", "--data", tiny_dataset, "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.strip().startswith("no GPU:") for line in lines), done.stdout
    assert sum("CudnnRNN absent (no GPU" in line for line in lines) == 2, done.stdout
    assert "1 CPU device:" in done.stdout and "result: OK (no GPU" in done.stdout
    report = json.loads(lines[-1])
    assert report["devices"]["gpus"] == 0 and report["failures"] == []
    assert all(row["eligible_layers"] == row["recurrent_layers"] >= 1 and row["cudnn_ops"] == [] for row in report["cudnn"])
    (measured,) = report["throughput"]
    assert measured["device_kind"] == "CPU" and measured["windows_per_second"] > 0 and len(measured["windows_per_second_runs"]) == 2
    # utilisation as `nextword train` reports it: the model's FLOPs a window x windows/s over the calibrated peak
    assert measured["precision"] == "float32" and measured["peak_flops_per_second"] > 0
    assert measured["utilisation"] == pytest.approx(measured["achieved_flops_per_second"] / measured["peak_flops_per_second"])
    assert "GFLOP/s of matmuls" in done.stdout


def test_the_old_bench_script_runs_the_command():
    done = subprocess.run([sys.executable, GPU_CHECK, "--help"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, COLUMNS="200"))
    assert done.returncode == 0 and "--batch-per-device" in done.stdout and "Check the GPUs" in done.stdout
