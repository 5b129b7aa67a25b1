"""Generate text from an export: verify the card's checksums, load the SavedModel, call it.

Imports only TensorFlow, TensorFlow Text and the SavedModel at run time (no Keras, no
ingest/model/tfrecords), so `gen` starts as fast as TensorFlow's own import allows.
All prompts x samples go to the exported `generate` signature as ONE batched call.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import asdict, dataclass, field

from nextword.errors import ArtifactError, SettingsError

CARD_NAME = "card.json"  # mirrors model.export, which gen must not import
EXPORT_FORMAT = "nextword.export"


@dataclass(frozen=True)
class GenerateSettings:
    """Sampling settings; `gen` options map onto these fields one to one.

    top_k None = off; top_p None = off (1.0); repetition_penalty 1.0 = off;
    no_repeat_ngram 0 = off; seed None = a fresh random seed (reported in --json).
    """

    words: int = 30
    temperature: float = 1.0
    greedy: bool = False
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0
    num_samples: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.words < 1:
            raise SettingsError(f"--words must be at least 1, got {self.words}")
        if self.num_samples < 1:
            raise SettingsError(f"--num-samples must be at least 1, got {self.num_samples}")
        if not self.greedy and not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise SettingsError(
                f"--temperature must be a positive number, got {self.temperature}",
                hint="use --greedy for deterministic argmax decoding (temperature is then ignored)",
            )
        if self.top_k is not None and self.top_k < 1:
            raise SettingsError(f"--top-k must be at least 1, got {self.top_k}", hint="leave it out to disable top-k")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise SettingsError(f"--top-p must be in (0, 1], got {self.top_p}", hint="leave it out to disable top-p")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise SettingsError(
                f"--repetition-penalty must be a positive number, got {self.repetition_penalty}",
                hint="1.0 disables it; values above 1 discourage repeats",
            )
        if self.no_repeat_ngram < 0:
            raise SettingsError(f"--no-repeat-ngram must be 0 (off) or more, got {self.no_repeat_ngram}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise SettingsError(f"--seed must be in [0, 2**63), got {self.seed}")


@dataclass(frozen=True)
class Sample:
    prompt: str
    prompt_index: int
    sample_index: int
    text: str  # the generated words only, space-separated
    ids: list[int]
    unknown_words: list[str] = field(default_factory=list)  # prompt words that became <unk>


def resolve_export_dir(model_dir: str) -> str:
    """MODEL_DIR is an export dir, or a RUN_DIR holding export/."""
    import tensorflow as tf

    for candidate in (model_dir, model_dir.rstrip("/") + "/export"):
        if tf.io.gfile.exists(f"{candidate.rstrip('/')}/{CARD_NAME}"):
            return candidate.rstrip("/")
    if not tf.io.gfile.isdir(model_dir):
        raise ArtifactError(f"{model_dir} does not exist or is not a directory", hint="pass an export dir or a RUN_DIR")
    raise ArtifactError(
        f"{model_dir} is not a nextword export: no {CARD_NAME} in it or in {model_dir.rstrip('/')}/export",
        hint="pass the export/ directory written by `nextword train` (or the RUN_DIR holding it); "
        "an export without a card was interrupted: export again",
    )


def verify_export(export_dir: str) -> dict:
    """Read the card and check every listed file's sha256 BEFORE anything is loaded."""
    from nextword import storage

    card_path = storage.join(export_dir, CARD_NAME)
    try:
        card = json.loads(storage.read_text(card_path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{card_path} is not valid JSON ({error})", hint="export the model again") from None
    if not isinstance(card, dict) or card.get("format") != EXPORT_FORMAT or not isinstance(card.get("files"), dict):
        raise ArtifactError(f"{card_path} is not a nextword export card", hint="pass a directory written by the export")
    for relative, expected in card["files"].items():
        path = storage.join(export_dir, relative)
        if not storage.exists(path):
            raise ArtifactError(f"{relative} is listed in {CARD_NAME} but missing from {export_dir}", hint="export again")
        digest, _ = storage.sha256_of(path)
        if digest != expected["sha256"]:
            raise ArtifactError(
                f"{relative} in {export_dir} fails its sha256 check (card: {expected['sha256'][:12]}…, "
                f"file: {digest[:12]}…): the export was modified or damaged",
                hint="copy the export again or re-run the export; nothing was loaded",
            )
    _reject_unlisted_files(export_dir, card)
    return card


def _reject_unlisted_files(export_dir: str, card: dict) -> None:
    import tensorflow as tf

    from nextword import storage

    saved_model = storage.join(export_dir, card.get("saved_model", "saved_model"))
    for directory, _, names in tf.io.gfile.walk(saved_model):
        for name in names:
            relative = os.path.relpath(storage.join(directory, name), export_dir)
            if relative not in card["files"]:
                raise ArtifactError(f"{relative} in {export_dir} is not listed in {CARD_NAME}", hint="export again")


class Generator:
    """A loaded, verified export. `Generator.load(MODEL_DIR)` then `.generate(prompts, settings)`."""

    def __init__(self, export_dir: str, card: dict, loaded):
        self.export_dir = export_dir
        self.card = card
        self.loaded = loaded
        self._generate = loaded.signatures["generate"]

    @classmethod
    def load(cls, model_dir: str) -> "Generator":
        export_dir = resolve_export_dir(model_dir)
        card = verify_export(export_dir)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        loaded = tf.saved_model.load(f"{export_dir}/{card.get('saved_model', 'saved_model')}")
        return cls(export_dir, card, loaded)

    @property
    def context_length(self) -> int:
        return int(self.card["context_length"])

    def generate(self, prompts: list[str], settings: GenerateSettings) -> tuple[list[Sample], int | None]:
        """Every prompt x num_samples in one call. Returns (samples, seed used; None if greedy)."""
        import tensorflow as tf

        seed = None if settings.greedy else (settings.seed if settings.seed is not None else secrets.randbits(62))
        prompts = list(prompts) or [""]
        rows = [(index, sample) for index in range(len(prompts)) for sample in range(settings.num_samples)]
        outputs = self._generate(
            prompts=tf.constant([prompts[index] for index, _ in rows], tf.string),
            num_words=tf.constant(settings.words, tf.int32),
            temperature=tf.constant(settings.temperature, tf.float32),
            greedy=tf.constant(settings.greedy),
            top_k=tf.constant(settings.top_k or 0, tf.int32),
            top_p=tf.constant(settings.top_p if settings.top_p is not None else 1.0, tf.float32),
            repetition_penalty=tf.constant(settings.repetition_penalty, tf.float32),
            no_repeat_ngram=tf.constant(settings.no_repeat_ngram, tf.int32),
            seed=tf.constant(seed or 0, tf.int64),
        )
        texts = outputs["text"].numpy()
        ids = outputs["ids"].numpy()
        unknown = outputs["unknown_words"].numpy()
        samples = [
            Sample(
                prompt=prompts[index],
                prompt_index=index,
                sample_index=sample,
                text=texts[row].decode("utf-8"),
                ids=[int(value) for value in ids[row]],
                unknown_words=unknown[row].decode("utf-8").split(),
            )
            for row, (index, sample) in enumerate(rows)
        ]
        return samples, seed


def settings_record(settings: GenerateSettings, seed: int | None) -> dict:
    """The settings as reported in --json (with the seed actually used)."""
    return {**asdict(settings), "seed": seed}
