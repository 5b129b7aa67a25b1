"""The exported graph: a `tf.Module` holding tokenizer, vocabulary and weights.

The Keras model's weights are copied into plain `tf.Variable`s and the LSTM/GRU cell
equations are written in TensorFlow ops, so the SavedModel needs neither Keras nor this
project to run: only TensorFlow and TensorFlow Text (the tokenizer ops).

Generation (`generate` signature):
- the prompt's raw bytes are tokenized by `ingest.text.split_words` + the vocabulary table (the same
  definition ingest used), its last `context_length` ids are kept and pre-padded with 0;
- unidirectional models run that window once from a zero state, exactly as in training,
  then carry every layer's recurrent state from word to word (one cell step per word,
  so the model keeps seeing words that have slid out of the window);
- bidirectional models recompute their whole window for every word (a backward layer
  has no state to carry);
- the next word is chosen by `generate.sampling.choose_next_ids`, <pad>/<unk> masked.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from generate import sampling
from ingest.text import PAD_ID, UNK_ID, split_words, vocabulary_table
from model.config import ModelConfig


def _variable(value, name: str) -> tf.Variable:
    return tf.Variable(value, trainable=False, name=name)


def _cell_weights(layer: keras.layers.Layer, name: str) -> dict[str, tf.Variable]:
    kernel, recurrent_kernel, bias = layer.get_weights()
    return {
        "kernel": _variable(kernel, f"{name}_kernel"),
        "recurrent_kernel": _variable(recurrent_kernel, f"{name}_recurrent_kernel"),
        "bias": _variable(bias, f"{name}_bias"),
    }


class RecurrentStack(tf.Module):
    """The network's forward pass in plain TF ops over copied weights.

    Shapes: ids int32[batch, time]; hidden float32[batch, time, units]; a layer state is
    (h, c) for an LSTM and (h,) for a GRU, each float32[batch, units].
    """

    def __init__(self, model: keras.Model, config: ModelConfig):
        super().__init__(name="recurrent_stack")
        self.config = config
        self.embedding = _variable(model.get_layer("embedding").get_weights()[0], "embedding")
        self.layers: list[dict[str, dict[str, tf.Variable]]] = []
        for index in range(config.layers):
            layer = model.get_layer(f"rnn_{index}")
            if config.bidirectional:
                directions = {
                    "forward": _cell_weights(layer.forward_layer, f"rnn_{index}_forward"),
                    "backward": _cell_weights(layer.backward_layer, f"rnn_{index}_backward"),
                }
            else:
                directions = {"forward": _cell_weights(layer, f"rnn_{index}")}
            self.layers.append(directions)
        logits_kernel, logits_bias = model.get_layer("logits").get_weights()
        self.logits_kernel = _variable(logits_kernel, "logits_kernel")
        self.logits_bias = _variable(logits_bias, "logits_bias")

    # ---- one cell ---------------------------------------------------------------------
    def _input_projection(self, weights: dict, inputs: tf.Tensor) -> tf.Tensor:
        """inputs float32[..., features] -> float32[..., gates * units] (input bias added)."""
        bias = weights["bias"] if self.config.arch == "lstm" else weights["bias"][0]
        return tf.tensordot(inputs, weights["kernel"], axes=1) + bias

    def _cell(self, weights: dict, projected: tf.Tensor, state: tuple) -> tuple[tf.Tensor, tuple]:
        """One time step: projected float32[batch, gates*units] -> (h, new state)."""
        if self.config.arch == "lstm":
            h, c = state
            z = projected + tf.matmul(h, weights["recurrent_kernel"])
            i, f, g, o = tf.split(z, 4, axis=-1)  # Keras gate order
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            return h, (h, c)
        (h,) = state
        recurrent = tf.matmul(h, weights["recurrent_kernel"]) + weights["bias"][1]  # reset_after=True
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        r_z, r_r, r_h = tf.split(recurrent, 3, axis=-1)
        z = tf.sigmoid(x_z + r_z)
        r = tf.sigmoid(x_r + r_r)
        candidate = tf.tanh(x_h + r * r_h)
        h = z * h + (1.0 - z) * candidate
        return h, (h,)

    def zero_state(self, batch: tf.Tensor) -> tuple:
        zeros = tf.zeros([batch, self.config.units], tf.float32)
        return (zeros, zeros) if self.config.arch == "lstm" else (zeros,)

    # ---- whole sequences ----------------------------------------------------------------
    def _run_direction(self, weights: dict, inputs: tf.Tensor, reverse: bool) -> tuple[tf.Tensor, tuple]:
        """inputs float32[batch, time, features] -> (outputs [batch, time, units], final state).

        Outputs stay aligned with the inputs' time axis even when reverse=True.
        """
        projected = self._input_projection(weights, inputs)
        time_major = tf.transpose(projected, [1, 0, 2])
        if reverse:
            time_major = tf.reverse(time_major, axis=[0])
        initial = self.zero_state(tf.shape(inputs)[0])

        def step(carry, projected_t):
            _, state = carry
            h, new_state = self._cell(weights, projected_t, state)
            return h, new_state

        outputs, states = tf.scan(step, time_major, initializer=(initial[0], initial))
        final_state = tuple(s[-1] for s in states)
        if reverse:
            outputs = tf.reverse(outputs, axis=[0])
        return tf.transpose(outputs, [1, 0, 2]), final_state

    def window_logits_and_states(self, ids: tf.Tensor) -> tuple[tf.Tensor, list[tuple]]:
        """ids int32[batch, time] from a zero state -> (logits float32[batch, vocab] for the
        word after the window, the final state of every unidirectional layer)."""
        hidden = tf.gather(self.embedding, ids)
        states: list[tuple] = []
        features = None
        for index, directions in enumerate(self.layers):
            forward, forward_state = self._run_direction(directions["forward"], hidden, reverse=False)
            states.append(forward_state)
            if self.config.bidirectional:
                backward, _ = self._run_direction(directions["backward"], hidden, reverse=True)
                hidden = tf.concat([forward, backward], axis=-1)
                # Keras Bidirectional(return_sequences=False): forward's last output,
                # backward's last output (which sits at position 0 once re-aligned)
                features = tf.concat([forward[:, -1], backward[:, 0]], axis=-1)
            else:
                hidden = forward
                features = forward[:, -1]
        return self._logits(features), states

    def step(self, ids: tf.Tensor, states: list[tuple]) -> tuple[tf.Tensor, list[tuple]]:
        """One new word per row: ids int32[batch] -> (logits [batch, vocab], new states)."""
        hidden = tf.gather(self.embedding, ids)
        new_states = []
        for directions, state in zip(self.layers, states):
            weights = directions["forward"]
            hidden, new_state = self._cell(weights, self._input_projection(weights, hidden), state)
            new_states.append(new_state)
        return self._logits(hidden), new_states

    def _logits(self, features: tf.Tensor) -> tf.Tensor:
        return tf.matmul(features, self.logits_kernel) + self.logits_bias


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


class ExportModule(tf.Module):
    """What `tf.saved_model.save` writes: tokenizer + vocabulary + weights + signatures."""

    def __init__(self, model: keras.Model, config: ModelConfig, vocabulary: list[str]):
        super().__init__(name="nextword_export")
        self.config = config
        self.context_length = config.context_length
        self.vocab_size = config.vocab_size
        self.vocabulary = tf.Variable(vocabulary, trainable=False, dtype=tf.string, name="vocabulary")
        self.table = vocabulary_table(vocabulary)
        self.stack = RecurrentStack(model, config)
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
    def _words_and_ids(self, prompts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        words = split_words(prompts)
        ids = tf.ragged.map_flat_values(self.table.lookup, words)
        return words, tf.cast(ids, tf.int32)

    def _window(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """ragged int32[batch, (words)] -> int32[batch, context]: the last words, pre-padded."""
        context = self.context_length
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        rows = tf.cast(ids.value_rowids(), tf.int32)
        position = tf.range(tf.size(ids.flat_values)) - tf.gather(tf.cast(ids.row_starts(), tf.int32), rows)
        row_length = tf.gather(lengths, rows)
        keep = position >= row_length - context  # prompts longer than the context keep their last words
        column = context - tf.minimum(row_length, context) + position - tf.maximum(row_length - context, 0)
        indices = tf.stack([tf.boolean_mask(rows, keep), tf.boolean_mask(column, keep)], axis=1)
        batch = tf.shape(lengths)[0]
        return tf.scatter_nd(indices, tf.boolean_mask(ids.flat_values, keep), [batch, context])  # zeros = <pad>

    def _unknown_words(self, words: tf.RaggedTensor, ids: tf.RaggedTensor) -> tf.Tensor:
        unknown = tf.ragged.boolean_mask(words, tf.equal(ids, UNK_ID))
        return tf.strings.reduce_join(unknown, axis=1, separator=" ")

    def _tokenize(self, prompts: tf.Tensor) -> dict:
        """string[batch] -> words string[batch, max_words] ("" padded), ids int32[batch,
        max_words] (0 padded, post), lengths int32[batch], window int32[batch, context]."""
        words, ids = self._words_and_ids(prompts)
        return {
            "words": words.to_tensor(default_value=""),
            "ids": ids.to_tensor(default_value=PAD_ID),
            "lengths": tf.cast(ids.row_lengths(), tf.int32),
            "window": self._window(ids),
            "unknown_words": self._unknown_words(words, ids),
        }

    # ---- scoring ------------------------------------------------------------------------
    def _score_ids(self, context: tf.Tensor) -> dict:
        """int32[batch, context] -> logits float32[batch, vocab] of the word after the window."""
        logits, _ = self.stack.window_logits_and_states(context)
        return {"logits": logits}

    def _next_word_probabilities(self, prompts: tf.Tensor) -> dict:
        """string[batch] -> float32[batch, vocab]: softmax with <pad>/<unk> zeroed out and the
        rest renormalised: the distribution `generate` samples from at temperature 1."""
        _, ids = self._words_and_ids(prompts)
        logits, _ = self.stack.window_logits_and_states(self._window(ids))
        return {"probabilities": tf.nn.softmax(sampling.mask_reserved(logits), axis=-1)}

    # ---- generation ---------------------------------------------------------------------
    def _generate(self, prompts, num_words, temperature, greedy, top_k, top_p, repetition_penalty, no_repeat_ngram, seed):
        words, ids = self._words_and_ids(prompts)
        window = self._window(ids)
        batch = tf.shape(window)[0]
        context = self.context_length
        num_words = tf.maximum(num_words, 0)
        history = tf.concat([window, tf.zeros([batch, num_words], tf.int32)], axis=1)
        seen = self._mark_seen(tf.zeros([batch, self.vocab_size], tf.bool), window)
        logits, states = self.stack.window_logits_and_states(window)
        if self.config.bidirectional:
            states = []  # recomputed from the window each word
        columns = tf.range(tf.shape(history)[1])

        def body(step, logits, states, history, seen):
            length = context + step
            banned = sampling.banned_by_ngrams(history, length, no_repeat_ngram, self.vocab_size)
            next_ids = sampling.choose_next_ids(
                logits, seen, banned, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, seed=seed, step=step,
            )
            history = tf.where(tf.equal(columns, length)[tf.newaxis, :], next_ids[:, tf.newaxis], history)
            seen = self._mark_seen(seen, next_ids[:, tf.newaxis])
            if self.config.bidirectional:
                logits, _ = self.stack.window_logits_and_states(history[:, step + 1 : step + 1 + context])
            else:
                logits, states = self.stack.step(next_ids, states)
            return step + 1, logits, states, history, seen

        _, _, _, history, _ = tf.while_loop(
            lambda step, *_: step < num_words,
            body,
            (tf.constant(0), logits, states, history, seen),
            maximum_iterations=num_words,
        )
        generated = history[:, context:]
        return {
            "text": tf.strings.reduce_join(tf.gather(self.vocabulary, generated), axis=1, separator=" "),
            "ids": generated,
            "unknown_words": self._unknown_words(words, ids),
            "prompt_length": tf.cast(ids.row_lengths(), tf.int32),
        }

    def _mark_seen(self, seen: tf.Tensor, new_ids: tf.Tensor) -> tf.Tensor:
        """seen bool[batch, vocab] |= one-hot of new_ids int32[batch, n]."""
        batch, count = tf.shape(new_ids)[0], tf.shape(new_ids)[1]
        rows = tf.repeat(tf.range(batch), count)
        indices = tf.stack([rows, tf.reshape(new_ids, [-1])], axis=1)
        return tf.tensor_scatter_nd_update(seen, indices, tf.ones([batch * count], tf.bool))
