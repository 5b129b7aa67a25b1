"""The builder's layer contract, and the cuDNN-eligibility check the GPU path relies on."""

import keras
import pytest

from model.builder import build_model, is_cudnn_eligible
from model.config import NOTEBOOK_PRESET, ModelConfig
from nextword.errors import SettingsError


@pytest.mark.parametrize("layer", [
    keras.layers.LSTM(4, recurrent_dropout=0.1),
    keras.layers.LSTM(4, activation="relu"),
    keras.layers.LSTM(4, unroll=True),
    keras.layers.GRU(4, reset_after=False),
    keras.layers.Bidirectional(keras.layers.LSTM(4, recurrent_activation="hard_sigmoid")),
    keras.layers.SimpleRNN(4),
])
def test_ineligible_layers_are_detected(layer):
    assert not is_cudnn_eligible(layer)


def test_output_shapes_and_layer_names():
    last = build_model(ModelConfig(vocab_size=20, context_length=6, **{**NOTEBOOK_PRESET, "units": 8}))
    assert last.output_shape == (None, 20)
    assert [layer.name for layer in last.layers] == ["context", "embedding", "rnn_0", "rnn_1", "rnn_2", "logits", "logits_float32"]
    every = build_model(ModelConfig(vocab_size=20, context_length=6, units=8, embedding_dim=4, layers=2))
    assert every.output_shape == (None, 6, 20)
    assert every.get_layer("logits").dtype_policy.compute_dtype == "float32"


def test_bidirectional_all_is_refused():
    with pytest.raises(SettingsError, match="backward layer"):
        ModelConfig(vocab_size=20, context_length=6, bidirectional=True, objective="all")
