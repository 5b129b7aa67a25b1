"""Generate text from an export: verify the card's checksums, load the SavedModel, call it.

Imports only TensorFlow, TensorFlow Text and the SavedModel at run time (no Keras, no
ingest/model/tfrecords), so `gen` starts as fast as TensorFlow's own import allows.
All prompts x samples go to the exported `generate` signature as ONE batched call.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field

from nextword.errors import ArtifactError, SettingsError
from nextword.export_card import CARD_NAME, verify_export  # the card check, shared with eval


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
    ids: list[int]  # their tokens: one a word, or (wordpiece) the pieces
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
        "an export without a card was interrupted: write it again with `nextword export RUN_DIR`",
    )


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

    def generate(self, prompts: list[str | bytes], settings: GenerateSettings) -> tuple[list[Sample], int | None]:
        """Every prompt x num_samples in one call. Returns (samples, seed used; None if greedy).
        The graph gets each prompt's raw bytes (see `prompt_bytes`) and repairs them as ingest did."""
        import tensorflow as tf

        seed = None if settings.greedy else (settings.seed if settings.seed is not None else secrets.randbits(62))
        raw = [prompt_bytes(prompt) for prompt in prompts] or [b""]
        shown = [text.decode("utf-8", errors="replace") for text in raw]  # printable, whatever the bytes
        rows = [(index, sample) for index in range(len(raw)) for sample in range(settings.num_samples)]
        outputs = self._generate(
            prompts=tf.constant([raw[index] for index, _ in rows], tf.string),
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
        # A word export's rows are all num_words long; a wordpiece export's rows are 0-padded
        # (exports before subwords have no "lengths").
        lengths = outputs["lengths"].numpy() if "lengths" in outputs else [ids.shape[1]] * len(rows)
        unknown = outputs["unknown_words"].numpy()
        samples = [
            Sample(
                prompt=shown[index],
                prompt_index=index,
                sample_index=sample,
                text=texts[row].decode("utf-8"),
                ids=[int(value) for value in ids[row][: lengths[row]]],
                unknown_words=unknown[row].decode("utf-8", errors="replace").split(),  # an export before tokenizer 2 may hold raw bytes
            )
            for row, (index, sample) in enumerate(rows)
        ]
        return samples, seed


def prompt_bytes(prompt: str | bytes) -> bytes:
    """A prompt's raw bytes, for the graph's tokenizer (which repairs invalid UTF-8 exactly as
    ingest does). A str from argv or from `read_prompts_file` holds undecodable bytes as
    surrogate escapes: they go back to the bytes typed. Other lone surrogates are encoded as
    the JSON lines reader does (surrogatepass), so they too become U+FFFD in the graph."""
    if isinstance(prompt, bytes):
        return prompt
    try:
        return prompt.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return prompt.encode("utf-8", errors="surrogatepass")


def settings_record(settings: GenerateSettings, seed: int | None) -> dict:
    """The settings as reported in --json (with the seed actually used)."""
    return {**asdict(settings), "seed": seed}
