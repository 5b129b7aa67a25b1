"""The model's settings: one frozen dataclass, JSON round trip, validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nextword.errors import SettingsError

ARCHITECTURES = ("lstm", "gru")
OBJECTIVES = ("last", "all")


@dataclass(frozen=True)
class ModelConfig:
    """What the network looks like. vocab_size and context_length come from the dataset.

    objective: "last" predicts the window's final word (the notebook's recipe);
               "all" predicts every next word inside the window (unidirectional only).
    """

    vocab_size: int
    context_length: int
    # Our recipe's defaults, chosen by bench/tune_defaults.py (table in bench/RESULTS.md): on
    # the quality benchmark, strong dropout and a modest learning rate keep held-out perplexity
    # falling past the first epoch, where lighter-regularised candidates overfit.
    arch: str = "lstm"
    layers: int = 1
    units: int = 256
    embedding_dim: int = 128
    dropout: float = 0.5
    bidirectional: bool = False
    objective: str = "all"

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise SettingsError(f"--arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.objective not in OBJECTIVES:
            raise SettingsError(f"--objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.objective == "all" and self.bidirectional:
            raise SettingsError(
                "--objective all cannot be combined with --bidirectional: a backward layer "
                "would see the very words it is asked to predict",
                hint="use --objective last with --bidirectional, or drop --bidirectional",
            )
        for name in ("vocab_size", "context_length", "layers", "units", "embedding_dim"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < 3:
            raise SettingsError(f"vocab_size must be at least 3 (<pad>, <unk>, one word), got {self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingsError(f"--dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})


# The notebook's network: Embedding 8, 3 x Bidirectional LSTM 50, predict the last word.
NOTEBOOK_PRESET = dict(arch="lstm", layers=3, units=50, embedding_dim=8, dropout=0.0, bidirectional=True, objective="last")
