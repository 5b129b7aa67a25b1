"""`dataset.json`: the manifest that makes a DATA_DIR describe itself.

Plain dataclasses with JSON round trips; no TensorFlow here, so the manifest can be read
by tools that do not train (inspect, verify, benchmarks). All paths inside are relative
to DATA_DIR.

Three record layouts (`Manifest.layout`). A *span* is a run of at most `windows_per_record`
consecutive windows of ONE document, stored as the ids they cover, once, after `pad` zeros (> 0
only where the span starts at its document's start: the first windows are pre-padded);
`tf.signal.frame(concat([zeros(pad), ids]), context_length + 1, stride)` yields exactly its
windows, each [context ids..., target], (pad + n - context_length - 1) // stride + 1 of them.

- "packed" (format 3, the default): a record is a `tf.train.Example` holding k >= 1 spans (of
  different documents; at most `windows_per_record` windows in all), so a dictionary line or a
  verse no longer costs a record of its own:
      "lengths": int64[k]  ids of each span
      "pad":     int64[k]  zeros to put before each span
      "tokens":  int64[sum(lengths)]  the spans' ids end to end (no padding)
  Windows never cross spans. The manifest's `record_windows` histograms count windows per SPAN
  (what the reader's selection works on), `records` counts records.
- "spans" (format 2): a record holds one span: "pad": int64[1], "tokens": int64[n].
- "windows" (format 1, and formats 2-3 with `--layout windows`): one Example per window,
  "tokens": int64[context_length + 1], pre-padded with 0, the last id is the target.

In every layout records are spread over shards by a seeded hash and each shard is written in
a seeded random order, so a shard is a uniform random sample of its split's records.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from nextword.errors import ArtifactError

MANIFEST_NAME = "dataset.json"
VOCAB_NAME = "vocab.txt"
FORMAT_NAME = "nextword.dataset"
FORMAT_VERSION = 3  # written for "packed"; "spans" and "windows" datasets are still written as format 2
READABLE_VERSIONS = (1, 2, 3)  # format 1 (0.1.0): layout "windows", no per-shard window counts
FEATURE_NAME = "tokens"  # windows: int64[context_length + 1], pre-padded; spans: int64[n], unpadded
PAD_FEATURE = "pad"  # spans: int64[1], packed: int64[k], zeros to put before each span
LENGTHS_FEATURE = "lengths"  # packed only: int64[k], ids of each span
SPLITS = ("train", "val")
LAYOUTS = ("packed", "spans", "windows")
SPAN_LAYOUTS = ("packed", "spans")  # records of spans (framed by the span reader), not of single windows


def format_version_of(layout: str) -> int:
    """The format a dataset of `layout` is written as: the oldest that reads it (a spans dataset
    written today still trains with nextword 0.3)."""
    return FORMAT_VERSION if layout == "packed" else 2
TOKENIZERS = ("word", "wordpiece")  # `nextword ingest --tokenizer`; a manifest's tokenizer "name" says which
WORDPIECE_NAME = "nextword-wordpiece"  # the tokenizer "name" of a wordpiece dataset (ingest/text.py WORDPIECE_CONFIG)


def tokenizer_choice(tokenizer: dict | None) -> str:
    """The `--tokenizer` a manifest's `tokenizer` entry describes: "wordpiece", or "word" (every
    dataset written before subwords existed: its name is "nextword-words")."""
    return "wordpiece" if (tokenizer or {}).get("name") == WORDPIECE_NAME else "word"


def is_continuation(token: str, suffix_indicator: str = "##") -> bool:
    """A WordPiece token that continues the word before it: "##ing" (not "##" alone)."""
    return token.startswith(suffix_indicator) and len(token) > len(suffix_indicator)


def join_pieces(tokens: list[str], suffix_indicator: str = "##") -> list[str]:
    """WordPiece tokens -> words: a piece that starts with `suffix_indicator` continues the word
    before it ("walk", "##ing" -> "walking"); one with no word before it (a window may start in
    the middle of a word) is kept as it is."""
    words: list[str] = []
    for token in tokens:
        if is_continuation(token, suffix_indicator) and words:
            words[-1] += token[len(suffix_indicator):]
        else:
            words.append(token)
    return words


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


@dataclass(frozen=True)
class Shard:
    file: str
    records: int
    bytes: int
    sha256: str
    windows: int = -1  # -1 in format 1 manifests: there every record is one window
    # ((windows in a span, spans with that many), ...) ascending (a span a record but in "packed");
    # what an epoch plan needs to count the windows the reader selects without reading the shard
    record_windows: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.windows < 0:  # format 1: one window per record
            object.__setattr__(self, "windows", self.records)
        if not self.record_windows and self.records:
            object.__setattr__(self, "record_windows", ((self.windows // self.records, self.records),)
                               if self.windows == self.records else ())
        object.__setattr__(self, "record_windows", tuple(tuple(pair) for pair in self.record_windows))


@dataclass(frozen=True)
class Split:
    documents: int
    tokens: int
    windows: int
    shards: tuple[Shard, ...]

    @property
    def records(self) -> int:
        return sum(shard.records for shard in self.shards)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(shard.file for shard in self.shards)


@dataclass(frozen=True)
class Counters:
    documents: int = 0  # rows / lines read, whatever their content
    empty_documents: int = 0  # no words after tokenization (empty, whitespace or punctuation only)
    skipped_rows: int = 0  # malformed rows dropped under --on-error skip
    tokens: int = 0
    oov_tokens: int = 0  # words mapped to <unk>
    replaced_bytes: int = 0  # invalid UTF-8 bytes replaced by U+FFFD
    nul_bytes: int = 0  # NUL bytes turned into spaces
    truncated_inputs: int = 0  # cut .gz streams kept up to the cut under --on-error skip


@dataclass(frozen=True)
class Manifest:
    fingerprint: str
    tokenizer: dict
    vocab_file: str
    vocab_size: int
    vocab_sha256: str
    context_length: int
    stride: int
    seed: int
    val_fraction: float
    splits: dict[str, Split]
    counters: Counters
    inputs: tuple[dict, ...] = ()
    created_by: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    feature: str = FEATURE_NAME
    layout: str = "windows"  # format 1 manifests have no such field: they are "windows"
    windows_per_record: int = 1  # the most windows a record holds (1 for "windows")
    pad_id: int = 0
    unk_id: int = 1
    extra: dict = field(default_factory=dict)
    # What `fingerprint` hashes (ingest.settings.IngestSettings.identity): each input's resolved
    # path, size and content check, and the settings. {} in manifests written by nextword 0.1.0.
    identity: dict = field(default_factory=dict)
    # `nextword ingest --vocab-from`: the dataset whose tokenizer and vocabulary this one reuses, as
    # {"path", "fingerprint", "vocab_sha256"}; {} (and absent from the JSON) when it learned its own.
    vocab_source: dict = field(default_factory=dict)

    @property
    def tokenizer_choice(self) -> str:
        """"word" or "wordpiece" (see `tokenizer_choice`)."""
        return tokenizer_choice(self.tokenizer)

    @property
    def record_length(self) -> int:
        return self.context_length + 1

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise ArtifactError(
                f"the dataset has no split {name!r}; it has {sorted(self.splits)}",
                hint="pass --split with one of those names",
            )
        return self.splits[name]

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        if not fields["vocab_source"]:  # learned its vocabulary: still readable by a nextword before this field
            del fields["vocab_source"]
        return json.dumps(fields, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> "Manifest":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ArtifactError(
                f"{source} is not valid JSON ({error})",
                hint="the dataset is damaged; run `nextword ingest` again into an empty --out",
            ) from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise ArtifactError(
                f"{source} is not a nextword dataset manifest (format={raw.get('format') if isinstance(raw, dict) else None!r})",
                hint="point at a DATA_DIR written by `nextword ingest`",
            )
        if raw.get("format_version") not in READABLE_VERSIONS:
            raise ArtifactError(
                f"{source} has format_version {raw.get('format_version')}, this nextword reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))}",
                hint="re-run `nextword ingest` with this version of nextword",
            )
        if raw.get("layout", "windows") not in LAYOUTS:
            raise ArtifactError(f"{source} has layout {raw.get('layout')!r}, this nextword reads {LAYOUTS}",
                                hint="re-run `nextword ingest` with this version of nextword")
        _refuse_unknown(raw, cls, "", source)
        for name, split in raw["splits"].items():
            _refuse_unknown(split, Split, f"splits.{name}.", source, raw)
            for index, shard in enumerate(split["shards"]):
                _refuse_unknown(shard, Shard, f"splits.{name}.shards[{index}].", source, raw)
        _refuse_unknown(raw["counters"], Counters, "counters.", source, raw)
        raw["splits"] = {
            name: Split(
                documents=split["documents"],
                tokens=split["tokens"],
                windows=split["windows"],
                shards=tuple(Shard(**{**shard, "record_windows": tuple(map(tuple, shard.get("record_windows", ())))})
                             for shard in split["shards"]),
            )
            for name, split in raw["splits"].items()
        }
        raw["counters"] = Counters(**raw["counters"])
        raw["inputs"] = tuple(raw.get("inputs", ()))
        return cls(**raw)


def _refuse_unknown(entry: dict, kind, where: str, source: str, manifest: dict | None = None) -> None:
    """A field this version does not know means a newer nextword wrote the manifest: say so
    (building the dataclass would end in a TypeError)."""
    known = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(key for key in entry if key not in known)
    if unknown:
        from nextword import __version__

        writer = (manifest if manifest is not None else entry).get("created_by") or "another nextword"
        raise ArtifactError(
            f"{source} has fields this nextword ({__version__}) does not know: "
            f"{', '.join(where + key for key in unknown)}; it was written by {writer}",
            hint="read it with the nextword that wrote it (or a newer one): pip install -U nextword",
        )


def load_manifest(data_dir: str) -> Manifest:
    """Read DATA_DIR/dataset.json, with an error that says what to do when it is not there."""
    from nextword import storage  # imports TensorFlow; keep it out of plain manifest use

    path = storage.join(data_dir, MANIFEST_NAME)
    if not storage.exists(path):
        if storage.isdir(data_dir) and any(name.endswith(".partial") for name in storage.listdir(data_dir)):
            hint = "the ingest into it did not finish; run the same `nextword ingest` command again to resume"
        else:
            hint = "pass the --out directory of a finished `nextword ingest` run"
        raise ArtifactError(f"{data_dir} holds no {MANIFEST_NAME}: it is not a nextword dataset", hint=hint)
    return Manifest.from_json(storage.read_text(path), source=path)


def load_vocabulary(data_dir: str, manifest: Manifest) -> list[str]:
    """vocab.txt as a list (line number = id), checked against the manifest's sha256."""
    import hashlib

    from nextword import storage

    path = storage.join(data_dir, manifest.vocab_file)
    if not storage.exists(path):
        raise ArtifactError(f"{data_dir} has no {manifest.vocab_file}, which {MANIFEST_NAME} lists as its vocabulary",
                            hint="restore the file from a copy of the dataset, or run `nextword ingest` again into a new --out")
    with storage.open_file(path, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != manifest.vocab_sha256:
        raise ArtifactError(
            f"{path} does not match the sha256 recorded in {MANIFEST_NAME}",
            hint="the dataset was modified after ingest; re-run `nextword ingest`",
        )
    tokens = data.decode("utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != manifest.vocab_size:
        raise ArtifactError(f"{path} has {len(tokens)} tokens, the manifest says {manifest.vocab_size}")
    return tokens
