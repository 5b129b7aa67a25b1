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
    per word instead of one whole window per word;
  - bidirectional models, and transformers trained on objective "last" (`WindowDecoder`),
    recompute their whole window for every word (a backward layer has no state to carry; the
    transformer's other positions were never trained to predict);
- with an n-gram in the export (model/ngram_graph.py), the decoder's logits become the log of
  w softmax(logits) + (1 - w) P_ngram(. | the last order - 1 ids), wherever logits leave the graph
  or are sampled from;
- the next token is chosen by `model.sampling.choose_next_ids`, <pad>/<unk> masked; with pieces,
  generation runs until every row holds `num_words` whole words, which `TextToIds.detokenize`
  joins (see `ExportModule._generate`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from nextword.model import sampling
from nextword.ingest.text import PAD_ID, TextToIds
from nextword.model.builder import final_word_logits_fn
from nextword.model.config import ModelConfig
from nextword.model.ngram_graph import NgramMixture
from nextword.model.transformer import word_positions


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
        return self.final_logits(history[:, length + 1 - self.context_length : length + 1]), state


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


class TransformerDecoder(tf.Module):
    """Cached keys and values over a window; the window's last `keep` words are re-read when it fills.

    State: (filled int32 scalar: window slots in the cache, caches: one (keys, values) pair per
    block, each float32[context, batch, heads, head_dim], key_is_word bool[batch, context]:
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
        self.projection = model.get_layer("logits")
        self.description = (f"cached keys and values; when the window of {self.context_length} is full, "
                            f"its last {self.keep} words are re-read")

    def _logits(self, hidden: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.projection(self.final_norm(hidden)), tf.float32)

    def _run(self, ids: tf.Tensor, start, caches: tuple, positions, key_is_word) -> tuple[tf.Tensor, tuple]:
        if self.ignore_padding:
            hidden = self.embedding(ids, positions=positions)
        else:
            hidden, key_is_word = self.embedding(ids, start=start), None
        new_caches = []
        for block, cache in zip(self.blocks, caches):
            hidden, cache = block.forward(hidden, start=start, cache=cache, key_is_word=key_is_word)
            new_caches.append(cache)
        return self._logits(hidden[:, -1]), tuple(new_caches)

    def _empty_caches(self, batch) -> tuple:
        shape = [self.context_length, batch, self.heads, self.head_dim]
        return tuple((tf.zeros(shape, tf.float32), tf.zeros(shape, tf.float32)) for _ in self.blocks)

    def start(self, window: tf.Tensor) -> tuple[tf.Tensor, tuple]:
        """ids int32[batch, time <= context] in slots 0..time-1 -> (logits, state)."""
        batch, time = tf.shape(window)[0], tf.shape(window)[1]
        is_word = tf.not_equal(window, PAD_ID)
        key_is_word = tf.concat([is_word, tf.zeros([batch, self.context_length - time], tf.bool)], axis=1)
        key_is_word = tf.reshape(key_is_word, [-1, self.context_length])  # a static width for the loop
        positions = word_positions(window)
        logits, caches = self._run(window, 0, self._empty_caches(batch), positions, key_is_word)
        return logits, (time, caches, key_is_word, tf.reduce_sum(tf.cast(is_word, tf.int32), axis=1))

    def advance(self, state, next_ids, history, length):
        filled, caches, key_is_word, next_position = state

        def cached():
            # generation never draws <pad>; a pad is handled as word_positions does all the same
            is_word = tf.not_equal(next_ids, PAD_ID)
            in_slot = tf.logical_and(tf.equal(tf.range(self.context_length), filled)[tf.newaxis, :], is_word[:, tf.newaxis])
            position = tf.where(is_word, next_position, tf.maximum(next_position - 1, 0))
            slot_is_word = tf.logical_or(key_is_word, in_slot)
            logits, new_caches = self._run(next_ids[:, tf.newaxis], filled, caches, position[:, tf.newaxis], slot_is_word)
            return logits, (filled + 1, new_caches, slot_is_word, next_position + tf.cast(is_word, tf.int32))

        def reread():
            return self.start(history[:, length + 1 - self.keep : length + 1])

        return tf.cond(filled < self.context_length, cached, reread)


def make_decoder(model: keras.Model, config: ModelConfig) -> tf.Module:
    if config.arch == "transformer" and config.objective == "all":
        return TransformerDecoder(model, config)
    if config.bidirectional or config.arch == "transformer":
        # A transformer trained on objective "last" was only ever supervised at the window's last
        # position: a cache would predict from positions it never trained on, so it re-reads.
        return WindowDecoder(model, config)
    return RecurrentDecoder(model, config)


GENERATE_SIGNATURE = dict(
    prompts=tf.TensorSpec([None], tf.string),
    num_words=tf.TensorSpec([], tf.int32),
    temperature=tf.TensorSpec([], tf.float32),
    greedy=tf.TensorSpec([], tf.bool),
    top_k=tf.TensorSpec([], tf.int32),
    top_p=tf.TensorSpec([], tf.float32),
    repetition_penalty=tf.TensorSpec([], tf.float32),
    no_repeat_ngram=tf.TensorSpec([], tf.int32),
    seed=tf.TensorSpec([], tf.int64),
)

# The most pieces a generated word may take: past it the next piece must start a new word. It
# bounds generation (at most num_words * this + 1 steps) should a model keep continuing a word;
# real words take far fewer (1.2 pieces a word on vim's help at 5,000 pieces).
MAX_PIECES_PER_WORD = 16


class ExportModule(tf.Module):
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
        self.ngram_width = mixture.order - 1 if mixture is not None else 0  # ids the n-gram reads before a word
        self.network_logits = final_word_logits_fn(model)
        self.generate = tf.function(self._generate, input_signature=list(GENERATE_SIGNATURE.values()))
        self.tokenize = tf.function(self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
        self.next_word_probabilities = tf.function(
            self._next_word_probabilities, input_signature=[tf.TensorSpec([None], tf.string)]
        )
        self.score_ids = tf.function(
            self._score_ids, input_signature=[tf.TensorSpec([None, config.context_length], tf.int32)]
        )

    def signatures(self) -> dict:
        return {
            "generate": self.generate,
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
    def _scores(self, network_logits: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        """What is sampled from and scored: the network's logits, or with an n-gram the log of the
        mixture given the ids they follow (int32[batch, >= order - 1], the last ones nearest)."""
        return network_logits if self.mixture is None else self.mixture.mixed_log_probabilities(network_logits, ids)

    def _score_ids(self, context: tf.Tensor) -> dict:
        """int32[batch, context] -> logits float32[batch, vocab] of the token after the window (with
        an n-gram: the mixture's log-probabilities)."""
        return {"logits": self._scores(self.network_logits(context), context)}

    def _next_word_probabilities(self, prompts: tf.Tensor) -> dict:
        """string[batch] -> float32[batch, vocab]: the distribution `generate` samples the first
        token of the next word from at temperature 1 (<pad>, <unk> and pieces that would continue
        the prompt's last word zeroed out, the rest renormalised)."""
        _, ids, _ = self._words_and_ids(prompts)
        window = self._window(ids)
        logits = self._must_start_word(self._scores(self.network_logits(window), window), tf.constant(True))
        return {"probabilities": tf.nn.softmax(sampling.mask_reserved(logits), axis=-1)}

    def _must_start_word(self, logits: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """logits float32[batch, vocab] with the pieces that continue a word set to -inf in `rows`
        (bool[batch], or a scalar for all rows). A no-op for a word vocabulary."""
        if not self.subwords:
            return logits
        banned = tf.logical_and(tf.reshape(rows, [-1, 1]), self.text_to_ids.continues_word[tf.newaxis, :])
        return tf.where(banned, tf.constant(sampling.NEG_INF, logits.dtype), logits)

    # ---- generation ---------------------------------------------------------------------
    def _generate(self, prompts, num_words, temperature, greedy, top_k, top_p, repetition_penalty, no_repeat_ngram, seed):
        """Sample until every row holds num_words whole words. A word vocabulary takes one token a
        word. With pieces, the first piece must start a word (never continue the prompt's last
        one), a word may take up to MAX_PIECES_PER_WORD pieces, and a row's words are complete once
        the piece starting its word num_words + 1 is drawn (that piece is dropped)."""
        words, ids, unknown_words = self._words_and_ids(prompts)
        window = self._window(ids)
        batch = tf.shape(window)[0]
        context = self.context_length
        num_words = tf.maximum(num_words, 0)
        max_steps = num_words * MAX_PIECES_PER_WORD + 1 if self.subwords else num_words
        history = tf.concat([window, tf.zeros([batch, max_steps], tf.int32)], axis=1)
        seen = self._mark_seen(tf.zeros([batch, self.vocab_size], tf.bool), window)
        logits, state = self.decoder.start(window)
        columns = tf.range(tf.shape(history)[1])
        continues_word = self.text_to_ids.continues_word
        words_needed = num_words + 1 if self.subwords else num_words  # pieces: the next word's start ends the last

        def body(step, logits, state, history, seen, word_starts, pieces_in_word):
            length = context + step
            banned = sampling.banned_by_ngrams(history, length, no_repeat_ngram, self.vocab_size)
            scores = self._scores(logits, history[:, length - self.ngram_width : length])
            next_ids = sampling.choose_next_ids(
                self._must_start_word(scores, pieces_in_word >= MAX_PIECES_PER_WORD), seen, banned,
                greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, seed=seed, step=step,
            )
            starts = tf.logical_not(tf.gather(continues_word, next_ids))
            history = tf.where(tf.equal(columns, length)[tf.newaxis, :], next_ids[:, tf.newaxis], history)
            seen = self._mark_seen(seen, next_ids[:, tf.newaxis])
            logits, state = self.decoder.advance(state, next_ids, history, length)
            word_starts += tf.cast(starts, tf.int32)
            pieces_in_word = tf.where(starts, 1, pieces_in_word + 1)
            return step + 1, logits, state, history, seen, word_starts, pieces_in_word

        def more(step, *loop_state):
            word_starts = loop_state[-2]
            return tf.logical_and(step < max_steps, tf.reduce_any(word_starts < words_needed))

        # pieces_in_word starts at the cap: the first piece must start a word
        start_state = (tf.constant(0), logits, state, history, seen, tf.zeros([batch], tf.int32),
                       tf.fill([batch], MAX_PIECES_PER_WORD))
        steps, _, _, history, _, _, _ = tf.while_loop(more, body, start_state, maximum_iterations=max_steps)
        generated = self._whole_words(history[:, context : context + steps], num_words)
        return {
            "text": self.text_to_ids.detokenize(generated),
            "ids": generated.to_tensor(default_value=PAD_ID),
            "lengths": tf.cast(generated.row_lengths(), tf.int32),
            "unknown_words": unknown_words,
            "prompt_length": tf.cast(words.row_lengths(), tf.int32),
        }

    def _whole_words(self, generated: tf.Tensor, num_words: tf.Tensor) -> tf.RaggedTensor:
        """int32[batch, steps] -> ragged [batch, (tokens)]: each row's tokens of its first num_words words."""
        starts = tf.cast(tf.logical_not(tf.gather(self.text_to_ids.continues_word, generated)), tf.int32)
        in_words = tf.cumsum(starts, axis=1) <= num_words  # a prefix of every row
        return tf.RaggedTensor.from_tensor(generated, lengths=tf.reduce_sum(tf.cast(in_words, tf.int32), axis=1))

    def _mark_seen(self, seen: tf.Tensor, new_ids: tf.Tensor) -> tf.Tensor:
        """seen bool[batch, vocab] |= one-hot of new_ids int32[batch, n]. A piece continuing a word
        is never marked: the repetition penalty acts on the tokens that start words (a whole word
        for `word`; for pieces, a word's first piece: "##s" or "##ing" is never penalised)."""
        new_ids = tf.where(tf.gather(self.text_to_ids.continues_word, new_ids), PAD_ID, new_ids)  # <pad>: masked anyway
        batch, count = tf.shape(new_ids)[0], tf.shape(new_ids)[1]
        rows = tf.repeat(tf.range(batch), count)
        indices = tf.stack([rows, tf.reshape(new_ids, [-1])], axis=1)
        return tf.tensor_scatter_nd_update(seen, indices, tf.ones([batch * count], tf.bool))
