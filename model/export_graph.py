"""The exported graph: a `tf.Module` holding tokenizer, vocabulary and the trained model's own layers.

One export path for every architecture: the signatures call the Keras layers the model was
trained with (traced into TensorFlow ops by `tf.saved_model.save`), never a second copy of
their equations, so the SavedModel loads with TensorFlow and TensorFlow Text alone.

Generation (`generate` signature):
- the prompt's raw bytes are tokenized by `ingest.text.TextToIds` (the same module ingest used:
  words, or WordPiece pieces), its last `context_length` ids are kept and pre-padded with 0;
- a decoder runs that window once, exactly as in training, then advances one word at a time:
  - LSTM/GRU (`RecurrentDecoder`): every layer's recurrent state is carried from word to word
    through the layer's own cell (so the model keeps seeing words that slid out of the window;
    bench/context_bench.py measured this against re-reading the window);
  - Transformer (`TransformerDecoder`): keys and values of the window are cached and each new
    word attends to them; when the window is full, the last `keep` words are re-read as a
    new window (positions 0..keep-1) and caching goes on. Every prediction is thus the
    model's output on a window shaped like a training window, at 1/(context-keep) re-reads
    per word instead of one whole window per word. With ALiBi positions (`SlidingDecoder`, the
    recipe's default) keys hold no position, so the cache is a ring: the new word overwrites the
    oldest, nothing is re-read. A new word's step (`DecoderBlock.step`) runs at rank 2 in ~45 ops
    a block, avoiding the kernels whose fixed cost dominates at one word (oneDNN einsum and softmax,
    ~60-70 us each on a CPU: bench/RESULTS.md, "Transformer generation per word");
  - bidirectional models, and transformers trained on objective "last" (`WindowDecoder`),
    recompute their whole window for every word (a backward layer has no state to carry; the
    transformer's other positions were never trained to predict);
- with an n-gram in the export (model/ngram_graph.py), the decoder's logits become the log of
  w softmax(logits) + (1 - w) P_ngram(. | the last order - 1 ids), wherever logits leave the graph
  or are sampled from;
- the next token is chosen by `model.sampling.choose_next_ids`, <pad>/<unk> masked; with pieces,
  generation runs until every row holds `num_words` whole words, which `TextToIds.detokenize`
  joins (see `export_generation.GenerationMixin._generate`);
- `generate_start` / `generate_continue` run the same loop a chunk of tokens per call, carrying its
  state between calls (streaming, stop conditions), and `serving_default` is `generate` for TF
  Serving (model/export_generation.py).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from nextword.model import sampling, transformer
from nextword.ingest.text import PAD_ID, TextToIds
from nextword.model.builder import final_word_logits_fn
from nextword.model.config import ModelConfig
from nextword.model.export_generation import GenerationMixin
from nextword.model import export_generation
from nextword.model.ngram_graph import NgramMixture
from nextword.model.transformer import MASKED_SCORE, alibi_slopes, word_positions


class WindowDecoder(tf.Module):
    """Recomputes the window ending at each new word (bidirectional models, transformers of
    objective "last"). State: none."""

    description = "window recomputed every word"

    def __init__(self, model: keras.Model, config: ModelConfig):
        super().__init__(name="window_decoder")
        self.context_length = config.context_length
        self.final_logits = final_word_logits_fn(model)

    def start(self, window: tf.Tensor) -> tuple[tf.Tensor, tuple]:
        return self.final_logits(window), ()

    def advance(self, state, next_ids, history, length):
        """history int32[batch, >length] holds next_ids at column `length`."""
        # tf.slice: a static width; XLA read another window through the dynamic strided slice (compiled generation)
        window = tf.slice(history, tf.stack([0, length + 1 - self.context_length]), [-1, self.context_length])
        return self.final_logits(window), state


class RecurrentDecoder(tf.Module):
    """Carries every LSTM/GRU layer's state through the layer's own cell, one word per step.

    State: a tuple with one entry per layer, each a tuple of float32[batch, units] tensors
    ((h, c) for an LSTM, (h,) for a GRU).
    """

    description = "recurrent state carried word to word"

    def __init__(self, model: keras.Model, config: ModelConfig):
        super().__init__(name="recurrent_decoder")
        self.embedding = model.get_layer("embedding")
        self.cells = [model.get_layer(f"rnn_{index}").cell for index in range(config.layers)]
        # The same cells (same weights) run over a whole window, returning their final states.
        self.window_runners = [keras.layers.RNN(cell, return_sequences=True, return_state=True) for cell in self.cells]
        self.projection = model.get_layer("logits")

    def _logits(self, features: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.projection(features), tf.float32)

    def start(self, window: tf.Tensor) -> tuple[tf.Tensor, tuple]:
        """ids int32[batch, time] from a zero state -> (logits of the word after them, state)."""
        hidden = self.embedding(window)
        states = []
        for runner in self.window_runners:
            hidden, *state = runner(hidden)
            states.append(tuple(state))
        return self._logits(hidden[:, -1]), tuple(states)

    def step(self, ids: tf.Tensor, states: tuple) -> tuple[tf.Tensor, tuple]:
        """One new word per row: ids int32[batch] -> (logits float32[batch, vocab], new state)."""
        hidden = self.embedding(ids)
        new_states = []
        for cell, state in zip(self.cells, states):
            hidden, state = cell(hidden, list(state))
            new_states.append(tuple(state))
        return self._logits(hidden), tuple(new_states)

    def advance(self, state, next_ids, history, length):
        return self.step(next_ids, state)


# From this many rows a cached word's attention runs as BatchMatMul (DecoderBlock.step's many_rows). Measured
# on a 2-core CPU (CPU words/s, products / BatchMatMul): 16 rows 17.9K / 15.4K, 24 rows 15.6K / 18.3K
# (bench/RESULTS.md, "Cheaper per word without changing the words").
MATMUL_ROWS = 20


class TransformerDecoder(tf.Module):
    """Cached keys and values over a window; the window's last `keep` words are re-read when it fills.

    State: (filled int32 scalar: window slots in the cache, caches: one (keys, values) pair per
    block, each float32[batch, heads, context, head_dim], key_is_word bool[batch, context]:
    which slots hold words, not pads, next_position int32[batch]: the position of the next word).
    With ignore_padding (model/transformer.py) pads are masked and positions count words; a
    0.2 model sees pads and window positions, and the last two entries go unused.
    """

    def __init__(self, model: keras.Model, config: ModelConfig, keep: int | None = None):
        super().__init__(name="transformer_decoder")
        self.context_length = config.context_length
        # Re-read 3/4 of the window when it fills: every word keeps >= 3/4 of a window of context,
        # at keep re-read positions every (context - keep) words: ~4 positions of work per word
        # at context 44 instead of 44 (2.0-2.3x the words/s of re-reading every word, bench/arch_bench.py).
        self.keep = keep if keep is not None else max(1, 3 * config.context_length // 4)
        self.heads, self.head_dim = config.heads, config.units // config.heads
        self.ignore_padding = config.ignore_padding
        self.embedding = model.get_layer("embedding")
        self.blocks = [model.get_layer(f"block_{index}") for index in range(config.layers)]
        self.final_norm = model.get_layer("final_norm")
        self.in_place = True  # the cache written in place (transformer.write_rows); False while tracing for XLA
        self.projection = model.get_layer("logits")
        self.description = (f"cached keys and values; when the window of {self.context_length} is full, "
                            f"its last {self.keep} words are re-read")

    def _logits(self, hidden: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.projection(transformer.layer_norm(self.final_norm, hidden)), tf.float32)

    def _step(self, hidden, slot, caches: tuple, key_bias, many_rows: bool) -> tuple[tf.Tensor, tuple]:
        """One word per row (hidden float[batch, width]: its embedding) into cache slot `slot`, rank 2
        throughout (see DecoderBlock.step); key_bias float32[batch or 1, 1 or heads, context]."""
        batch = tf.shape(hidden)[0]
        # (row, head, slot) as rows of a cache's [batch * heads * context, head_dim] view: int32[batch * heads]
        slot_rows = tf.range(batch * self.heads) * self.context_length + slot
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            hidden, cache = block.step(hidden, cache, slot_rows, key_bias, many_rows, self.in_place)
            new_caches.append(cache)
        return self._logits(hidden), tuple(new_caches)

    def start(self, window: tf.Tensor) -> tuple[tf.Tensor, tuple]:
        """ids int32[batch, time <= context] in slots 0..time-1 -> (logits, state).

        The window runs as in training (attention within it, no cache to scatter into: an einsum
        against a cache cost ~0.9 ms per re-read at batch 1), the last block's output at the last
        slot only (`DecoderBlock.forward(last_only=True)`); its keys and values then fill the
        cache's first `time` slots."""
        batch, time = tf.shape(window)[0], tf.shape(window)[1]
        is_word = tf.not_equal(window, PAD_ID)
        key_is_word = tf.concat([is_word, tf.zeros([batch, self.context_length - time], tf.bool)], axis=1)
        key_is_word = tf.reshape(key_is_word, [-1, self.context_length])  # a static width for the loop
        if self.ignore_padding:
            hidden, window_is_word = self.embedding(window, positions=word_positions(window)), is_word
        else:
            hidden, window_is_word = self.embedding(window, start=0), None
        caches = []
        empty_slots = [[0, 0], [0, 0], [0, self.context_length - time], [0, 0]]
        cache_shape = [-1, self.heads, self.context_length, self.head_dim]
        for index, block in enumerate(self.blocks):
            last_only = index == len(self.blocks) - 1
            hidden, (key, value) = block.forward(hidden, key_is_word=window_is_word, last_only=last_only)
            batch_major = [tf.pad(tf.transpose(tf.cast(tensor, tf.float32), [0, 2, 1, 3]), empty_slots) for tensor in (key, value)]
            caches.append(tuple(tf.reshape(tensor, cache_shape) for tensor in batch_major))  # a static shape for the loop
        logits = self._logits(hidden[:, -1])
        return logits, (time, tuple(caches), key_is_word, tf.reduce_sum(tf.cast(is_word, tf.int32), axis=1))

    @contextlib.contextmanager
    def compilable(self):
        """Steps traced within write their cache as XLA compiles it (`transformer.write_rows`): `advance_compilable`."""
        self.in_place = False
        try:
            yield
        finally:
            self.in_place = True

    def writable(self, state):
        """The state with its caches copied, once before a loop whose steps write them in place
        (`transformer.write_rows`): the tensors the loop was given (a continued call's state_* inputs) stay as
        they were. Snapshot copies unless no other tensor holds the buffer, and XLA compiles it (DeepCopy it does not).
        Both decoders' states hold the caches second."""
        if not self.in_place:
            return state
        return (state[0], tuple(tuple(tf.raw_ops.Snapshot(input=tensor) for tensor in cache) for cache in state[1]),
                *state[2:])

    def advance(self, state, next_ids, history, length):
        filled, caches, key_is_word, next_position = state

        def cached(many_rows: bool):
            # generation never draws <pad>; a pad is handled as word_positions does all the same
            is_word = tf.not_equal(next_ids, PAD_ID)
            in_slot = tf.equal(tf.range(self.context_length), filled)[tf.newaxis, :]  # bool[1, context]
            if self.ignore_padding:
                position = tf.where(is_word, next_position, tf.maximum(next_position - 1, 0))
                attends = tf.logical_or(key_is_word, in_slot)  # the words so far, and itself
                slot_is_word = tf.logical_or(key_is_word, tf.logical_and(in_slot, is_word[:, tf.newaxis]))
            else:  # window positions, pads seen: every slot up to its own
                position, slot_is_word = filled, key_is_word
                attends = tf.range(self.context_length)[tf.newaxis, :] <= filled
            hidden = self.embedding.tokens(next_ids) + self.embedding.positions(position)  # [batch, width]
            key_bias = tf.where(attends, 0.0, MASKED_SCORE)[:, tf.newaxis, :]  # float32[batch, 1 (heads), context]
            logits, new_caches = self._step(hidden, filled, caches, key_bias, many_rows)
            return logits, (filled + 1, new_caches, slot_is_word, next_position + tf.cast(is_word, tf.int32))

        def reread():
            # tf.slice: a static width, which XLA needs (compiled generation)
            return self.start(tf.slice(history, tf.stack([0, length + 1 - self.keep]), [-1, self.keep]))

        # One branch a word: a cond per block cost ~10% of one row's words/s. This switch still costs 4-7% at one
        # row against the plain cond (filled < context) it replaced; tracing the loop twice and choosing once a
        # call gave that back but doubled the loop's graph: +1.2 s to the first word (bench/RESULTS.md).
        many_rows = tf.cast(tf.shape(next_ids)[0] >= MATMUL_ROWS, tf.int32)
        branch = tf.where(filled < self.context_length, many_rows, 2)
        return tf.switch_case(branch, [lambda: cached(False), lambda: cached(True), reread])


