"""Generation with its sampling loop compiled by XLA (`Generator.load(compiled=True)`, `gen --compiled`,
issue 23 item 2): the export's `advance` compiles, and draws the tokens the saved graph draws."""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf

from nextword.errors import SettingsError
from nextword.generate.generator import GenerateSettings, Generator
from nextword.model import sampling
from nextword.model.export import export_model
from test_export import make_export
from test_export_fixtures import model_config_for, random_model
from test_gen_cli import export_dir, run_dir, run_gen, tiny_data_dir  # noqa: F401
from test_stream_export import DECODERS, PROMPTS
from test_wordpiece_export import export_dirs, wordpiece_dir  # noqa: F401

SETTINGS = [
    GenerateSettings(words=13, seed=5),
    GenerateSettings(words=9, seed=11, temperature=0.7, top_k=4, top_p=0.9, repetition_penalty=1.3, no_repeat_ngram=2),
    GenerateSettings(words=7, greedy=True),
]


def test_the_noise_is_philox_s_uniform_floats_compiled_or_not():
    shape = tf.constant([6, 508])
    for seed, step in ((0, 0), (7, 3), (-1, 199), (2**62 + 5, 2**31 - 1)):
        seed, step = tf.constant(seed, tf.int64), tf.constant(step)
        plain = tf.function(sampling.uniform_noise)(shape, seed, step).numpy()
        compiled = tf.function(sampling.uniform_noise, jit_compile=True)(shape, seed, step).numpy()
        np.testing.assert_array_equal(plain, compiled)
        # what earlier exports drew from, bit for bit (the same words for a seed)
        kernel = tf.random.stateless_uniform(shape, tf.stack([seed, tf.cast(step, tf.int64)]), minval=1e-20, maxval=1.0)
        np.testing.assert_array_equal(plain, kernel.numpy())
        # and not what XLA makes of the same op: the reason uniform_noise exists
        xla_kernel = tf.function(lambda: tf.random.stateless_uniform(
            shape, tf.stack([seed, tf.cast(step, tf.int64)]), minval=1e-20, maxval=1.0, alg="philox"), jit_compile=True)()
        assert not np.array_equal(xla_kernel.numpy(), plain)
    draws = np.stack([sampling.uniform_noise(tf.constant([4, 500]), tf.constant(seed, tf.int64), tf.constant(step)).numpy()
                      for seed in range(5) for step in range(20)])  # 200,000 draws
    assert 0 < draws.min() and draws.max() < 1
    counts = np.histogram(draws, bins=20, range=(0, 1))[0]
    assert np.abs(counts - draws.size / 20).max() < 5 * np.sqrt(draws.size / 20)  # each bin within 5 sigma


def assert_compiled_draws_what_the_export_draws(export_dir: str, settings_list=SETTINGS, prompts=PROMPTS):
    plain, compiled = Generator.load(export_dir), Generator.load(export_dir, compiled=True)
    for settings in settings_list:
        # The same random floats (above) and logits within rounding: only a near tie (~1e-6) could flip a token.
        expected, seed = plain.generate(prompts, settings)
        got, got_seed = compiled.generate(prompts, settings)
        assert got_seed == seed
        assert [sample.ids for sample in got] == [sample.ids for sample in expected], settings
        assert [sample.text for sample in got] == [sample.text for sample in expected]
        streamed = compiled.stream(prompts, settings)
        for _ in streamed:
            pass
        assert [sample.ids for sample in streamed.samples] == [sample.ids for sample in expected]
    # really compiled: XLA lowers the whole loop (a while op in its HLO), not TensorFlow op by op
    assert compiled._compiled_advance.experimental_get_tracing_count() >= 1
    started = compiled._start(**compiled._prepare(prompts, settings_list[0])[2])
    state = {key: value for key, value in started.items() if key.startswith("state_")}
    hlo = compiled._compiled_advance.experimental_get_compiler_ir(state, tf.constant(4))(stage="hlo")
    assert "while" in hlo


@pytest.fixture(scope="module", params=sorted(DECODERS))
def network_alone(request, tiny_dataset, tmp_path_factory):
    """An export of each decoder without an n-gram (the one kind of export that compiles)."""
    config = model_config_for(tiny_dataset, **DECODERS[request.param])
    directory = str(tmp_path_factory.mktemp(request.param) / "export")
    card = export_model(random_model(config, seed=2), config, tiny_dataset, directory, {"steps": 0}, ngram_order=0)
    return types.SimpleNamespace(card=card, directory=directory)


def test_every_decoder_compiles_and_draws_the_same_words(network_alone):
    assert network_alone.card["ngram"] is None or "network_weight" not in network_alone.card["ngram"]
    assert_compiled_draws_what_the_export_draws(network_alone.directory)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_a_wordpiece_export_compiles_and_draws_the_same_pieces(export_dirs, arch):  # noqa: F811
    assert_compiled_draws_what_the_export_draws(export_dirs[arch][1], SETTINGS[:2])


@pytest.fixture(scope="module", params=["lstm", "transformer_alibi"])
def mixed(request, tiny_dataset, tmp_path_factory):
    """An export mixed with its n-gram and context cache (tiny_dataset has val windows to fit the weights): the
    LSTM recipe's decoder, and the transformer recipe's (the ring)."""
    export = make_export(tiny_dataset, tmp_path_factory.mktemp("mixed") / "export", seed=2, **DECODERS[request.param])
    assert "network_weight" in export.card["ngram"] and export.card["ngram"]["context_cache"], export.card["ngram"]
    return export


def test_an_export_with_an_ngram_compiles_and_draws_the_same_words(mixed):
    assert_compiled_draws_what_the_export_draws(mixed.directory)
    # what it compiles is the loop with the static lookup: XLA refuses the uncompiled one (its ragged range)
    loaded = Generator.load(mixed.directory)
    started = loaded._start(**loaded._prepare(PROMPTS, SETTINGS[0])[2])
    state = {key: value for key, value in started.items() if key.startswith("state_")}
    advance = tf.function(lambda state, steps: loaded.loaded.advance(state, steps), jit_compile=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Ragged"):
        advance(state, tf.constant(2))


def test_a_mixed_export_from_before_the_static_lookup_is_refused_with_what_to_do(mixed):
    loaded = tf.saved_model.load(f"{mixed.directory}/saved_model")
    before = types.SimpleNamespace(signatures=loaded.signatures, advance=loaded.advance, emit=loaded.emit)
    with pytest.raises(SettingsError, match="exported before that mixture could be compiled") as raised:
        Generator(mixed.directory, mixed.card, before, compiled=True)
    assert "nextword export RUN_DIR" in raised.value.hint


def test_an_export_without_the_compiled_path_is_refused_with_what_to_do(export_dir):  # noqa: F811
    loaded = tf.saved_model.load(f"{export_dir}/saved_model")
    before = types.SimpleNamespace(signatures=loaded.signatures)  # an export from before `advance`/`emit`
    with pytest.raises(SettingsError, match="no compiled generation path") as raised:
        Generator(export_dir, {}, before, compiled=True)
    assert "nextword export RUN_DIR" in raised.value.hint


def test_gen_compiled_prints_what_gen_prints(export_dir, capsys, monkeypatch):  # noqa: F811
    args = [export_dir, "the cat", "--num-samples", "2", "--words", "6", "--seed", "3", "--no-stream"]
    code, plain, _ = run_gen(args, capsys, monkeypatch)
    code_compiled, compiled, _ = run_gen([*args, "--compiled"], capsys, monkeypatch)
    assert code == code_compiled == 0
    assert compiled == plain and len(plain.splitlines()) == 2
