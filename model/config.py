"""The model's settings: one frozen dataclass, JSON round trip, validation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nextword.errors import SettingsError

ARCHITECTURES = ("lstm", "gru", "transformer")
OBJECTIVES = ("last", "all")
# Keras dtype policies a run trains under: variables stay float32 under the mixed ones.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
POSITIONS = ("learned", "alibi")


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
    # transformer only (its width is `units`; its embeddings are `units` wide, not embedding_dim)
    heads: int = 4
    ff_dim: int | None = None  # None: 4 x units
    # The output projection reuses the input embedding matrix (transposed; plus its own bias).
    # Recurrent models project their units down to embedding_dim first when the widths differ.
    tie_embeddings: bool = False
    # transformer only: pads are masked out of attention and positions count from the window's
    # first word (model/transformer.py says why). Configs written before 0.3 lack the field and
    # load as False, the 0.2 behaviour their weights were trained with.
    ignore_padding: bool = True
    # transformer only: "learned": a position embedding per window slot (0.2's, and 0.3's first recipe); "alibi":
    # no position embedding, each head's attention score falls linearly with the distance in words
    # (Press et al. 2022, model/transformer.py `alibi_slopes`). Keys then hold no position, so a cached
    # decoder slides its window instead of re-reading it (model/export_graph.py `SlidingDecoder`).
    positions: str = "learned"

    @property
    def feed_forward_dim(self) -> int:
        return self.ff_dim or 4 * self.units

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
        for name in ("vocab_size", "context_length", "layers", "units", "embedding_dim", "heads"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < 3:
            raise SettingsError(f"vocab_size must be at least 3 (<pad>, <unk>, one word), got {self.vocab_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingsError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.arch == "transformer":
            if self.bidirectional:
                raise SettingsError("--bidirectional is for --arch lstm|gru: a transformer decoder is causal",
                                    hint="drop --bidirectional")
            if self.units % self.heads:
                raise SettingsError(f"--units must be a multiple of --heads: {self.units} is not a multiple of {self.heads}",
                                    hint=f"e.g. --units {max(self.heads, self.units // self.heads * self.heads)} --heads {self.heads}")
        if self.positions not in POSITIONS:
            raise SettingsError(f"--positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "alibi" and (self.arch != "transformer" or not self.ignore_padding):
            raise SettingsError(f"--positions alibi is for --arch transformer with --ignore-padding, got --arch {self.arch}"
                                f"{'' if self.ignore_padding else ' --no-ignore-padding'}",
                                hint="drop --positions, or train --arch transformer --ignore-padding")
        if self.ff_dim is not None and self.ff_dim < 1:
            raise SettingsError(f"--ff-dim must be at least 1, got {self.ff_dim}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line for people: "transformer 2 blocks × 128, 4 heads, ff 512, dropout 0.1, objective all"."""
        if self.arch == "transformer":
            shape = f"transformer {self.layers} blocks × {self.units}, {self.heads} heads, ff {self.feed_forward_dim}"
        else:
            kind = f"{'bidirectional ' if self.bidirectional else ''}{self.arch.upper()}"
            shape = f"{self.layers} × {kind} {self.units}, embedding {self.embedding_dim}"
        tied = ", tied embeddings" if self.tie_embeddings else ""
        if self.arch == "transformer" and not self.ignore_padding:
            tied += ", window positions (pads seen)"
        if self.positions == "alibi":
            tied += ", ALiBi positions"
        return f"{shape}, dropout {self.dropout:g}{tied}, objective {self.objective}"

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"ignore_padding": False, **{key: value for key, value in raw.items() if key in known}})


# The transformer's recipe (bench/arch_bench.py): fields not named here are ModelConfig's.
# Tying is off: on the King James Bible at 180 s it did not help (bench/RESULTS.md "Recipe").
# ALiBi positions: held-out perplexity of the mixed export within 0.3% of learned positions over three real
# corpora × 2 seeds at 180 s (better on Vim's help, worse on the KJV and the embedded corpus), and generation
# ×1.25–1.5 the words/s without the re-read (bench/RESULTS.md "ALiBi positions").
TRANSFORMER_DEFAULTS = dict(layers=2, units=128, heads=4, dropout=0.1, positions="alibi")
# The family `nextword train` (and the demo) use without --arch or --preset: the winner of
# bench/arch_bench.py at equal training time (bench/RESULTS.md, "Transformer vs LSTM").
RECIPE_ARCH = "transformer"

# The notebook's network: Embedding 8, 3 x Bidirectional LSTM 50, predict the last word.
NOTEBOOK_PRESET = dict(arch="lstm", layers=3, units=50, embedding_dim=8, dropout=0.0, bidirectional=True, objective="last")
