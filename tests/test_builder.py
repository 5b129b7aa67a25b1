"""The builder's layer contract, and the cuDNN-eligibility check the GPU path relies on."""

import keras
import numpy as np
import pytest

from nextword.model.builder import build_model, is_cudnn_eligible
from nextword.model.config import NOTEBOOK_PRESET, ModelConfig
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


def _transformer(ignore_padding: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(vocab_size=30, context_length=10, arch="transformer", units=16, heads=2, layers=2,
                                   dropout=0.0, ignore_padding=ignore_padding))


def test_a_transformer_predicts_a_word_alike_in_training_and_in_eval_windows():
    """Objective "all" trains a short document right-aligned in one window (word j predicted at
    position C - n + j); eval and generation predict word j at position C - 1 behind its prefix.
    With pads masked and positions counted from the first word the two are one computation; with
    0.2's window positions they differ (which is what the option fixes)."""
    document = np.random.default_rng(1).integers(2, 30, size=6)
    whole = np.zeros([1, 10], "int32")
    whole[0, -6:] = document
    for ignore_padding in (True, False):
        model = _transformer(ignore_padding)
        training = model(whole, training=False).numpy()[0]
        gaps = []
        for prefix in range(0, 6):  # prefix 0: the all-pad window predicting the document's first word
            window = np.zeros([1, 10], "int32")
            window[0, 10 - prefix:] = document[:prefix]
            scored = model(window, training=False).numpy()[0, -1]
            gaps.append(np.abs(training[10 - 6 + prefix - 1] - scored).max())
        if ignore_padding:
            assert max(gaps) < 1e-5, gaps
        else:
            assert min(gaps) > 1e-3, gaps


def test_configs_written_before_the_option_load_with_window_positions():
    old = ModelConfig(vocab_size=30, context_length=10, arch="transformer").to_dict()
    del old["ignore_padding"]
    assert ModelConfig.from_dict(old).ignore_padding is False
    assert ModelConfig(vocab_size=30, context_length=10).ignore_padding is True
    assert "window positions" in ModelConfig.from_dict(old).describe()
