"""Generate text from an export: verify the card's checksums, load the SavedModel, call it.

Imports only TensorFlow, TensorFlow Text and the SavedModel at run time (no Keras, no
ingest/model/tfrecords), so `gen` starts as fast as TensorFlow's own import allows.
All prompts x samples always run as one batch: `generate` does it in ONE call; `stream` runs the
same sampling loop a chunk of tokens a call (`generate_start` / `generate_continue`), handing over
the words completed by each call, and ends early once every row has met a stop condition. The
chunks draw exactly the tokens of the one call (tests/test_stream_export.py).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field
from typing import Iterator

from nextword.generate.stopping import sentence_end_tokens, words_to_keep

from nextword.errors import ArtifactError, SettingsError
from nextword.export_card import CARD_NAME, verify_export  # the card check, shared with eval


@dataclass(frozen=True)
class GenerateSettings:
    """Sampling settings; `gen` options map onto these fields one to one.

    top_k None = off; top_p None = off (1.0); repetition_penalty 1.0 = off;
    no_repeat_ngram 0 = off; seed None = a fresh random seed (reported in --json).
    stop / until_sentence_end: end a sample early, after a whole word (generate/stopping.py).
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
    stop: tuple[str, ...] = ()
    until_sentence_end: bool = False

    @property
    def stops_early(self) -> bool:
        return bool(self.stop) or self.until_sentence_end

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))  # a list from typer: keep the dataclass hashable
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
        for string in self.stop:
            if not string.strip():
                raise SettingsError(f"--stop needs a string with a visible character, got {string!r}",
                                    hint="stop strings are matched in the generated words, which never hold whitespace")


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


# Tokens each generate_continue call draws when streaming: the first call short, so the first words
# print soon after Enter; then doubling up to STREAM_CHUNK_STEPS (fewer calls, each ~0.5 ms of
# overhead). Chosen with bench/gen_bench.py (bench/RESULTS.md, "Streaming").
FIRST_CHUNK_STEPS = 2
STREAM_CHUNK_STEPS = 64
WHOLE_LOOP_STEPS = 1 << 30  # a chunk that never ends before the loop does: generate_continue as one call


@dataclass(frozen=True)
class Progress:
    """What one graph call added, per row: whole new words, their tokens, and whether the row is
    over (all its words drawn, or a stop condition met)."""

    words: list[list[str]]
    ids: list[list[int]]
    done: list[bool]


class Stream:
    """One batched generation under way: `samples` (every prompt x sample, text still empty) and
    `seed`; iterating yields a Progress per graph call until every row is done, and `samples`
    then holds the finished texts. prompt_words: each row's prompt, in words (as the graph read it)."""

    def __init__(self, generator: "Generator", samples: list[Sample], seed: int | None, progress: Iterator[Progress],
                 prompt_words: list[int] | None = None):
        self.generator, self.samples, self.seed = generator, samples, seed
        self.prompt_words = prompt_words or [0] * len(samples)
        self._progress = progress
        self.calls = 0  # graph calls that drew tokens (tests and bench/ count them)

    def __iter__(self) -> Iterator[Progress]:
        words = [[] for _ in self.samples]
        ids = [[] for _ in self.samples]
        for progress in self._progress:
            self.calls += 1
            for row in range(len(self.samples)):
                words[row] += progress.words[row]
                ids[row] += progress.ids[row]
            yield progress
        self.samples = [Sample(sample.prompt, sample.prompt_index, sample.sample_index, " ".join(words[row]),
                               ids[row], sample.unknown_words) for row, sample in enumerate(self.samples)]


