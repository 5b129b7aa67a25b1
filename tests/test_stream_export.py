"""The export's chunked generation (`generate_start` + `generate_continue`, issue 24 item 1) and its
`serving_default` (item 5): both must give exactly what `generate` gives for the same settings,
for every decoder, with and without the n-gram mixture, for words and for pieces."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nextword.model.export_generation import SERVING_DEFAULTS
from test_export import call_generate, make_export, tiny_data_dir  # noqa: F401
from test_wordpiece_export import export_dirs, wordpiece_dir  # noqa: F401

TYPES = dict(num_words=tf.int32, temperature=tf.float32, greedy=tf.bool, top_k=tf.int32, top_p=tf.float32,
             repetition_penalty=tf.float32, no_repeat_ngram=tf.int32, seed=tf.int64)
PROMPTS = ["the cat sat", "", "zzz qqq", "a " * 20 + "dog"]
SETTINGS = [
    dict(num_words=13, seed=5),
    dict(num_words=9, seed=11, temperature=0.7, top_k=4, top_p=0.9, repetition_penalty=1.3, no_repeat_ngram=2),
    dict(num_words=7, greedy=True),
]


def settings_tensors(**overrides) -> dict:
    settings = dict(num_words=8, temperature=1.0, greedy=False, top_k=0, top_p=1.0, repetition_penalty=1.0,
                    no_repeat_ngram=0, seed=0)
    settings.update(overrides)
    return {key: tf.constant(value, TYPES[key]) for key, value in settings.items()}


def chunked(loaded, prompts, steps: int, **settings) -> dict:
    """Run generate_start, then generate_continue `steps` tokens a call until finished: each row's
    ids, text and words joined over the calls, and the number of calls."""
    started = loaded.signatures["generate_start"](prompts=tf.constant(prompts), **settings_tensors(**settings))
    state = {key: value for key, value in started.items() if key.startswith("state_")}
    rows = [dict(ids=[], texts=[], words=[], word_lengths=[]) for _ in prompts]
    calls = 0
    while True:
        out = loaded.signatures["generate_continue"](**state, steps=tf.constant(steps))
        calls += 1
        state = {key: value for key, value in out.items() if key.startswith("state_")}
        for row, collected in enumerate(rows):
            length = int(out["lengths"][row])
            collected["ids"] += out["ids"][row][:length].numpy().tolist()
            text = out["text"][row].numpy().decode()
            if text:
                collected["texts"].append(text)
            words = [word.decode() for word in out["words"][row].numpy() if word]
            collected["words"] += words
            collected["word_lengths"] += out["word_lengths"][row][: len(words)].numpy().tolist()
            assert sum(out["word_lengths"][row][: len(words)].numpy()) == length  # the words are the tokens
        if bool(out["finished"]):
            assert out["done"].numpy().all()
            break
        assert calls < 1000
    return dict(rows=rows, calls=calls, unknown=started["unknown_words"].numpy(), prompt_length=started["prompt_length"].numpy())


def assert_chunks_equal_one_call(loaded, settings: dict, steps_list=(1, 3, 7, 100)):
    whole = call_generate(loaded, PROMPTS, **settings)
    for steps in steps_list:
        got = chunked(loaded, PROMPTS, steps, **settings)
        for row, collected in enumerate(got["rows"]):
            expected_ids = whole["ids"][row][: whole["lengths"][row]].tolist()
            assert collected["ids"] == expected_ids, (steps, row)
            assert " ".join(collected["texts"]) == whole["text"][row].decode(), (steps, row)
            assert " ".join(collected["words"]) == whole["text"][row].decode(), (steps, row)
        np.testing.assert_array_equal(got["unknown"], whole["unknown_words"])
        np.testing.assert_array_equal(got["prompt_length"], whole["prompt_length"])


DECODERS = {
    "lstm": dict(arch="lstm", objective="all"),
    "gru": dict(arch="gru", objective="last"),
    "bidirectional": dict(layers=2, bidirectional=True, objective="last"),  # the window decoder
    "transformer": dict(arch="transformer", units=16, heads=2, ff_dim=24, objective="all"),  # the cache
    "transformer_last": dict(arch="transformer", units=16, heads=2, ff_dim=24, objective="last"),  # the window
    "transformer_alibi": dict(arch="transformer", units=16, heads=2, ff_dim=24, objective="all", positions="alibi"),  # the ring
}


@pytest.fixture(scope="module", params=sorted(DECODERS))
def mixed(request, tiny_dataset, tmp_path_factory):
    """An export of each decoder mixed with its n-gram (tiny_dataset has val windows to fit the weight)."""
    export = make_export(tiny_dataset, tmp_path_factory.mktemp(request.param) / "export", seed=2,
                         **DECODERS[request.param])
    assert export.card["ngram"] and "network_weight" in export.card["ngram"], export.card["ngram"]
    return export


@pytest.mark.parametrize("settings", SETTINGS, ids=["sampled", "filtered", "greedy"])
def test_chunks_draw_what_one_call_draws_for_every_decoder_with_the_ngram(mixed, settings):
    assert_chunks_equal_one_call(mixed.loaded, settings)


def test_chunks_equal_one_call_for_the_network_alone(tiny_data_dir, tmp_path):  # noqa: F811
    export = make_export(tiny_data_dir, tmp_path / "export", arch="lstm")  # no val windows: no n-gram
    assert export.card["ngram"] is None or "skipped" in export.card["ngram"]
    assert_chunks_equal_one_call(export.loaded, SETTINGS[0], steps_list=(1, 4))


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_chunks_equal_one_call_for_a_wordpiece_export(export_dirs, arch):  # noqa: F811
    loaded = export_dirs[arch][0]
    for settings in SETTINGS:
        assert_chunks_equal_one_call(loaded, settings, steps_list=(1, 2, 5))


def test_words_come_out_as_they_are_completed(tiny_dataset, tmp_path):
    export = make_export(tiny_dataset, tmp_path / "export", arch="lstm")
    got = chunked(export.loaded, ["the"], 4, num_words=10, seed=1)
    assert got["calls"] == 3  # 4 + 4 + 2 words: the loop stops at num_words, not at a multiple of steps
    started = export.loaded.signatures["generate_start"](prompts=tf.constant(["the"]), **settings_tensors(num_words=10, seed=1))
    state = {key: value for key, value in started.items() if key.startswith("state_")}
    first = export.loaded.signatures["generate_continue"](**state, steps=tf.constant(4))
    assert int(first["state_step"]) == 4 and len(first["text"][0].numpy().split()) == 4
    assert not bool(first["finished"]) and not first["done"].numpy().any()


def test_serving_default_is_generate_with_defaults(mixed):
    serve = mixed.loaded.signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"prompts", "num_words", "temperature", "top_k", "top_p", "seed"}
    for settings in (dict(num_words=11, seed=4), dict(num_words=6, seed=9, temperature=0.6, top_k=3, top_p=0.8)):
        arguments = {**SERVING_DEFAULTS, **settings}  # a Python call must pass every input (TF Serving fills defaults)
        served = serve(prompts=tf.constant(PROMPTS), **{key: tf.constant(value, TYPES[key]) for key, value in arguments.items()})
        whole = call_generate(mixed.loaded, PROMPTS, **settings)
        assert set(served) == set(whole)
        for key in whole:
            np.testing.assert_array_equal(served[key].numpy(), whole[key])


def test_serving_default_records_its_defaults_for_tf_serving(mixed):
    from tensorflow.core.protobuf import saved_model_pb2

    with open(f"{mixed.directory}/saved_model/saved_model.pb", "rb") as handle:
        saved = saved_model_pb2.SavedModel.FromString(handle.read())
    signature = saved.meta_graphs[0].signature_def["serving_default"]
    defaults = {name: tf.make_ndarray(value).item() for name, value in signature.defaults.items()}
    assert defaults == {"num_words": 30, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}
    assert signature.method_name == "tensorflow/serving/predict"


def graph_ops(function) -> set[str]:
    """Every op type in a loaded tf.function's graph, its nested functions (the loop's body, its branches) included."""
    graph_def = function.concrete_functions[0].graph.as_graph_def()
    return {node.op for node in graph_def.node} | {
        node.op for library_function in graph_def.library.function for node in library_function.node_def}


def test_a_continued_call_leaves_the_state_it_was_given_as_it_was(mixed):
    """A cached transformer writes its cache in place inside the loop (transformer.write_rows): the state a caller
    passes in must come back untouched, and continuing twice from it must draw the same tokens."""
    started = mixed.loaded.signatures["generate_start"](prompts=tf.constant(PROMPTS), **settings_tensors(num_words=9, seed=3))
    state = {key: value for key, value in started.items() if key.startswith("state_")}
    before = {key: value.numpy().copy() for key, value in state.items()}
    first = mixed.loaded.signatures["generate_continue"](**state, steps=tf.constant(5))
    again = mixed.loaded.signatures["generate_continue"](**state, steps=tf.constant(5))
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)
    for key in first:
        np.testing.assert_array_equal(first[key].numpy(), again[key].numpy(), err_msg=key)
    cached = mixed.config.arch == "transformer" and mixed.config.objective == "all"
    assert ("InplaceUpdate" in graph_ops(mixed.loaded.advance)) == cached
    assert "InplaceUpdate" not in graph_ops(mixed.loaded.advance_compilable)  # XLA has no kernel for it
