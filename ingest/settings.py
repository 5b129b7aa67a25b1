"""IngestSettings: the one frozen dataclass of ingest settings; the CLI maps onto its fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from ingest.sources import FORMATS, InputSpec
from nextword.errors import SettingsError
from tfrecords.manifest import FORMAT_VERSION, LAYOUTS


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class IngestSettings:
    inputs: tuple[str, ...]
    out: str
    format: str = "auto"
    column: str | None = None
    vocab_size: int = 20000
    context_length: int = 44  # the notebook's window of 45 = 44 context words + the target
    stride: int = 1
    layout: str = "spans"  # spans: runs of consecutive windows per record; windows: one Example per window
    windows_per_record: int = 128  # spans: chosen by bench/layout_bench.py (disk and reader speed vs shuffle grain)
    shards: int | None = None  # train shards; None: sized so a shard is ~128 MB
    val_fraction: float = 0.02
    seed: int = 0
    on_error: str = "strict"
    workers: int = dataclasses.field(default_factory=default_workers)
    overwrite: bool = False
    checkpoint_seconds: float = 30.0  # how often pass 2 makes its progress durable
    batch_bytes: int = 1 << 20  # text per batch handed to a worker (does not change the output)

    def __post_init__(self) -> None:
        if self.format not in ("auto", *FORMATS):
            raise SettingsError(f"--format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.vocab_size < 3:
            raise SettingsError(f"--vocab-size must be at least 3 (<pad>, <unk> and one word), got {self.vocab_size}")
        if self.vocab_size > 1 << 21:
            raise SettingsError(f"--vocab-size above {1 << 21} is not supported, got {self.vocab_size}",
                                hint="a softmax over millions of words will not train on this toolkit's RNNs anyway")
        if self.context_length < 1:
            raise SettingsError(f"--context must be at least 1, got {self.context_length}")
        if self.layout not in LAYOUTS:
            raise SettingsError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if not 1 <= self.windows_per_record <= 65536:
            raise SettingsError(f"--windows-per-record must be between 1 and 65536, got {self.windows_per_record}")
        if self.stride < 1:
            raise SettingsError(f"--stride must be at least 1, got {self.stride}")
        if self.shards is not None and not 1 <= self.shards <= 99999:
            raise SettingsError(f"--shards must be between 1 and 99999, got {self.shards}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SettingsError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.on_error not in ("strict", "skip"):
            raise SettingsError(f"--on-error must be strict or skip, got {self.on_error!r}")
        if self.workers < 1:
            raise SettingsError(f"--workers must be at least 1, got {self.workers}")
        if self.seed < 0:
            raise SettingsError(f"--seed must be non-negative, got {self.seed}")

    def fingerprint(self, specs: list[InputSpec]) -> str:
        """What determines the output bytes: inputs (path, size, mtime), tokenizer and layout
        settings. Not workers, batch size or checkpoint cadence: they never change the output."""
        from ingest.text import TOKENIZER_CONFIG  # imports TensorFlow: not at module import

        inputs = []
        for spec in specs:
            stat = os.stat(spec.path) if os.path.exists(spec.path) else None
            inputs.append([spec.path, spec.format, spec.column, stat.st_size if stat else None,
                           stat.st_mtime_ns if stat else None])
        described = dict(
            format_version=FORMAT_VERSION, tokenizer=TOKENIZER_CONFIG, inputs=inputs, vocab_size=self.vocab_size,
            context_length=self.context_length, stride=self.stride, shards=self.shards, layout=self.layout,
            windows_per_record=self.windows_per_record if self.layout == "spans" else 1,
            val_fraction=self.val_fraction, seed=self.seed, on_error=self.on_error,
        )
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]
