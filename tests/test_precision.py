"""--precision: bfloat16 trains like float32 within its rounding, picks itself by hardware, and a
run refuses to resume under a precision whose optimizer state differs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from _cli import run_cli
from nextword.errors import ArtifactError, SettingsError
from nextword.model import checkpointing, strategy
from nextword.model.cli import precision_from_old_flag
from nextword.model.config import ModelConfig
from nextword.model.loop import Trainer
from nextword.model.settings import TrainSettings

TINY = dict(vocab_size=40, context_length=8, layers=2, units=16, embedding_dim=16, heads=2, dropout=0.0, objective="all")


def losses_and_logits(precision: str, arch: str, jit_compile: bool, steps: int = 10):
    config = ModelConfig(**TINY, arch=arch)
    trainer = Trainer(tf.distribute.get_strategy(), config, "adam", 1e-2, precision=precision, seed=3,
                      jit_compile=jit_compile)
    # counting sequences (every next word follows from the last): learnable in a few steps
    starts = np.random.default_rng(0).integers(0, 38, size=(16, 1))
    sequence = ((starts + np.arange(9)) % 38 + 2).astype(np.int32)
    context, targets = sequence[:, :-1].copy(), sequence[:, 1:]
    context[:4, :3] = 0
    batch = (context, targets, (targets > 0).astype(np.float32))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    losses = []
    for _ in range(steps):
        loss, weight = trainer.train_steps(iterator, 1)
        losses.append(float(loss / weight))
    return trainer, np.array(losses), trainer.model(context).numpy()


@pytest.mark.parametrize("arch, jit_compile", [("lstm", False), ("transformer", True), ("transformer", False)])
def test_bfloat16_trains_like_float32_within_its_rounding(arch, jit_compile):
    exact, exact_losses, exact_logits = losses_and_logits("float32", arch, jit_compile)
    brain, brain_losses, brain_logits = losses_and_logits("mixed_bfloat16", arch, jit_compile)
    # bfloat16 needs no loss scaling (float32's exponent), keeps float32 weights, returns float32 logits
    assert not isinstance(brain.optimizer, keras.optimizers.LossScaleOptimizer)
    assert brain.model.get_layer("logits").compute_dtype == "bfloat16"
    assert all(variable.dtype == "float32" for variable in brain.model.trainable_variables)
    assert brain_logits.dtype == np.float32
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for later models
    assert exact_losses[-1] < 0.95 * exact_losses[0] and brain_losses[-1] < 0.95 * brain_losses[0]  # both learn
    # bfloat16 keeps 8 significant bits (~0.4% a rounding); 10 steps of adam at 1e-2 stayed within 0.2%
    np.testing.assert_allclose(brain_losses, exact_losses, rtol=1e-2)
    np.testing.assert_allclose(brain_logits, exact_logits, atol=0.1 * np.abs(exact_logits).max())
    assert not np.array_equal(brain_losses, exact_losses)  # it really computed in bfloat16


def test_precision_by_hardware(monkeypatch):
    def with_gpus(*capabilities):
        monkeypatch.setattr(strategy, "gpu_compute_capabilities", lambda: list(capabilities))
        return strategy.choose_precision(None)

    assert with_gpus() == "float32"  # a CPU
    assert with_gpus((8, 0), (9, 0)) == "mixed_bfloat16"  # Ampere, Hopper: bfloat16, no loss scaling
    assert with_gpus((7, 5), (8, 6)) == "mixed_float16"  # one Turing among them: float16 with loss scaling
    assert with_gpus((8, 0)) == "mixed_bfloat16"
    monkeypatch.setattr(strategy, "gpu_compute_capabilities", lambda: [(8, 0)])
    assert strategy.choose_precision("float32") == "float32"  # --precision wins


def test_precision_settings_and_the_flag_before_0_3():
    with pytest.raises(SettingsError, match="--precision must be one of"):
        TrainSettings(data_dir="d", out="o", precision="float16")
    assert precision_from_old_flag(None, None) is None
    assert precision_from_old_flag(True, None) == "mixed_float16"
    assert precision_from_old_flag(False, "float32") == "float32"
    with pytest.raises(SettingsError, match="--mixed-precision means --precision mixed_float16"):
        precision_from_old_flag(True, "mixed_bfloat16")


def test_the_cli_lists_and_enforces_the_precisions(tmp_path):
    listed = run_cli("train", "--help")
    assert "mixed_bfloat16" in listed.output and "--mixed-precision" not in listed.output  # the old flag is hidden
    refused = run_cli("train", str(tmp_path), "--out", str(tmp_path / "run"), "--precision", "half")
    assert refused.exit_code == 2 and "half" in refused.output and "Traceback" not in refused.output


def test_resume_refuses_a_precision_with_other_optimizer_state(tmp_path):
    config = ModelConfig(**TINY)
    run_dir = str(tmp_path / "run")
    checkpointing.write_run_file(run_dir, {"precision": "mixed_float16"}, config, "data", "fp")
    with pytest.raises(ArtifactError, match="trained under --precision mixed_float16") as refused:
        checkpointing.check_resumable(run_dir, config, "fp", "float32")
    assert "--precision mixed_float16" in refused.value.hint
    checkpointing.check_resumable(run_dir, config, "fp", "mixed_float16")
    checkpointing.write_run_file(run_dir, {"precision": "float32"}, config, "data", "fp")
    checkpointing.check_resumable(run_dir, config, "fp", "mixed_bfloat16")  # the same variables: allowed
    checkpointing.write_run_file(run_dir, {"mixed_precision": None}, config, "data", "fp")  # before 0.3: not recorded
    checkpointing.check_resumable(run_dir, config, "fp", "mixed_float16")