class SlidingDecoder(TransformerDecoder):
    """A transformer with ALiBi positions (ModelConfig.positions "alibi"): the cache is a ring of
    `context` slots and each new word overwrites the oldest, with no re-read.

    Why it is exact up to the window and close past it: a key holds no position (the distance enters as
    each head's -slope * distance on the scores), so a word's keys and values are what a window holding
    it would compute, as long as the words they attended to are still in it. Past the window, a later
    block's cached keys were computed when older words were in view (as in sliding-window attention
    models): the first block sees exactly the window, the next ones a little more.

    State: (written int32 scalar: words written into the ring so far, the next slot is written mod
    context; caches, as TransformerDecoder's; key_is_word bool[batch, context]; key_position
    int32[batch, context]: each slot's word position; next_position int32[batch])."""

    def __init__(self, model: keras.Model, config: ModelConfig):
        super().__init__(model, config)
        self.slopes = tf.constant(alibi_slopes(config.heads), tf.float32)[:, tf.newaxis]  # [heads, 1]
        self.description = (f"cached keys and values in a ring of {self.context_length} slots: the newest word "
                            f"replaces the oldest (ALiBi positions, no re-read)")

    def start(self, window: tf.Tensor) -> tuple[tf.Tensor, tuple]:
        logits, (time, caches, key_is_word, next_position) = super().start(window)
        key_position = tf.pad(word_positions(window), [[0, 0], [0, self.context_length - tf.shape(window)[1]]])
        key_position = tf.reshape(key_position, [-1, self.context_length])  # a static width for the loop
        return logits, (time, caches, key_is_word, key_position, next_position)

    def advance(self, state, next_ids, history, length):
        written, caches, key_is_word, key_position, next_position = state
        slot = tf.math.floormod(written, self.context_length)
        in_slot = tf.equal(tf.range(self.context_length), slot)[tf.newaxis, :]  # bool[1, context]
        # generation never draws <pad>; a pad is handled as word_positions does all the same
        is_word = tf.not_equal(next_ids, PAD_ID)
        position = tf.where(is_word, next_position, tf.maximum(next_position - 1, 0))
        key_is_word = tf.where(in_slot, is_word[:, tf.newaxis], key_is_word)  # the slot's old word leaves the window
        key_position = tf.where(in_slot, position[:, tf.newaxis], key_position)
        attends = tf.logical_or(key_is_word, in_slot)[:, tf.newaxis, :]  # the words in the ring, and itself
        distance = tf.cast(position[:, tf.newaxis] - key_position, tf.float32)[:, tf.newaxis, :]
        key_bias = tf.where(attends, -self.slopes * distance, MASKED_SCORE)  # float32[batch, heads, context]
        hidden = self.embedding.tokens(next_ids)
        logits, new_caches = tf.cond(tf.shape(next_ids)[0] >= MATMUL_ROWS,
                                     lambda: self._step(hidden, slot, caches, key_bias, True),
                                     lambda: self._step(hidden, slot, caches, key_bias, False))
        return logits, (written + 1, new_caches, key_is_word, key_position, next_position + tf.cast(is_word, tf.int32))


