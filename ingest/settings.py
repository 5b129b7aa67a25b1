"""IngestSettings: the one frozen dataclass of ingest settings; the CLI maps onto its fields."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from nextword.ingest.sources import BUILTIN, FORMATS, TEXT_UNITS, InputSpec
from nextword.differences import changed_settings, show
from nextword.errors import SettingsError
from nextword.tfrecords.manifest import LAYOUTS, TOKENIZERS, format_version_of, tokenizer_choice


CHECK_BYTES = 1 << 20  # an input's content check hashes this many bytes at each end (see input_identity)
# identity keys (ingest settings) by the flag that sets them; "tokenizer_choice" is not stored, it is
# read from the stored tokenizer config (see _settings_of)
SETTING_LABELS = {"tokenizer_choice": "--tokenizer", "vocab_size": "--vocab-size", "context_length": "--context",
                  "stride": "--stride", "shards": "--shards",
                  "layout": "--layout", "windows_per_record": "--windows-per-record", "val_fraction": "--val-fraction",
                  "seed": "--seed", "on_error": "--on-error", "dedup": "--dedup", "format_version": "dataset format version",
                  "tokenizer": "tokenizer (another nextword version)"}


DEDUP_MODES = ("none", "exact", "near")  # ingest.dedup.MODES (not imported: that module loads numpy)
DEFAULT_TOKENIZER = "word"
DEFAULT_VOCAB_SIZE = 20000


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class IngestSettings:
    inputs: tuple[str, ...]
    out: str
    format: str = "auto"
    column: str | None = None
    text_unit: str = "auto"  # text inputs: line, paragraph, file, or auto (sources.detect_text_unit)
    # None: DEFAULT_TOKENIZER / DEFAULT_VOCAB_SIZE, or with vocab_from the source's (ingest.vocab_source
    # resolves them before a run): a reused vocabulary fixes both, so only a value given can conflict
    tokenizer: str | None = None  # word: one id per word; wordpiece: subword pieces learned at ingest
    vocab_size: int | None = None  # wordpiece: the learner's target size
    vocab_from: str | None = None  # a finished DATA_DIR whose tokenizer and vocabulary are reused
    context_length: int = 44  # the notebook's window of 45 = 44 context words + the target
    stride: int = 1
    layout: str = "packed"  # packed: records of spans of several documents; spans: one span a record; windows: one Example per window
    windows_per_record: int = 128  # packed, spans: chosen by bench/layout_bench.py (disk and reader speed vs shuffle grain)
    shards: int | None = None  # train shards; None: sized so a shard is ~128 MB
    val_fraction: float = 0.02
    seed: int = 0
    on_error: str = "strict"
    # duplicates dropped before anything is counted (ingest/dedup.py); identity records it only when
    # not "none", so datasets written before it existed (all "none") keep their fingerprint
    dedup: str = "exact"
    workers: int = dataclasses.field(default_factory=default_workers)
    overwrite: bool = False
    checkpoint_seconds: float = 30.0  # how often pass 2 makes its progress durable
    batch_bytes: int = 1 << 20  # text per batch handed to a worker (does not change the output)

    def __post_init__(self) -> None:
        if self.vocab_from is None:
            for name, default in (("tokenizer", DEFAULT_TOKENIZER), ("vocab_size", DEFAULT_VOCAB_SIZE)):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
        if self.format not in ("auto", *FORMATS):
            raise SettingsError(f"--format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.text_unit not in ("auto", *TEXT_UNITS):
            raise SettingsError(f"--text-unit must be auto or one of {', '.join(TEXT_UNITS)}, got {self.text_unit!r}")
        if self.tokenizer is not None and self.tokenizer not in TOKENIZERS:
            raise SettingsError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        if self.vocab_size is not None and self.vocab_size < 3:
            raise SettingsError(f"--vocab-size must be at least 3 (<pad>, <unk> and one word), got {self.vocab_size}")
        if self.vocab_size is not None and self.vocab_size > 1 << 21:
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
        if self.dedup not in DEDUP_MODES:
            raise SettingsError(f"--dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")
        if self.workers < 1:
            raise SettingsError(f"--workers must be at least 1, got {self.workers}")
        if self.seed < 0:
            raise SettingsError(f"--seed must be non-negative, got {self.seed}")

    def identity(self, specs: list[InputSpec], vocab_sha256: str | None = None) -> dict:
        """What determines the output bytes, JSON-able (dataset.json keeps it as `identity`): each
        input's `input_identity`, the tokenizer and layout settings, and with --vocab-from the reused
        vocab.txt's sha256 as "vocab_from" (absent otherwise, so datasets that learned their
        vocabulary keep their fingerprint). Not workers, batch size or checkpoint cadence:
        they never change the output."""
        from nextword.ingest.text_spec import tokenizer_config

        if self.tokenizer is None or self.vocab_size is None or (self.vocab_from is None) != (vocab_sha256 is None):
            raise AssertionError("identity of unresolved --vocab-from settings: call ingest.vocab_source.resolve first")
        described = dict(
            format_version=format_version_of(self.layout), tokenizer=tokenizer_config(self.tokenizer), inputs=[input_identity(spec) for spec in specs],
            vocab_size=self.vocab_size, context_length=self.context_length, stride=self.stride, shards=self.shards,
            layout=self.layout, windows_per_record=self.windows_per_record if self.layout != "windows" else 1,
            val_fraction=self.val_fraction, seed=self.seed, on_error=self.on_error,
            **({"vocab_from": vocab_sha256} if vocab_sha256 is not None else {}),
            **({"dedup": self.dedup} if self.dedup != "none" else {}),
        )
        return json.loads(json.dumps(described))  # as it reads back from JSON (tuples become lists)

    def fingerprint(self, specs: list[InputSpec], vocab_sha256: str | None = None) -> str:
        return fingerprint_of(self.identity(specs, vocab_sha256))

    def legacy_fingerprint(self, specs: list[InputSpec]) -> str:
        """The fingerprint nextword 0.1.0 wrote (inputs as typed, with size and mtime): a rerun of
        the command that wrote such a dataset still finds it complete."""
        from nextword.ingest.text_spec import tokenizer_config

        if (any(spec.unit not in (None, "line") for spec in specs) or self.vocab_from is not None or self.dedup != "none"
                or self.layout == "packed"):
            # 0.1.0 read a text file by lines only, learned every vocabulary, kept every document and
            # wrote no packed records: no dataset of it matches ("" never matches, see pipeline.py)
            return ""
        inputs = []
        for spec in specs:
            stat = os.stat(spec.path) if os.path.exists(spec.path) else None
            inputs.append([spec.path, spec.format, spec.column, stat.st_size if stat else None,
                           stat.st_mtime_ns if stat else None])
        described = dict(
            format_version=2, tokenizer=tokenizer_config(self.tokenizer), inputs=inputs, vocab_size=self.vocab_size,
            context_length=self.context_length, stride=self.stride, shards=self.shards, layout=self.layout,
            windows_per_record=self.windows_per_record if self.layout == "spans" else 1,
            val_fraction=self.val_fraction, seed=self.seed, on_error=self.on_error,
        )
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def fingerprint_of(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def input_identity(spec: InputSpec) -> dict:
    """One input as a dataset's identity records it, so that `corpus.txt`, `./corpus.txt` and its
    absolute path are the same input and an edited file is not:

        path         os.path.realpath of the input (absolute, symlinks resolved)
        format, column
        text_unit    text inputs read by paragraph or file (--text-unit, auto resolved); absent for
                     line, the only unit before 0.3, so those datasets keep their fingerprint
        bytes        its size
        sha256_ends  hex sha256 of: the size in decimal ASCII, b"\n", the first CHECK_BYTES bytes
                     and the last CHECK_BYTES bytes (every byte once: the whole file when it is at
                     most 2 x CHECK_BYTES), so the check reads at most 2 MiB of each input.

    The embedded corpus: path "builtin:pydoc-topics", its bytes (the documents joined by b"\n")
    and the sha256 of all of them (it differs between Python versions)."""
    if spec.path == BUILTIN:
        from nextword.ingest.sources import _builtin_documents

        data = b"\n".join(_builtin_documents())
        return dict(path=BUILTIN, format=spec.format, column=spec.column, bytes=len(data),
                    sha256_ends=hashlib.sha256(str(len(data)).encode() + b"\n" + data).hexdigest())
    with open(spec.path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest = hashlib.sha256(str(size).encode() + b"\n")
        tail = max(CHECK_BYTES, size - CHECK_BYTES)
        for start, end in ((0, min(size, CHECK_BYTES)), (tail, size)):
            handle.seek(start)
            while start < end:  # in 64 KiB pieces: memory stays flat whatever the input's size
                piece = handle.read(min(1 << 16, end - start))
                if not piece:
                    break
                digest.update(piece)
                start += len(piece)
    return dict(path=os.path.realpath(spec.path), format=spec.format, column=spec.column, bytes=size,
                sha256_ends=digest.hexdigest(), **({"text_unit": spec.unit} if spec.unit not in (None, "line") else {}))


def identity_changes(recorded: dict, wanted: dict, holder: str, when: str) -> list[str]:
    """What differs between a recorded identity (of the HOLDER, written WHEN) and this command's,
    one line each: inputs first, then settings by their flag."""
    recorded_settings, wanted_settings = _settings_of(recorded), _settings_of(wanted)
    vocabulary_line = _vocabulary_change(recorded_settings.pop("vocab_from", None),
                                         wanted_settings.pop("vocab_from", None), holder)
    if vocabulary_line:  # another vocabulary brings its own size and tokenizer: the one line says it all
        for shown in (recorded_settings, wanted_settings):
            for key in ("tokenizer_choice", "tokenizer", "vocab_size"):
                shown.pop(key, None)
    if recorded_settings.get("tokenizer_choice") != wanted_settings.get("tokenizer_choice"):
        for shown in (recorded_settings, wanted_settings):
            shown.pop("tokenizer", None)  # its config differs too: the --tokenizer line says it all
    return _input_changes(recorded.get("inputs", []), wanted["inputs"], holder, when) + vocabulary_line + changed_settings(
        recorded_settings, wanted_settings, SETTING_LABELS, holder)


def _vocabulary_change(recorded: str | None, wanted: str | None, holder: str) -> list[str]:
    """The --vocab-from line (an identity's "vocab_from" is the reused vocab.txt's sha256), or none."""
    if recorded == wanted:
        return []

    def described(sha256: str | None, learns: str) -> str:
        return f"{learns} its own vocabulary" if sha256 is None else f"reuses the vocabulary with sha256 {sha256[:12]}…"

    return [f"--vocab-from: the {holder} {described(recorded, 'learned')}, "
            f"this command {described(wanted, 'learns')}"]


def _settings_of(identity: dict) -> dict:
    """An identity's settings, with the --tokenizer its tokenizer config describes beside that config."""
    settings = {key: value for key, value in identity.items() if key != "inputs"}
    settings.setdefault("dedup", "none")  # absent: written with --dedup none, or before --dedup existed
    settings["tokenizer_choice"] = tokenizer_choice(settings.get("tokenizer"))
    return settings


