"""Build the Keras 3 network from a ModelConfig.

Layer names are a contract with `model.export_graph`, which runs these layers one word at a
time: "embedding"; recurrent models "rnn_0".."rnn_{layers-1}" (LSTM/GRU, or Bidirectional
wrappers) and "dropout_i"; transformers "block_0".."block_{layers-1}" (model.transformer's
DecoderBlock) and "final_norm"; then "logits" (the Dense holding the vocabulary projection)
and "logits_float32" (weightless: casts the logits to float32, the model's output).

GPU: every recurrent layer stays cuDNN-eligible (default activations, recurrent_dropout=0,
unroll=False, and no mask: padding ids are plain inputs whose targets carry weight 0,
because a pre-padded mask would force the slow kernel).
"""

from __future__ import annotations

import keras

from nextword.model.config import ModelConfig
from nextword.model.dropout import Dropout
from nextword.model.transformer import DecoderBlock, LastPosition, TokenAndPositionEmbedding

LOGITS_FLOAT32 = "logits_float32"  # the weightless cast after "logits" (the model's output)


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
    features = transformer_features if config.arch == "transformer" else recurrent_features
    hidden, token_embedding = features(config, context)
    # The vocabulary projection (hidden x vocab, the largest matmul) runs in the global policy's
    # compute dtype (float16 under mixed_float16); a weightless float32 layer then casts the
    # logits up, because softmax, loss and sampling need float32's range and precision.
    if config.tie_embeddings:
        logits = TiedProjection(token_embedding, name="logits")(hidden)
    else:
        logits = keras.layers.Dense(config.vocab_size, name="logits")(hidden)
    logits = keras.layers.Activation("linear", dtype="float32", name=LOGITS_FLOAT32)(logits)
    return keras.Model(context, logits, name=f"nextword_{config.arch}")


def recurrent_features(config: ModelConfig, context):
    """-> (features, the keras.layers.Embedding of the tokens)."""
    embedding = keras.layers.Embedding(config.vocab_size, config.embedding_dim, name="embedding")
    hidden = embedding(context)
    for index in range(config.layers):
        is_last = index == config.layers - 1
        hidden = recurrent_layer(config, index, return_sequences=config.objective == "all" or not is_last)(hidden)
        if config.dropout > 0:
            hidden = Dropout(config.dropout, name=f"dropout_{index}")(hidden)
    return hidden, embedding


def transformer_features(config: ModelConfig, context):
    """-> (features, the keras.layers.Embedding of the tokens)."""
    embed = TokenAndPositionEmbedding(config.vocab_size, config.context_length, config.units,
                                      ignore_padding=config.ignore_padding,
                                      learned_positions=config.positions == "learned", name="embedding")
    hidden = Dropout(config.dropout, name="dropout_embedding")(embed(context))
    for index in range(config.layers):
        block = DecoderBlock(config.units, config.heads, config.feed_forward_dim, config.dropout,
                             alibi=config.positions == "alibi", name=f"block_{index}")
        hidden = block(hidden, context) if config.ignore_padding else block(hidden)
    if config.objective == "last":
        hidden = LastPosition(name="last_position")(hidden)
    return keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(hidden), embed.tokens


@keras.saving.register_keras_serializable(package="nextword")
class TiedProjection(keras.layers.Layer):
    """float[..., width] -> logits float[..., vocab] through the token embedding matrix (transposed)
    plus a bias of its own; a Dense down to the embedding width first when the widths differ
    (a 256-unit LSTM over 128-wide embeddings).

    The matrix stays the embedding layer's variable (one copy, two gradients). It is reached
    through a function, not an attribute, so Keras does not track the embedding layer a second
    time: the model's weights list each variable once, in build order.
    """

    def __init__(self, token_embedding: keras.layers.Embedding, **kwargs):
        super().__init__(**kwargs)
        self._matrix = lambda: token_embedding.embeddings  # float32[vocab, embedding width]
        self.vocab_size, self.embedding_width = token_embedding.input_dim, token_embedding.output_dim
        self.down = None

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_width:
            self.down = keras.layers.Dense(self.embedding_width, name="tie_projection")
            self.down.build(input_shape)
        self.bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros", name="bias")
        self.built = True

    def call(self, hidden):
        if self.down is not None:
            hidden = self.down(hidden)
        matrix = keras.ops.cast(self._matrix(), self.compute_dtype)
        return keras.ops.matmul(hidden, keras.ops.transpose(matrix)) + keras.ops.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.vocab_size)


def final_word_logits_fn(model: keras.Model):
    """context int32[batch, C] -> float32[batch, vocab]: logits of the word after the window only.

    Validation and eval need no other position: for objective "all" the vocabulary projection
    runs on the last position's features alone, not on all C (at vocabulary 20,000 and batch
    1,024 that is 80 MB of logits instead of 3.6 GB).
    """
    projection = model.get_layer("logits")
    features = keras.Model(model.inputs, projection.input, name=f"{model.name}_features")

    def final_logits(context):
        hidden = features(context, training=False)
        if len(hidden.shape) == 3:
            hidden = hidden[:, -1, :]
        return keras.ops.cast(projection(hidden), "float32")

    return final_logits


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
