"""Generation inside the exported graph: one sampling loop, run whole or in chunks.

One loop body (`_draw`) serves every generating signature, so all of them draw the same tokens:
- `generate`: the loop from the prompt to the last word, in one call;
- `generate_start` + `generate_continue` (= `emit(advance(...))`): the same loop, at most `steps` tokens a call, its whole
  state returned as `state_*` tensors and passed back; each call also returns the words completed
  since the previous one (`gen --stream` prints them as they come, stop conditions end the calls);
- `serving_default`: `generate` with fewer inputs and defaults for them (TF Serving's REST API).

Why the chunks draw exactly what one call draws: every random draw is seeded by (seed, step)
(model/sampling.py `gumbel_sample`, noise of shape [batch, vocab]), and the step, the history, the
repetition set, the decoder's state, the pieces-per-word counters and the settings are all in the
carried state; the history keeps the whole call's capacity, so the n-gram ban reads the same columns.
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from nextword.ingest.text import PAD_ID
from nextword.model import sampling

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
SETTINGS = tuple(name for name in GENERATE_SIGNATURE if name != "prompts")
# serving_default's inputs besides prompts, with the defaults TF Serving fills in when a request
# leaves them out (SignatureDef.defaults); greedy, repetition_penalty and no_repeat_ngram are off.
SERVING_DEFAULTS = dict(num_words=30, temperature=1.0, top_k=0, top_p=1.0, seed=0)
STATE_PREFIX = "state_"
LOOP_TENSORS = ("step", "logits", "history", "seen", "word_starts", "pieces_in_word")

# The most pieces a generated word may take: past it the next piece must start a new word. It
# bounds generation (at most num_words * this + 1 steps) should a model keep continuing a word;
# real words take far fewer (1.2 pieces a word on vim's help at 5,000 pieces).
MAX_PIECES_PER_WORD = 16


class GenerationMixin:
    """The generating signatures of `export_graph.ExportModule`, which provides context_length,
    vocab_size, subwords, text_to_ids, vocabulary, decoder, mixture, mixture_width, _words_and_ids, _window,
    _scores and _must_start_word."""

    def _build_generation_signatures(self) -> None:
        specs = list(GENERATE_SIGNATURE.values())
        self.generate_start = tf.function(self._generate_start, input_signature=specs)
        started = self.generate_start.get_concrete_function().structured_outputs  # traces: sets _decoder_structure
        state_specs = {name: tf.TensorSpec(value.shape, value.dtype, name=name)
                       for name, value in started.items() if name.startswith(STATE_PREFIX)}
        steps_spec = tf.TensorSpec([], tf.int32, name="steps")
        # generate_continue's two halves, saved as functions of the module (not signatures) so a loader can
        # compile the numeric half alone (XLA has no string ops): `Generator.load(compiled=True)`, `gen --compiled`
        self.advance = tf.function(self._advance, input_signature=[state_specs, steps_spec])
        self.emit = tf.function(self._emit, input_signature=[state_specs])
        # gen --compiled: the n-gram's lookup in shapes XLA knows (NgramMixture.static_shapes), a transformer's cache
        # written as XLA writes it (TransformerDecoder.compilable)
        if self.mixture is not None or hasattr(self.decoder, "compilable"):
            self.advance_compilable = tf.function(self._advance_compilable, input_signature=[state_specs, steps_spec])
        self.generate_continue = tf.function(self._generate_continue, input_signature=[state_specs, steps_spec])
        self.generate = tf.function(self._generate, input_signature=specs)
        defaults = {name: tf.constant(value, GENERATE_SIGNATURE[name].dtype) for name, value in SERVING_DEFAULTS.items()}

        def serve(prompts, num_words=defaults["num_words"], temperature=defaults["temperature"],
                  top_k=defaults["top_k"], top_p=defaults["top_p"], seed=defaults["seed"]):
            return self.generate(prompts, num_words, temperature, tf.constant(False), top_k, top_p,
                                 tf.constant(1.0), tf.constant(0), seed)  # called: one trace of generate

        self.serving_default = tf.function(serve, input_signature=[
            tf.TensorSpec([None], tf.string, name="prompts"),
            *(tf.TensorSpec([], GENERATE_SIGNATURE[name].dtype, name=name) for name in SERVING_DEFAULTS)])

    # ---- the signatures ------------------------------------------------------------------
    def _generate(self, prompts, num_words, temperature, greedy, top_k, top_p, repetition_penalty, no_repeat_ngram, seed):
        """Sample until every row holds num_words whole words. A word vocabulary takes one token a
        word. With pieces, the first piece must start a word (never continue the prompt's last
        one), a word may take up to MAX_PIECES_PER_WORD pieces, and a row's words are complete once
        the piece starting its word num_words + 1 is drawn (that piece is dropped)."""
        # generate_start and advance, called as functions: the export holds one trace of the window's forward
        # pass and of the loop, not one more in each of generate and serving_default (a third of the ops that
        # `tf.saved_model.load` rebuilds: -0.7 s load, bench/RESULTS.md "Time to the first word")
        started = self.generate_start(prompts, num_words, temperature, greedy, top_k, top_p, repetition_penalty,
                                      no_repeat_ngram, seed)
        state = {name: value for name, value in started.items() if name.startswith(STATE_PREFIX)}
        every_step = self._max_steps(state[f"{STATE_PREFIX}num_words"])  # as generate_start clamped it
        loop, settings, _ = self._unpack_state(self.advance(state, every_step))
        context = self.context_length
        generated = self._whole_words(loop["history"][:, context : context + loop["step"]], settings["num_words"])
        return {
            "text": self.text_to_ids.detokenize(generated),
            "ids": generated.to_tensor(default_value=PAD_ID),
            "lengths": tf.cast(generated.row_lengths(), tf.int32),
            "unknown_words": started["unknown_words"],
            "prompt_length": started["prompt_length"],
        }

    def _generate_start(self, prompts, num_words, temperature, greedy, top_k, top_p, repetition_penalty,
                        no_repeat_ngram, seed):
        """`generate`'s inputs -> the loop's state before its first draw (state_* tensors: pass them
        all to `generate_continue`), unknown_words string[batch], prompt_length int32[batch]."""
        settings = dict(num_words=num_words, temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p,
                        repetition_penalty=repetition_penalty, no_repeat_ngram=no_repeat_ngram, seed=seed)
        loop, settings, prompt_outputs = self._start_loop(prompts, settings)
        self._decoder_structure = tf.nest.map_structure(lambda _: 0, loop["decoder"])  # to repack the flat state
        emitted = tf.zeros_like(loop["word_starts"])
        return {**prompt_outputs, **self._state_tensors(loop, settings, emitted)}

    def _generate_continue(self, state: dict, steps):
        """state_* tensors and steps int32 (tokens to draw at most, >= 1) -> the next state_*, and the
        words completed in this call: text string[batch] (space-separated, "" if none), words
        string[batch, n] ("" padded), word_lengths int32[batch, n] (tokens of each word), ids
        int32[batch, m] (their tokens, 0-padded), lengths int32[batch], done bool[batch] (the row
        has all its words), finished bool (no row draws any more: stop calling)."""
        return self.emit(self.advance(state, steps))

    def _advance(self, state: dict, steps) -> dict:
        """state_* tensors -> the state after at most `steps` (>= 1) more tokens: numbers only, so
        XLA can compile it."""
        loop, settings, emitted = self._unpack_state(state)
        return self._state_tensors(self._run(loop, settings, tf.maximum(steps, 1)), settings, emitted)

    def _advance_compilable(self, state: dict, steps) -> dict:
        """`advance` traced so XLA can compile it (`gen --compiled`): the same tokens. A second trace of the loop,
        saved by exports mixed with an n-gram (its lookup in static shapes) and cached transformers (their cache
        written by a scatter): saved_model.pb +17% on the KJV, its load +0.1 s (bench/RESULTS.md, "Compiled
        generation with the n-gram")."""
        with contextlib.ExitStack() as stack:
            if self.mixture is not None:
                stack.enter_context(self.mixture.static_shapes())
            if hasattr(self.decoder, "compilable"):
                stack.enter_context(self.decoder.compilable())
            return self._advance(state, steps)

    def _emit(self, state: dict) -> dict:
        """state_* tensors -> generate_continue's outputs: the words completed since the state's
        `emitted`, done, finished, and the state with `emitted` moved on."""
        loop, settings, emitted = self._unpack_state(state)
        num_words = settings["num_words"]
        finished = tf.logical_not(self._more(loop, num_words))
        complete = self._complete_words(loop, num_words, finished)
        return {
            **self._new_words(loop, emitted, complete),
            "done": complete >= num_words,
            "finished": finished,
            **self._state_tensors(loop, settings, complete),
        }

    # ---- the loop ------------------------------------------------------------------------
    def _max_steps(self, num_words):
        return num_words * MAX_PIECES_PER_WORD + 1 if self.subwords else num_words

    def _words_needed(self, num_words):
        return num_words + 1 if self.subwords else num_words  # pieces: the next word's start ends the last

    def _start_loop(self, prompts, settings: dict) -> tuple[dict, dict, dict]:
        words, ids, unknown_words = self._words_and_ids(prompts)
        window = self._window(ids)
        batch = tf.shape(window)[0]
        settings = {**settings, "num_words": tf.maximum(settings["num_words"], 0)}
        history = tf.concat([window, tf.zeros([batch, self._max_steps(settings["num_words"])], tf.int32)], axis=1)
        seen = self._mark_seen(tf.zeros([batch, self.vocab_size], tf.bool), window)
        logits, state = self.decoder.start(window)
        # pieces_in_word starts at the cap: the first piece must start a word
        loop = dict(step=tf.constant(0), logits=logits, decoder=state, history=history, seen=seen,
                    word_starts=tf.zeros([batch], tf.int32), pieces_in_word=tf.fill([batch], MAX_PIECES_PER_WORD))
        prompt_outputs = {"unknown_words": unknown_words, "prompt_length": tf.cast(words.row_lengths(), tf.int32)}
        return loop, settings, prompt_outputs

    def _more(self, loop: dict, num_words):
        return tf.logical_and(loop["step"] < self._max_steps(num_words),
                              tf.reduce_any(loop["word_starts"] < self._words_needed(num_words)))

    def _run(self, loop: dict, settings: dict, max_iterations) -> dict:
        writable = getattr(self.decoder, "writable", None)  # a decoder whose steps write their state in place
        if writable is not None:
            loop = {**loop, "decoder": writable(loop["decoder"])}
        return tf.while_loop(lambda loop: self._more(loop, settings["num_words"]),
                             lambda loop: (self._draw(loop, settings),), (loop,), maximum_iterations=max_iterations)[0]

    def _draw(self, loop: dict, settings: dict) -> dict:
        """One token for every row (rows already complete draw too: the batch moves in step)."""
        step, history, pieces_in_word = loop["step"], loop["history"], loop["pieces_in_word"]
        length = self.context_length + step
        banned = sampling.banned_by_ngrams(history, length, settings["no_repeat_ngram"], self.vocab_size)
        own = None  # the window's last `step` ids are samples; only a context cache tells them apart (no ops otherwise)
        if self.mixture is not None and self.mixture.cache:
            own = tf.range(self.mixture_width) >= self.mixture_width - step
        # tf.slice: a static width, which XLA needs (a strided slice's run-time bounds compile to another window)
        mixture_ids = tf.slice(history, tf.stack([0, length - self.mixture_width]), [-1, self.mixture_width])
        scores = self._scores(loop["logits"], mixture_ids, own)
        next_ids = sampling.choose_next_ids(
            self._must_start_word(scores, pieces_in_word >= MAX_PIECES_PER_WORD), loop["seen"], banned,
            greedy=settings["greedy"], temperature=settings["temperature"], top_k=settings["top_k"],
            top_p=settings["top_p"], repetition_penalty=settings["repetition_penalty"], seed=settings["seed"], step=step,
        )
        starts = tf.logical_not(tf.gather(self.text_to_ids.continues_word, next_ids))
        columns = tf.range(tf.shape(history)[1])
        history = tf.where(tf.equal(columns, length)[tf.newaxis, :], next_ids[:, tf.newaxis], history)
        logits, state = self.decoder.advance(loop["decoder"], next_ids, history, length)
        return dict(step=step + 1, logits=logits, decoder=state, history=history,
                    seen=self._mark_seen(loop["seen"], next_ids[:, tf.newaxis]),
                    word_starts=loop["word_starts"] + tf.cast(starts, tf.int32),
                    pieces_in_word=tf.where(starts, 1, pieces_in_word + 1))

    # ---- the carried state -----------------------------------------------------------------
    def _state_tensors(self, loop: dict, settings: dict, emitted) -> dict:
        """The flat state_* dict a signature returns: loop tensors, the decoder's state flattened,
        the settings, and emitted int32[batch]: words each row has returned so far."""
        flat = {f"{STATE_PREFIX}{name}": loop[name] for name in LOOP_TENSORS}
        flat.update({f"{STATE_PREFIX}decoder_{index}": tensor for index, tensor in enumerate(tf.nest.flatten(loop["decoder"]))})
        flat.update({f"{STATE_PREFIX}{name}": settings[name] for name in SETTINGS})
        flat[f"{STATE_PREFIX}emitted"] = emitted
        return flat

    def _unpack_state(self, state: dict) -> tuple[dict, dict, tf.Tensor]:
        loop = {name: state[f"{STATE_PREFIX}{name}"] for name in LOOP_TENSORS}
        count = len(tf.nest.flatten(self._decoder_structure))
        loop["decoder"] = tf.nest.pack_sequence_as(
            self._decoder_structure, [state[f"{STATE_PREFIX}decoder_{index}"] for index in range(count)])
        settings = {name: state[f"{STATE_PREFIX}{name}"] for name in SETTINGS}
        return loop, settings, state[f"{STATE_PREFIX}emitted"]

    # ---- words out -----------------------------------------------------------------------
    def _complete_words(self, loop: dict, num_words, finished):
        """int32[batch]: each row's whole words so far (at most num_words)."""
        word_starts = loop["word_starts"]
        if not self.subwords:
            return tf.minimum(word_starts, num_words)
        # a word of pieces is whole once the next word's first piece is drawn, or when the loop ended
        return tf.where(finished, tf.minimum(word_starts, num_words), tf.clip_by_value(word_starts - 1, 0, num_words))

    def _new_words(self, loop: dict, emitted, complete) -> dict:
        """The tokens of each row's words emitted + 1 .. complete, as text, words and ids."""
        context = self.context_length
        generated = loop["history"][:, context : context + loop["step"]]
        starts = tf.logical_not(tf.gather(self.text_to_ids.continues_word, generated))
        word_index = tf.cumsum(tf.cast(starts, tf.int32), axis=1)  # 1 = the first generated word
        take = tf.logical_and(word_index > emitted[:, tf.newaxis], word_index <= complete[:, tf.newaxis])
        tokens = tf.ragged.boolean_mask(generated, take)  # [batch, (tokens)]
        token_starts = tf.cast(tf.ragged.boolean_mask(starts, take), tf.int64)
        words_per_row = tf.reduce_sum(token_starts, axis=1)
        # each row's kept tokens begin at a word start, so the running count of starts numbers the words
        word_of_token = tf.cumsum(token_starts.flat_values) - 1
        pieces = tf.RaggedTensor.from_value_rowids(tokens.flat_values, word_of_token, nrows=tf.reduce_sum(words_per_row))
        by_word = tf.RaggedTensor.from_row_lengths(pieces, words_per_row)  # [batch, (words), (tokens)]
        if self.subwords:
            words = self.text_to_ids.wordpiece.detokenize(by_word)
        else:
            words = tf.strings.reduce_join(tf.gather(self.vocabulary, by_word), axis=-1)
        return {
            "text": self.text_to_ids.detokenize(tokens),
            "words": words.to_tensor(default_value=""),
            "word_lengths": tf.cast(by_word.row_lengths(axis=2).to_tensor(), tf.int32),
            "ids": tokens.to_tensor(default_value=PAD_ID),
            "lengths": tf.cast(tokens.row_lengths(), tf.int32),
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
