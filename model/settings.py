"""`nextword train` settings: one frozen dataclass; typer options map onto its fields.

Model and optimizer fields default to None, meaning "the preset's value, else our recipe's
default". Our recipe's model defaults live in `ModelConfig`; its optimizer defaults in
`RECIPE_DEFAULTS` below; the notebook's in `model.config.NOTEBOOK_PRESET` and
`NOTEBOOK_TRAINING`. Explicit flags always win over a preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nextword.errors import SettingsError
from model.config import NOTEBOOK_PRESET, RECIPE_ARCH, TRANSFORMER_DEFAULTS, ModelConfig

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "rmsprop")
PRESETS = ("notebook",)
MODEL_FIELDS = ("arch", "layers", "units", "embedding_dim", "dropout", "bidirectional", "objective", "heads", "ff_dim")

# Our recipe's optimizer and batch (a benchmark tunes them; change them here only).
RECIPE_DEFAULTS = dict(optimizer="adam", learning_rate=1e-3, batch_size=128)  # bench/tune_defaults.py picked these
# The notebook: model.compile(optimizer='rmsprop') (Keras default lr 1e-3), fit(batch_size=512).
NOTEBOOK_TRAINING = dict(optimizer="rmsprop", learning_rate=1e-3, batch_size=512)


@dataclass(frozen=True)
class TrainSettings:
    data_dir: str
    out: str
    preset: str | None = None
    # model (None: preset, else ModelConfig's default)
    arch: str | None = None
    layers: int | None = None
    units: int | None = None
    embedding_dim: int | None = None
    dropout: float | None = None
    bidirectional: bool | None = None
    objective: str | None = None
    heads: int | None = None
    ff_dim: int | None = None
    # optimisation (None: preset, else RECIPE_DEFAULTS)
    batch_size: int | None = None  # global, over all replicas and workers
    optimizer: str | None = None
    learning_rate: float | None = None
    epochs: int = 5
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of training (validation and export excluded)
    seed: int = 0
    # distribution and hardware
    strategy: str = "auto"
    devices: int | None = None  # the first N GPUs; without GPUs, the CPU split into N logical devices
    allow_cpu: bool = False  # train on the CPU when the machine's GPUs are unusable (CUDA did not load)
    mixed_precision: bool | None = None  # None: on when a GPU is present
    steps_per_call: int = 8  # train steps run inside one tf.function call (cuts Python overhead)
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism()
    # run directory
    checkpoint_every: int = 200
    resume: bool | None = None  # None: resume when RUN_DIR holds a checkpoint
    export: bool = True
    progress: bool = True
    shuffle_buffer: int = 16_384

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise SettingsError(f"--preset must be one of {PRESETS}, got {self.preset!r}")
        if self.strategy not in STRATEGIES:
            raise SettingsError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise SettingsError(f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        positive = ("batch_size", "epochs", "max_steps", "devices", "checkpoint_every", "steps_per_call", "shuffle_buffer")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise SettingsError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise SettingsError(f"--time-budget must be > 0 seconds, got {self.time_budget}")
        if self.devices is not None and self.devices > 1 and self.strategy == "default":
            raise SettingsError(
                f"--devices {self.devices} with --strategy default would train on one device only",
                hint="use --strategy mirrored (or auto) with --devices",
            )

    def _pick(self, name: str, preset_values: dict, defaults: dict):
        value = getattr(self, name)
        if value is not None:
            return value
        return preset_values.get(name, defaults.get(name))

    def model_config(self, vocab_size: int, context_length: int) -> ModelConfig:
        preset = NOTEBOOK_PRESET if self.preset == "notebook" else {}
        arch = self._pick("arch", preset, {}) or RECIPE_ARCH
        # A transformer's recipe is its own (bench/tune_defaults.py); ModelConfig's defaults are the LSTM's.
        arch_defaults = TRANSFORMER_DEFAULTS if arch == "transformer" else {}
        chosen = {name: self._pick(name, preset, arch_defaults) for name in MODEL_FIELDS}
        chosen["arch"] = arch
        if arch == "transformer":
            units = chosen["units"] or ModelConfig.units
            if self.embedding_dim is not None and self.embedding_dim != units:
                raise SettingsError(
                    f"--embedding-dim {self.embedding_dim} with --arch transformer: its embeddings are --units wide ({units})",
                    hint="drop --embedding-dim (or set --units)",
                )
            chosen["embedding_dim"] = units
        return ModelConfig(
            vocab_size=vocab_size,
            context_length=context_length,
            **{name: value for name, value in chosen.items() if value is not None},
        )

    def training_choice(self, name: str):
        """optimizer / learning_rate / batch_size after preset and defaults."""
        preset = NOTEBOOK_TRAINING if self.preset == "notebook" else {}
        return self._pick(name, preset, RECIPE_DEFAULTS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
