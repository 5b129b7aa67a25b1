"""`nextword train` settings: one frozen dataclass; typer options map onto its fields.

Model and optimizer fields default to None, meaning "the preset's value, else our recipe's
default". Our recipe's model defaults live in `ModelConfig`; its optimizer defaults in
`RECIPE_DEFAULTS` below; the notebook's in `model.config.NOTEBOOK_PRESET` and
`NOTEBOOK_TRAINING`. Explicit flags always win over a preset.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nextword.errors import SettingsError
from nextword.model.config import NOTEBOOK_PRESET, PRECISIONS, RECIPE_ARCH, TRANSFORMER_DEFAULTS, ModelConfig
from nextword.model.ngram import DEFAULT_ORDER as DEFAULT_NGRAM_ORDER
from nextword.model.schedule import SCHEDULES

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
OPTIMIZERS = ("adamw", "adam", "rmsprop")
PRESETS = ("notebook",)
MODEL_FIELDS = ("arch", "layers", "units", "embedding_dim", "dropout", "bidirectional", "objective", "heads", "ff_dim",
                "tie_embeddings", "ignore_padding", "positions")
OPTIMIZATION_FIELDS = ("optimizer", "learning_rate", "batch_size", "weight_decay", "schedule", "warmup_steps",
                       "clip_norm", "patience")

# Our recipe's optimisation (change it here only), chosen by measurement (bench/recipe_bench.py on
# three real corpora, 180 s on 2 cores; bench/RESULTS.md, README "How the defaults were chosen"):
# Adam 1e-3, no clipping, untied; cosine decay, clipping, AdamW 2e-3 and tying each lost on the King
# James Bible. wsd (hold the peak, decay over the last fifth) against constant: KJV 19.02 vs 19.56
# held-out perplexity (top-1 33.9% vs 33.3%), Vim help 192.1 vs 191.1, the embedded corpus equal
# (early stopping ends it before the decay). weight_decay is adamw's, used when --optimizer adamw is
# asked for. Early stopping after `patience` validations without a better held-out loss.
RECIPE_DEFAULTS = dict(optimizer="adam", learning_rate=1e-3, batch_size=128, weight_decay=0.1, schedule="wsd",
                       warmup_steps=0, clip_norm=0.0, patience=5)
# The notebook: model.compile(optimizer='rmsprop') (Keras default lr 1e-3), fit(batch_size=512),
# constant rate, no clipping; it kept its best weights too (ModelCheckpoint save_best_only). Its
# EarlyStopping watched the training loss with patience 50 epochs, which never ends a run of minutes:
# patience 0 here. (With our patience of 5 validations the preset stopped after ~20 s of a 180 s
# budget on all three benchmark corpora, a baseline handicapped in our favour.)
NOTEBOOK_TRAINING = dict(optimizer="rmsprop", learning_rate=1e-3, batch_size=512, weight_decay=0.0,
                         schedule="constant", warmup_steps=0, clip_norm=0.0, patience=0)
CHECKPOINT_CHOICES = ("best", "latest")


MAX_NGRAM_ORDER = 8


def check_ngram_order(order: int | None) -> None:
    if order is not None and order != 0 and not 2 <= order <= MAX_NGRAM_ORDER:
        raise SettingsError(f"--ngram-order must be 0 (the network alone) or 2..{MAX_NGRAM_ORDER}, got {order}",
                            hint=f"the default, {DEFAULT_NGRAM_ORDER}, is what bench/RESULTS.md measured")


@dataclass(frozen=True)
class Optimization:
    """The optimisation a run uses, after preset and defaults (recorded in run.json and the card)."""

    optimizer: str
    learning_rate: float
    batch_size: int
    weight_decay: float
    schedule: str
    warmup_steps: int
    clip_norm: float
    patience: int  # 0: no early stopping

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainSettings:
    data_dir: str  # the dataset (a blend's first: its vocabulary and tokenizer are every source's)
    out: str
    # a weighted blend: every DATA_DIR in order (empty for one), and their weights as given ("0.7,0.3")
    data_dirs: tuple[str, ...] = ()
    weights: str | None = None
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
    tie_embeddings: bool | None = None
    ignore_padding: bool | None = None
    positions: str | None = None
    # optimisation (None: preset, else RECIPE_DEFAULTS)
    batch_size: int | None = None  # global, over all replicas and workers
    optimizer: str | None = None
    learning_rate: float | None = None  # the peak rate of the schedule
    weight_decay: float | None = None  # adamw only
    schedule: str | None = None
    warmup_steps: int | None = None
    clip_norm: float | None = None  # 0: off
    patience: int | None = None  # validations without improvement before stopping; 0: never stop early
    epochs: int = 5
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of training (validation and export excluded)
    seed: int = 0
    # distribution and hardware
    strategy: str = "auto"
    devices: int | None = None  # the first N GPUs; without GPUs, the CPU split into N logical devices
    allow_cpu: bool = False  # train on the CPU when the machine's GPUs are unusable (CUDA did not load)
    precision: str | None = None  # a PRECISIONS policy; None: by hardware (model.strategy.choose_precision)
    jit_compile: bool | None = None  # None: see jit_compile_for
    steps_per_call: int = 8  # train steps run inside one tf.function call (cuts Python overhead)
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism()
    # run directory
    checkpoint_every: int = 200
    validate_every: int | None = None  # steps; None: see model.validation.auto_validate_every
    validation_sample: int = 2048  # val windows scored at each validation (the whole split at the end)
    export_checkpoint: str = "best"  # which weights the export holds: the best held-out or the latest
    ngram_order: int | None = None  # the export's n-gram mixed with the network; 0: none; None: see export_ngram_order
    context_cache: bool = True  # the mixture's third part, the window's own words (model/context_cache.py)
    peak_flops: float | None = None  # FLOP/s utilisation is measured against; None: a cached matmul calibration
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
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise SettingsError(f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.export_checkpoint not in CHECKPOINT_CHOICES:
            raise SettingsError(f"--export-checkpoint must be one of {CHECKPOINT_CHOICES}, got {self.export_checkpoint!r}")
        positive = ("batch_size", "epochs", "max_steps", "devices", "checkpoint_every", "steps_per_call", "shuffle_buffer",
                    "validate_every", "validation_sample")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SettingsError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_ngram_order(self.ngram_order)
        if self.weights is not None and len(self.data_dirs) < 2:
            raise SettingsError(f"--weights {self.weights} with one DATA_DIR: a weight is a share of a blend's windows",
                                hint="pass several DATA_DIRs (`train DATA_A DATA_B --weights 0.7,0.3`), or drop --weights")
        self.blend_weights()
        if self.peak_flops is not None and not self.peak_flops > 0:
            raise SettingsError(f"--peak-flops must be > 0 FLOP/s, got {self.peak_flops:g}", hint="e.g. 312e12 for an A100's bf16 matmul")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise SettingsError(f"--learning-rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "warmup_steps", "clip_norm", "patience"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SettingsError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        optimizer = self._pick("optimizer", NOTEBOOK_TRAINING if self.preset == "notebook" else {}, RECIPE_DEFAULTS)
        if self.weight_decay and optimizer != "adamw":  # it would be ignored: say so
            raise SettingsError(f"--weight-decay {self.weight_decay:g} is for --optimizer adamw, got --optimizer {optimizer}",
                                hint="add --optimizer adamw, or drop --weight-decay")
        if self.time_budget is not None and not self.time_budget > 0:
            raise SettingsError(f"--time-budget must be > 0 seconds, got {self.time_budget}")
        if self.devices is not None and self.devices > 1 and self.strategy == "default":
            raise SettingsError(
                f"--devices {self.devices} with --strategy default would train on one device only",
                hint="use --strategy mirrored (or auto) with --devices",
            )

    def blend_weights(self) -> tuple[float, ...]:
        """Each DATA_DIR's share of the windows drawn, normalised to sum 1 (equal without --weights);
        () for one DATA_DIR."""
        count = len(self.data_dirs)
        if count < 2:
            return ()
        if self.weights is None:
            return tuple(1.0 / count for _ in range(count))
        try:
            weights = [float(part) for part in self.weights.split(",")]
        except ValueError:
            raise SettingsError(f"--weights must be numbers separated by commas, got {self.weights!r}",
                                hint="e.g. --weights 0.7,0.3 (one per DATA_DIR, in order)") from None
        if len(weights) != count:
            raise SettingsError(f"--weights has {len(weights)} value(s) for {count} DATA_DIRs",
                                hint="give one weight per DATA_DIR, in the order of the DATA_DIRs")
        if not all(math.isfinite(weight) and weight > 0 for weight in weights):
            raise SettingsError(f"--weights must all be > 0, got {self.weights}",
                                hint="drop a DATA_DIR instead of weighting it 0")
        return tuple(weight / sum(weights) for weight in weights)

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
            if chosen["ignore_padding"] is False and self.positions is None:
                chosen["positions"] = "learned"  # 0.2's window positions: the learned embedding they were trained with
        return ModelConfig(
            vocab_size=vocab_size,
            context_length=context_length,
            **{name: value for name, value in chosen.items() if value is not None},
        )

    def training_choice(self, name: str):
        """One of OPTIMIZATION_FIELDS after preset and defaults."""
        preset = NOTEBOOK_TRAINING if self.preset == "notebook" else {}
        if name == "weight_decay" and self._pick("optimizer", preset, RECIPE_DEFAULTS) != "adamw":
            return 0.0  # decoupled weight decay belongs to adamw (a preset's rmsprop has none)
        return self._pick(name, preset, RECIPE_DEFAULTS)

    def jit_compile_for(self, arch: str) -> bool:
        """XLA for the replica's forward + backward pass (model.loop.Trainer). Default by measurement
        (bench/step_bench.py, 2 cores, float32): the transformer steps x1.42-1.54 faster compiled, an LSTM
        3.2x slower, so recurrent models stay uncompiled; on GPUs Keras runs them on cuDNN's kernels,
        which XLA would replace."""
        return self.jit_compile if self.jit_compile is not None else arch == "transformer"

    def export_ngram_order(self) -> int:
        """The export's n-gram order: asked for, else none for the notebook preset (the notebook had
        none: its baseline stays the notebook's), else DEFAULT_NGRAM_ORDER."""
        if self.ngram_order is not None:
            return self.ngram_order
        return 0 if self.preset == "notebook" else DEFAULT_NGRAM_ORDER

    def optimization(self) -> Optimization:
        return Optimization(**{name: self.training_choice(name) for name in OPTIMIZATION_FIELDS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