def _shown(path: str) -> str:
    if path == BUILTIN:
        return "the embedded corpus"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _input_changes(recorded: list, wanted: list, holder: str, when: str) -> list[str]:
    if len(recorded) != len(wanted):
        return [f"inputs: the {holder} was made from {len(recorded)} ({', '.join(_shown(entry['path']) for entry in recorded)}), "
                f"this command names {len(wanted)} ({', '.join(_shown(entry['path']) for entry in wanted)})"]
    lines = []
    for number, (old, new) in enumerate(zip(recorded, wanted), 1):
        name = _shown(new["path"])
        if old["path"] != new["path"]:
            lines.append(f"input {number}: the {holder} was made from {_shown(old['path'])}, this command reads {name}")
        elif old["bytes"] != new["bytes"]:
            lines.append(f"input {number}: {name} changed size {old['bytes']:,} → {new['bytes']:,} bytes since {when}")
        elif old["sha256_ends"] != new["sha256_ends"]:
            lines.append(f"input {number}: {name} changed content since {when} (same size, {new['bytes']:,} bytes)")
        for key in ("format", "column", "text_unit"):
            before, after = (entry.get(key, "line" if key == "text_unit" and entry.get("format") == "text" else None)
                             for entry in (old, new))
            if before != after:
                lines.append(f"input {number} --{key.replace('_', '-')}: the {holder} has {show(before)}, "
                             f"this command asks for {show(after)}")
    return lines