def make_decoder(model: keras.Model, config: ModelConfig) -> tf.Module:
    if config.arch == "transformer" and config.objective == "all":
        return SlidingDecoder(model, config) if config.positions == "alibi" else TransformerDecoder(model, config)
    if config.bidirectional or config.arch == "transformer":
        # A transformer trained on objective "last" was only ever supervised at the window's last
        # position: a cache would predict from positions it never trained on, so it re-reads.
        return WindowDecoder(model, config)
    return RecurrentDecoder(model, config)


MAX_PIECES_PER_WORD = export_generation.MAX_PIECES_PER_WORD  # where tools and tests look for it


class ExportModule(GenerationMixin, tf.Module):
    """What `tf.saved_model.save` writes: tokenizer + vocabulary + weights + signatures."""

    def __init__(self, model: keras.Model, config: ModelConfig, vocabulary: list[str], tokenizer: str = "word",
                 mixture: NgramMixture | None = None):
        super().__init__(name="nextword_export")
        self.config = config
        self.context_length = config.context_length
        self.vocab_size = config.vocab_size
        # The tokenizer ingest used (ingest.text.TextToIds), words or pieces, with its detokenizer.
        self.text_to_ids = TextToIds(vocabulary, tokenizer)
        self.vocabulary = self.text_to_ids.vocabulary  # string[vocab]: one variable, saved once
        self.subwords = tokenizer == "wordpiece"
        self.model = model
        # In model.get_weights() order: tools rebuild the Keras model from an export with these.
        self.keras_weights = list(model.weights)
        self.decoder = make_decoder(model, config)
        self.mixture = mixture
        # ids the mixture reads before a word: the n-gram's, or the whole window with the context cache
        self.mixture_width = mixture.ids_read(config.context_length) if mixture is not None else 0
        self.network_logits = final_word_logits_fn(model)
        self.tokenize = tf.function(self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
        self.next_word_probabilities = tf.function(
            self._next_word_probabilities, input_signature=[tf.TensorSpec([None], tf.string)]
        )
        self.score_ids = tf.function(
            self._score_ids, input_signature=[tf.TensorSpec([None, config.context_length], tf.int32)]
        )
        self._build_generation_signatures()  # generate, generate_start/_continue, serving_default

    def signatures(self) -> dict:
        return {
            "generate": self.generate,
            "generate_start": self.generate_start,
            "generate_continue": self.generate_continue,
            "serving_default": self.serving_default,
            "tokenize": self.tokenize,
            "next_word_probabilities": self.next_word_probabilities,
            "score_ids": self.score_ids,
        }

    # ---- tokenizer ----------------------------------------------------------------------
    def _words_and_ids(self, prompts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.Tensor]:
        """-> (words ragged string[batch, (words)], ids ragged int32[batch, (tokens)], the words
        read as <unk>: string[batch], space-separated)."""
        words, ids, unknown = self.text_to_ids.words_and_ids(prompts)
        unknown_words = tf.strings.reduce_join(tf.ragged.boolean_mask(words, unknown), axis=1, separator=" ")
        return words, tf.cast(ids, tf.int32), unknown_words

    def _window(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """ragged int32[batch, (tokens)] -> int32[batch, context]: the last tokens, pre-padded."""
        context = self.context_length
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        rows = tf.cast(ids.value_rowids(), tf.int32)
        position = tf.range(tf.size(ids.flat_values)) - tf.gather(tf.cast(ids.row_starts(), tf.int32), rows)
        row_length = tf.gather(lengths, rows)
        keep = position >= row_length - context  # prompts longer than the context keep their last tokens
        column = context - tf.minimum(row_length, context) + position - tf.maximum(row_length - context, 0)
        indices = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(column, keep)], axis=1)
        batch = tf.shape(lengths)[0]
        return tf.scatter_nd(indices, tf.boolean_mask(ids.flat_values, keep), [batch, context])  # zeros = <pad>

    def _tokenize(self, prompts: tf.Tensor) -> dict:
        """string[batch] -> words string[batch, max_words] ("" padded), ids int32[batch,
        max_tokens] (0 padded, post; pieces for a wordpiece export), lengths int32[batch] (tokens),
        window int32[batch, context], unknown_words string[batch]."""
        words, ids, unknown_words = self._words_and_ids(prompts)
        return {
            "words": words.to_tensor(default_value=""),
            "ids": ids.to_tensor(default_value=PAD_ID),
            "lengths": tf.cast(ids.row_lengths(), tf.int32),
            "window": self._window(ids),
            "unknown_words": unknown_words,
        }

    # ---- scoring ------------------------------------------------------------------------
    def _scores(self, network_logits: tf.Tensor, ids: tf.Tensor, generated: tf.Tensor | None = None) -> tf.Tensor:
        """What is sampled from and scored: the network's logits, or with an n-gram the log of the
        mixture given the ids they follow (int32[batch, >= order - 1], the last ones nearest; generated:
        bool[ids], those the model sampled itself, which its context cache counts as the n-gram's distribution)."""
        if self.mixture is None:
            return network_logits
        return self.mixture.mixed_log_probabilities(network_logits, ids, generated)

    def _score_ids(self, context: tf.Tensor) -> dict:
        """int32[batch, context] -> logits float32[batch, vocab] of the token after the window (with
        an n-gram: the mixture's log-probabilities)."""
        return {"logits": self._scores(self.network_logits(context), context)}

    def _next_word_probabilities(self, prompts: tf.Tensor) -> dict:
        """string[batch] -> float32[batch, vocab]: the distribution `generate` samples the first
        token of the next word from at temperature 1 (<pad>, <unk> and pieces that would continue
        the prompt's last word zeroed out, the rest renormalised)."""
        # tokenize and score_ids called as functions: one trace of each in the export (a shorter load)
        logits = self._must_start_word(self.score_ids(self.tokenize(prompts)["window"])["logits"], tf.constant(True))
        return {"probabilities": tf.nn.softmax(sampling.mask_reserved(logits), axis=-1)}

    def _must_start_word(self, logits: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """logits float32[batch, vocab] with the pieces that continue a word set to -inf in `rows`
        (bool[batch], or a scalar for all rows). A no-op for a word vocabulary."""
        if not self.subwords:
            return logits
        banned = tf.logical_and(tf.reshape(rows, [-1, 1]), self.text_to_ids.continues_word[tf.newaxis, :])
        return tf.where(banned, tf.constant(sampling.NEG_INF, logits.dtype), logits)
