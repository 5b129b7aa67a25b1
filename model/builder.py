"""Build the Keras 3 network from a ModelConfig.

Layer names are a contract with `model.export`, which steps the recurrent cells one word
at a time: "embedding", "rnn_0".."rnn_{layers-1}" (LSTM/GRU, or Bidirectional wrappers),
"dropout_i", and "logits".

GPU: every recurrent layer stays cuDNN-eligible (default activations, recurrent_dropout=0,
unroll=False, and no mask: padding ids are plain inputs whose targets carry weight 0,
because a pre-padded mask would force the slow kernel).
"""

from __future__ import annotations

import keras

from model.config import ModelConfig


def recurrent_layer(config: ModelConfig, index: int, return_sequences: bool) -> keras.layers.Layer:
    layer_type = keras.layers.LSTM if config.arch == "lstm" else keras.layers.GRU
    name = f"rnn_{index}"
    layer = layer_type(
        config.units,
        return_sequences=return_sequences,
        name=name if not config.bidirectional else f"{name}_cell",
    )
    return keras.layers.Bidirectional(layer, name=name) if config.bidirectional else layer


def build_model(config: ModelConfig) -> keras.Model:
    """int32[batch, context_length] -> float32 logits.

    objective "last": logits[batch, vocab_size] for the word after the window.
    objective "all":  logits[batch, context_length, vocab_size], position t predicts word t+1.
    """
    context = keras.Input(shape=(config.context_length,), dtype="int32", name="context")
    hidden = keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")(context)
    for index in range(config.layers):
        is_last = index == config.layers - 1
        hidden = recurrent_layer(config, index, return_sequences=config.objective == "all" or not is_last)(hidden)
        if config.dropout > 0:
            hidden = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    # float32 logits even under mixed precision: softmax and loss need the range.
    logits = keras.layers.Dense(config.vocab_size, dtype="float32", name="logits")(hidden)
    return keras.Model(context, logits, name=f"nextword_{config.arch}")


def is_cudnn_eligible(layer: keras.layers.Layer) -> bool:
    """True when Keras would pick the cuDNN kernel for this recurrent layer on a GPU."""
    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    if not isinstance(inner, (keras.layers.LSTM, keras.layers.GRU)):
        return False
    cell = inner.cell
    return (
        cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and cell.recurrent_dropout == 0
        and not inner.unroll
        and cell.use_bias
        and (isinstance(inner, keras.layers.LSTM) or cell.reset_after)  # GRU: cuDNN's gate order only
    )