class Generator:
    """A loaded, verified export. `Generator.load(MODEL_DIR)` then `.generate(prompts, settings)`
    (or `.stream(...)`)."""

    def __init__(self, export_dir: str, card: dict, loaded, compiled: bool = False,
                 compiled_max_rows: int | None = None):
        self.export_dir = export_dir
        self.card = card
        self.loaded = loaded
        signatures = loaded.signatures
        self._generate = signatures["generate"]
        # exports written before streaming have neither: `stream` then makes one generate call
        self._start = signatures["generate_start"] if "generate_start" in signatures else None
        self._continue = signatures["generate_continue"] if "generate_continue" in signatures else None
        self._vocabulary: list[str] | None = None
        self.compiled, self.compiled_max_rows = compiled, compiled_max_rows
        self._compiled = self._compiled_continue() if compiled else None

    @classmethod
    def load(cls, model_dir: str, compiled: bool = False, compiled_max_rows: int | None = None) -> "Generator":
        """compiled: run the sampling loop compiled by XLA (see `_compiled_continue`), for calls of at most
        compiled_max_rows rows (None: every call); larger calls run the saved loop."""
        export_dir = resolve_export_dir(model_dir)
        card = verify_export(export_dir)
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

        loaded = tf.saved_model.load(f"{export_dir}/{card.get('saved_model', 'saved_model')}")
        return cls(export_dir, card, loaded, compiled, compiled_max_rows)

    def _compiled_continue(self):
        """generate_continue with its loop (the export's `advance`: numbers only) compiled by XLA, and
        its words out (`emit`: string ops) as saved: the same tokens as uncompiled (the same random
        floats; the logits within rounding, so only a near tie could flip). XLA compiles once per batch
        size and `--words` in a process (~1-2 s for the transformer on a 2-core CPU) and pays while rows
        are few (bench/RESULTS.md, "Compiled generation"). An export mixed with an n-gram, or of a cached
        transformer, compiles its `advance_compilable` (the same loop, traced in ops XLA has: the n-gram's lookup in
        static shapes, NgramMixture.static_shapes; the cache written by a scatter, TransformerDecoder.compilable)."""
        import tensorflow as tf

        advance, emit = getattr(self.loaded, "advance", None), getattr(self.loaded, "emit", None)
        if advance is None or emit is None or self._start is None:
            raise SettingsError(
                f"{self.export_dir} has no compiled generation path: it was exported before its loop was saved apart "
                "(`advance`, 2026-12-06)",
                hint="write the export again (`nextword export RUN_DIR`), or leave out --compiled",
            )
        # the loop traced for XLA (the n-gram's lookup in static shapes, a transformer's cache written by a scatter),
        # where the export has one: a network alone exported before its cache was written in place compiles `advance`
        compilable = getattr(self.loaded, "advance_compilable", None)
        advance = compilable or advance
        if "network_weight" in (self.card.get("ngram") or {}):
            if compilable is None:
                raise SettingsError(
                    f"{self.export_dir} mixes its network with an n-gram, and was exported before that mixture "
                    "could be compiled (`advance_compilable`, 2026-12-06): its lookup has sizes XLA cannot compile",
                    hint="write the export again (`nextword export RUN_DIR`), or leave out --compiled",
                )
        self._compiled_advance = tf.function(lambda state, steps: advance(state, steps), jit_compile=True)

        def continue_compiled(steps, **state):
            return emit(self._compiled_advance(state, steps))

        return continue_compiled

    def compiles(self, rows: int) -> bool:
        """Whether a call of `rows` rows (prompts x samples) runs its loop compiled."""
        return self.compiled and (self.compiled_max_rows is None or rows <= self.compiled_max_rows)

    @property
    def context_length(self) -> int:
        return int(self.card["context_length"])

    @property
    def can_stream(self) -> bool:
        return self._start is not None and self._continue is not None

    @property
    def subwords(self) -> bool:
        return "wordpiece" in str((self.card.get("tokenizer") or {}).get("name", ""))

    def vocabulary(self) -> list[str]:
        """The export's vocab.txt (checksummed with the rest), read once when needed."""
        if self._vocabulary is None:
            import tensorflow as tf

            with tf.io.gfile.GFile(f"{self.export_dir}/{self.card.get('vocab_file', 'vocab.txt')}", "rb") as handle:
                self._vocabulary = handle.read().decode("utf-8").split("\n")[:-1]
        return self._vocabulary

    def check(self, settings: GenerateSettings) -> None:
        """Refuse settings this export cannot honour (SettingsError)."""
        if settings.until_sentence_end and not sentence_end_tokens(self.vocabulary()):
            raise SettingsError(
                "--until-sentence-end needs words that end a sentence, and this export's vocabulary has none: "
                "its tokenizer turns . ! ? into spaces, so no generated word can end in one",
                hint="stop at a word instead (--stop WORD), or leave it to --words N",
            )

    def generate(self, prompts: list[str | bytes], settings: GenerateSettings) -> tuple[list[Sample], int | None]:
        """Every prompt x num_samples in one call (in chunks when a stop condition may end it early).
        Returns (samples, seed used; None if greedy). The graph gets each prompt's raw bytes (see
        `prompt_bytes`) and repairs them as ingest did."""
        rows = max(len(prompts), 1) * settings.num_samples
        if settings.stops_early or self.compiles(rows):  # compiled: the loop is in generate_continue only
            chunk = STREAM_CHUNK_STEPS if settings.stops_early else WHOLE_LOOP_STEPS
            stream = self.stream(prompts, settings, first_steps=chunk, steps=chunk)
            for _ in stream:
                pass
            return stream.samples, stream.seed
        samples, seed, outputs = self._whole_call(prompts, settings)
        return [self._filled(sample, outputs, row) for row, sample in enumerate(samples)], seed

    def stream(self, prompts: list[str | bytes], settings: GenerateSettings, first_steps: int = FIRST_CHUNK_STEPS,
               steps: int = STREAM_CHUNK_STEPS) -> Stream:
        """The same batch as `generate`, word by word: call generate_start, then generate_continue
        first_steps tokens, doubling up to `steps`, until every row is done or stopped."""
        self.check(settings)
        if not self.can_stream:
            samples, seed, outputs = self._whole_call(prompts, settings)
            return Stream(self, samples, seed, self._one_call_progress(outputs, settings),
                          outputs["prompt_length"].tolist())
        samples, seed, feed = self._prepare(prompts, settings)
        started = self._start(**feed)
        samples = self._with_unknown_words(samples, started["unknown_words"].numpy())
        return Stream(self, samples, seed, self._chunked_progress(started, settings, first_steps, steps),
                      started["prompt_length"].numpy().tolist())

    # ---- the graph calls -------------------------------------------------------------------
    def _prepare(self, prompts, settings: GenerateSettings) -> tuple[list[Sample], int | None, dict]:
        import tensorflow as tf

        seed = None if settings.greedy else (settings.seed if settings.seed is not None else secrets.randbits(62))
        raw = [prompt_bytes(prompt) for prompt in prompts] or [b""]
        shown = [text.decode("utf-8", errors="replace") for text in raw]  # printable, whatever the bytes
        rows = [(index, sample) for index in range(len(raw)) for sample in range(settings.num_samples)]
        feed = dict(
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
        samples = [Sample(prompt=shown[index], prompt_index=index, sample_index=sample, text="", ids=[])
                   for index, sample in rows]
        return samples, seed, feed

    def _whole_call(self, prompts, settings):
        samples, seed, feed = self._prepare(prompts, settings)
        outputs = {key: value.numpy() for key, value in self._generate(**feed).items()}
        return self._with_unknown_words(samples, outputs["unknown_words"]), seed, outputs

    @staticmethod
    def _with_unknown_words(samples: list[Sample], unknown) -> list[Sample]:
        # an export before tokenizer 2 may hold raw bytes
        return [Sample(sample.prompt, sample.prompt_index, sample.sample_index, sample.text, sample.ids,
                       unknown[row].decode("utf-8", errors="replace").split()) for row, sample in enumerate(samples)]

    @staticmethod
    def _filled(sample: Sample, outputs: dict, row: int) -> Sample:
        # A word export's rows are all num_words long; a wordpiece export's rows are 0-padded
        # (exports before subwords have no "lengths").
        ids = outputs["ids"][row]
        length = outputs["lengths"][row] if "lengths" in outputs else len(ids)
        return Sample(sample.prompt, sample.prompt_index, sample.sample_index, outputs["text"][row].decode("utf-8"),
                      [int(value) for value in ids[:length]], sample.unknown_words)

    def _chunked_progress(self, started, settings: GenerateSettings, first_steps: int, steps: int) -> Iterator[Progress]:
        import tensorflow as tf

        state = {key: value for key, value in started.items() if key.startswith("state_")}
        rows = len(started["unknown_words"])
        words_so_far = [[] for _ in range(rows)]
        stopped = [False] * rows
        chunk = max(1, first_steps)
        advance = self._compiled if self.compiles(rows) else self._continue
        while not all(stopped):
            out = advance(**state, steps=tf.constant(chunk, tf.int32))
            state = {key: value for key, value in out.items() if key.startswith("state_")}
            chunk = min(max(chunk * 2, 1), max(steps, 1))
            words, ids, lengths = out["words"].numpy(), out["ids"].numpy(), out["lengths"].numpy()
            word_lengths, done = out["word_lengths"].numpy(), out["done"].numpy()
            progress = Progress([], [], [])
            for row in range(rows):
                new_words = [word.decode("utf-8") for word in words[row] if word] if not stopped[row] else []
                new_ids = [int(value) for value in ids[row][: lengths[row]]] if not stopped[row] else []
                keep = self._cut(words_so_far[row], new_words, settings)
                if keep is not None:
                    new_ids = new_ids[: int(sum(word_lengths[row][:keep]))]
                    new_words = new_words[:keep]
                words_so_far[row] += new_words
                stopped[row] = stopped[row] or keep is not None or bool(done[row]) or bool(out["finished"])
                progress.words.append(new_words)
                progress.ids.append(new_ids)
                progress.done.append(stopped[row])
            yield progress

    def _one_call_progress(self, outputs: dict, settings: GenerateSettings) -> Iterator[Progress]:
        """An export without generate_continue: the whole batch in one call, cut at the stop conditions."""
        progress = Progress([], [], [])
        for row in range(len(outputs["text"])):
            sample = self._filled(Sample("", 0, 0, "", []), outputs, row)
            words = sample.text.split(" ") if sample.text else []
            keep = self._cut([], words, settings)
            ids = sample.ids
            if keep is not None:
                ids = ids[: sum(self._word_lengths(ids)[:keep])]
                words = words[:keep]
            progress.words.append(words)
            progress.ids.append(ids)
            progress.done.append(True)
        yield progress

    @staticmethod
    def _cut(before: list[str], new_words: list[str], settings: GenerateSettings) -> int | None:
        """How many of new_words to keep (None: all, and go on)."""
        if not settings.stops_early or not new_words:
            return None
        keep = words_to_keep(before + new_words, len(before), settings.stop, settings.until_sentence_end)
        return None if keep is None else keep - len(before)

    def _word_lengths(self, ids: list[int]) -> list[int]:
        """Tokens of each word of ids: one each, or (pieces) a word start and the "##" pieces after it."""
        if not self.subwords:
            return [1] * len(ids)
        vocabulary = self.vocabulary()
        lengths = []
        for token in ids:
            piece = vocabulary[token]
            if lengths and piece.startswith("##") and len(piece) > 2:
                lengths[-1] += 1
            else:
                lengths.append(1)
        return lengths


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
