"""The export: files and card, crash safety, tokenizer parity with ingest, the stepped
generator against the Keras model, pad/unk masking, seeds, and loading without nextword."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

from nextword.model import export as export_module
from nextword.model.builder import build_model
from nextword.model.config import ModelConfig
from nextword.model.export import export_model
from nextword.model.export_graph import ExportModule
from nextword import storage
from nextword.errors import ArtifactError
from test_export_fixtures import model_config_for, random_model, read_card, tiny_data_dir  # noqa: F401
from nextword.tfrecords.manifest import load_manifest, load_vocabulary

TRICKY = [
    "Don't STOP",
    "café CAFÉ Café cafe\u0301",
    "the,cat.sat!on(mat)[dog]",
    "  tabs\tand\nnew\r\nlines  ",
    "",
    "...!!!",
    "ｔｈｅ ＣＡＴ",
    "dog—ran ‘quoted’ “double”",
    "😀 the 😀",
    "a " * 300 + "the cat",
]


def call_generate(loaded, prompts, **overrides):
    settings = dict(
        num_words=8, temperature=1.0, greedy=False, top_k=0, top_p=1.0, repetition_penalty=1.0, no_repeat_ngram=0, seed=0
    )
    settings.update(overrides)
    types = dict(num_words=tf.int32, temperature=tf.float32, greedy=tf.bool, top_k=tf.int32, top_p=tf.float32,
                 repetition_penalty=tf.float32, no_repeat_ngram=tf.int32, seed=tf.int64)
    arguments = {key: tf.constant(value, types[key]) for key, value in settings.items()}
    outputs = loaded.signatures["generate"](prompts=tf.constant(prompts, tf.string), **arguments)
    return {key: value.numpy() for key, value in outputs.items()}


def make_export(data_dir, directory, seed=0, bias_reserved=False, **config_overrides):
    config = model_config_for(data_dir, **config_overrides)
    model = random_model(config, seed=seed)
    if bias_reserved:  # make the model love <pad> and <unk>
        kernel, bias = model.get_layer("logits").get_weights()
        bias[:2] = 1e3
        model.get_layer("logits").set_weights([kernel, bias])
    card = export_model(model, config, data_dir, str(directory), {"steps": 0, "note": "random weights"})
    loaded = tf.saved_model.load(os.path.join(str(directory), "saved_model"))
    return Export(model, config, card, loaded, str(directory))


@dataclass
class Export:
    model: object
    config: ModelConfig
    card: dict
    loaded: object
    directory: str


@pytest.fixture(scope="module")
def lstm_export(tiny_data_dir, tmp_path_factory):  # noqa: F811
    return make_export(tiny_data_dir, tmp_path_factory.mktemp("lstm") / "export", arch="lstm", objective="all")


@pytest.fixture(scope="module")
def gru_export(tiny_data_dir, tmp_path_factory):  # noqa: F811
    return make_export(tiny_data_dir, tmp_path_factory.mktemp("gru") / "export", arch="gru", objective="last")


@pytest.fixture(scope="module")
def bidirectional_export(tiny_data_dir, tmp_path_factory):  # noqa: F811
    return make_export(
        tiny_data_dir, tmp_path_factory.mktemp("bi") / "export", layers=2, bidirectional=True, objective="last"
    )


@pytest.fixture(scope="module")
def transformer_export(tiny_data_dir, tmp_path_factory):  # noqa: F811
    return make_export(tiny_data_dir, tmp_path_factory.mktemp("transformer") / "export", arch="transformer", units=16,
                       heads=2, ff_dim=24, objective="all")


def masked_argmax(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits[..., 2:], axis=-1) + 2


# ---- files and card ---------------------------------------------------------------------
def test_card_lists_every_file_with_its_sha256(lstm_export, tiny_data_dir):  # noqa: F811
    config, card, export_dir = lstm_export.config, lstm_export.card, lstm_export.directory
    on_disk = {
        os.path.relpath(os.path.join(root, name), export_dir)
        for root, _, names in os.walk(export_dir)
        for name in names
    } - {"card.json"}
    assert set(card["files"]) == on_disk
    for relative, entry in card["files"].items():
        assert storage.sha256_of(os.path.join(export_dir, relative))[0] == entry["sha256"]
    manifest = load_manifest(tiny_data_dir)
    assert card["vocab_sha256"] == manifest.vocab_sha256
    assert card["dataset_fingerprint"] == manifest.fingerprint
    assert card["model"] == config.to_dict()
    assert card["context_length"] == manifest.context_length
    assert card["tokenizer"] == manifest.tokenizer
    assert card["training"]["note"] == "random weights"
    assert "tensorflow_text" in card["loading"]
    assert read_card(export_dir) == card
    assert set(card["signatures"]) == {"generate", "generate_start", "generate_continue", "serving_default",
                                       "next_word_probabilities", "score_ids", "tokenize"}
    assert set(card["signatures"]) == set(lstm_export.loaded.signatures)


def test_a_crash_leaves_no_directory_that_looks_complete(tiny_data_dir, tmp_path, monkeypatch):  # noqa: F811
    config = model_config_for(tiny_data_dir)
    model = build_model(config)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the card")

    monkeypatch.setattr(export_module, "_card", crash)
    with pytest.raises(RuntimeError):
        export_model(model, config, tiny_data_dir, str(tmp_path / "export"), {})
    assert os.listdir(tmp_path) == []  # neither the export nor its staging sibling


def test_export_replaces_an_old_export(tiny_data_dir, tmp_path):  # noqa: F811
    target = tmp_path / "export"
    first = make_export(tiny_data_dir, target, seed=1, layers=1).card
    second = make_export(tiny_data_dir, target, seed=2, layers=1).card
    assert first["files"] != second["files"]
    assert read_card(str(target)) == second
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_a_model_built_for_another_dataset_is_refused(tiny_data_dir, tmp_path):  # noqa: F811
    manifest = load_manifest(tiny_data_dir)
    config = ModelConfig(vocab_size=manifest.vocab_size + 5, context_length=manifest.context_length, units=4)
    with pytest.raises(ArtifactError, match="not built for this dataset"):
        export_model(build_model(config), config, tiny_data_dir, str(tmp_path / "export"), {})


# ---- tokenizer --------------------------------------------------------------------------
def test_the_export_s_window_is_a_prompt_s_last_ids_pre_padded(lstm_export, tiny_data_dir):  # noqa: F811
    """Tricky prompts (empty, punctuation only, longer than the context): `window` holds the last
    `context` ids of `ids`, pre-padded with 0, and a word outside the vocabulary is <unk> (1), never
    a pad. (That `ids` are the ingest's own ids is test_export_tokenizes_exactly_like_the_real_ingest_wrote,
    against the records a real ingest wrote.)"""
    got = lstm_export.loaded.signatures["tokenize"](prompts=tf.constant(TRICKY))
    lengths, ids, windows = got["lengths"].numpy(), got["ids"].numpy(), got["window"].numpy()
    context = load_manifest(tiny_data_dir).context_length
    vocabulary = load_vocabulary(tiny_data_dir, load_manifest(tiny_data_dir))
    assert lengths.tolist()[4:6] == [0, 0] and lengths[-1] == 302  # "" and "...!!!" hold no word
    for row in range(len(TRICKY)):
        row_ids = ids[row, : lengths[row]].tolist()
        assert 0 not in row_ids and all(0 < token < len(vocabulary) for token in row_ids)
        kept = row_ids[-context:]
        assert windows[row].tolist() == [0] * (context - len(kept)) + kept
    # known words get their vocabulary line, unknown ones <unk>: "Don't STOP" -> don't, <unk>; "😀 the 😀" -> the
    assert ids[0, : lengths[0]].tolist() == [vocabulary.index("don't"), 1]
    assert vocabulary.index("the") in ids[8, : lengths[8]].tolist()


def test_unknown_prompt_words_are_reported(lstm_export):
    outputs = call_generate(lstm_export.loaded, ["the zzz cat qqq", "the cat"])
    assert outputs["unknown_words"].tolist() == [b"zzz qqq", b""]
    assert outputs["prompt_length"].tolist() == [4, 2]


# ---- the model inside the export ----------------------------------------------------------
@pytest.mark.parametrize("which", ["lstm_export", "gru_export", "bidirectional_export", "transformer_export"])
def test_score_ids_equals_the_keras_model(which, request):
    export = request.getfixturevalue(which)
    model, config, loaded = export.model, export.config, export.loaded
    context = np.random.default_rng(1).integers(0, config.vocab_size, size=[5, config.context_length]).astype("int32")
    expected = model(context, training=False).numpy()
    expected = expected[:, -1] if config.objective == "all" else expected
    got = loaded.signatures["score_ids"](context=tf.constant(context))["logits"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("which", ["lstm_export", "gru_export"])
def test_stepped_generator_equals_the_full_recompute_on_the_growing_sequence(which, request):
    """Greedy words from the carried state equal those of the Keras network run from scratch on
    the whole growing sequence (the pre-padded window plus every word so far)."""
    export = request.getfixturevalue(which)
    model, config, loaded = export.model, export.config, export.loaded
    prompts = ["the cat", "", "a b c the cat sat on mat dog ran"]
    num_words = 12
    outputs = call_generate(loaded, prompts, num_words=num_words, greedy=True)
    window = loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
    notebook_first = model(window, training=False).numpy()
    notebook_first = notebook_first[:, -1] if config.objective == "all" else notebook_first
    assert (outputs["ids"][:, 0] == masked_argmax(notebook_first)).all()  # the notebook's first word

    long_config = ModelConfig.from_dict({**config.to_dict(), "context_length": config.context_length + num_words,
                                         "objective": "all"})
    long_model = build_model(long_config)
    long_model.set_weights(model.get_weights())
    sequence = np.concatenate([window, outputs["ids"]], axis=1)
    logits = long_model(sequence, training=False).numpy()
    positions = np.arange(config.context_length - 1, config.context_length - 1 + num_words)
    assert (masked_argmax(logits[:, positions]) == outputs["ids"]).all()


def test_transformer_generation_is_the_model_on_training_shaped_windows(transformer_export):
    """Greedy words from the key/value cache equal the Keras model run on the window the decoder
    holds at each word: the pre-padded prompt window, grown word by word while it fits, and its
    last `keep` words re-read (positions 0..keep-1) whenever it is full. 3 windows' worth of words
    go through several re-reads."""
    model, config, loaded = transformer_export.model, transformer_export.config, transformer_export.loaded
    context, keep = config.context_length, max(1, 3 * config.context_length // 4)
    prompts = ["the cat", "", "a b c the cat sat on mat dog ran"]
    num_words = 3 * context
    outputs = call_generate(loaded, prompts, num_words=num_words, greedy=True)
    history = loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
    window = history.copy()
    for step in range(num_words):
        padded = np.zeros([len(prompts), context], "int32")
        padded[:, : window.shape[1]] = window  # positions after the window cannot change it (causal)
        expected = masked_argmax(model(padded, training=False).numpy()[:, window.shape[1] - 1])
        assert (outputs["ids"][:, step] == expected).all(), step
        history = np.concatenate([history, outputs["ids"][:, step : step + 1]], axis=1)
        window = history[:, -keep:] if window.shape[1] == context else history[:, -(window.shape[1] + 1):]


def test_a_transformer_trained_on_the_last_word_generates_from_whole_windows(tiny_data_dir, tmp_path):  # noqa: F811
    """Objective "last" supervises only the window's final position: generation re-reads the
    whole (sliding, pre-padded) window for every word, so each greedy word is the model's
    prediction at that position, never at one it was not trained on (a cache would use them)."""
    export = make_export(tiny_data_dir, tmp_path / "export", arch="transformer", units=16, heads=2, ff_dim=24,
                         objective="last")
    assert "window recomputed" in export.card["generation"]
    context, prompts, num_words = export.config.context_length, ["the cat", "a b c the cat sat on mat dog ran"], 9
    outputs = call_generate(export.loaded, prompts, num_words=num_words, greedy=True)
    history = export.loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
    for step in range(num_words):
        expected = masked_argmax(export.model(history[:, -context:], training=False).numpy())
        assert (outputs["ids"][:, step] == expected).all(), step
        history = np.concatenate([history, outputs["ids"][:, step: step + 1]], axis=1)


def test_transformer_cache_steps_equal_the_whole_window(transformer_export):
    assert_cache_steps_equal_the_whole_window(transformer_export.model, transformer_export.config)


def test_cache_steps_of_many_rows_equal_the_whole_window(transformer_export, monkeypatch):
    """From MATMUL_ROWS rows the one-word attention runs as BatchMatMul instead of products and sums:
    the same logits (here from 1 row, so the test's 4 rows take that path)."""
    from nextword.model import export_graph

    monkeypatch.setattr(export_graph, "MATMUL_ROWS", 1)
    assert_cache_steps_equal_the_whole_window(transformer_export.model, transformer_export.config)


def test_a_window_positions_transformer_s_cache_steps_equal_the_whole_window(transformer_export):
    """A 0.2 model (ignore_padding False: window positions, pads seen as words) takes the same
    one-word step, its attention limited to the slots before its own instead of to the words."""
    config = ModelConfig.from_dict({**transformer_export.config.to_dict(), "ignore_padding": False})
    model = build_model(config)
    model.set_weights(transformer_export.model.get_weights())
    assert_cache_steps_equal_the_whole_window(model, config)


def assert_cache_steps_equal_the_whole_window(model, config):
    """The decoder's logits after the first 2 ids, then after each id stepped in one at a time, equal
    the Keras model's on the whole window (random ids: pads among them)."""
    vocabulary = ["<pad>", "<unk>"] + [f"w{i}" for i in range(config.vocab_size - 2)]
    decoder = ExportModule(model, config, vocabulary).decoder
    ids = np.random.default_rng(3).integers(0, config.vocab_size, size=[4, config.context_length]).astype("int32")
    expected = model(ids, training=False).numpy()
    logits, state = decoder.start(tf.constant(ids[:, :2]))
    np.testing.assert_allclose(logits.numpy(), expected[:, 1], atol=1e-4)
    for position in range(2, config.context_length):
        logits, state = decoder.advance(state, tf.constant(ids[:, position]), tf.constant(ids), position)
        np.testing.assert_allclose(logits.numpy(), expected[:, position], atol=1e-4, err_msg=str(position))
    assert int(state[0]) == config.context_length


def test_carried_state_logits_match_the_keras_network(lstm_export):
    model, config = lstm_export.model, lstm_export.config
    vocabulary = ["<pad>", "<unk>"] + [f"w{i}" for i in range(config.vocab_size - 2)]
    module = ExportModule(model, config, vocabulary)
    ids = np.random.default_rng(2).integers(2, config.vocab_size, size=[3, config.context_length + 5]).astype("int32")
    logits, states = module.decoder.start(tf.constant(ids[:, : config.context_length]))
    long_config = ModelConfig.from_dict({**config.to_dict(), "context_length": ids.shape[1]})
    long_model = build_model(long_config)
    long_model.set_weights(model.get_weights())
    expected = long_model(ids, training=False).numpy()
    np.testing.assert_allclose(logits.numpy(), expected[:, config.context_length - 1], atol=1e-4)
    for offset in range(5):
        logits, states = module.decoder.step(tf.constant(ids[:, config.context_length + offset]), states)
        np.testing.assert_allclose(logits.numpy(), expected[:, config.context_length + offset], atol=1e-4)


def test_bidirectional_generation_recomputes_the_window_like_the_notebook_loop(bidirectional_export):
    model, config, loaded = bidirectional_export.model, bidirectional_export.config, bidirectional_export.loaded
    prompts = ["the cat sat", ""]
    outputs = call_generate(loaded, prompts, num_words=9, greedy=True)
    history = loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
    for step in range(9):
        window = history[:, -config.context_length :]
        expected = masked_argmax(model(window, training=False).numpy())
        assert (outputs["ids"][:, step] == expected).all(), step
        history = np.concatenate([history, outputs["ids"][:, step : step + 1]], axis=1)


@pytest.mark.parametrize("kind", ["lstm", "bidirectional", "transformer"])
def test_pad_and_unk_are_never_generated_even_when_the_model_prefers_them(kind, tiny_data_dir, tmp_path):  # noqa: F811
    overrides = {"lstm": dict(layers=1), "bidirectional": dict(bidirectional=True, objective="last", layers=1),
                 "transformer": dict(arch="transformer", layers=1, units=8, heads=2, objective="last")}[kind]
    export = make_export(tiny_data_dir, tmp_path / "export", bias_reserved=True, **overrides)
    model, config, loaded = export.model, export.config, export.loaded
    window = np.zeros([1, config.context_length], "int32")
    raw = model(window, training=False).numpy().reshape(-1, config.vocab_size)[-1]
    assert np.argmax(raw) in (0, 1)  # the model really does prefer them
    prompts = ["the cat", "", "zzz qqq"] * 4
    for settings in (dict(greedy=True), dict(temperature=5.0), dict(top_p=0.99), dict(no_repeat_ngram=1)):
        outputs = call_generate(loaded, prompts, num_words=20, **settings)
        assert outputs["ids"].min() >= 2, settings
        assert not any(b"<pad>" in text or b"<unk>" in text for text in outputs["text"])
    probabilities = loaded.signatures["next_word_probabilities"](prompts=tf.constant(prompts))["probabilities"]
    assert np.all(probabilities.numpy()[:, :2] == 0)
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-5)


def test_same_seed_same_text_different_seed_different_text(lstm_export):
    loaded = lstm_export.loaded
    prompts = ["the cat", "the cat", "a b"]
    first = call_generate(loaded, prompts, num_words=15, seed=42)
    assert (first["ids"] == call_generate(loaded, prompts, num_words=15, seed=42)["ids"]).all()
    assert (first["ids"] != call_generate(loaded, prompts, num_words=15, seed=43)["ids"]).any()
    assert (first["ids"][0] != first["ids"][1]).any()  # two samples of one prompt differ
    greedy = call_generate(loaded, prompts, num_words=15, greedy=True, seed=1)["ids"]
    assert (greedy == call_generate(loaded, prompts, num_words=15, greedy=True, seed=2)["ids"]).all()


def test_no_repeat_ngram_holds_in_the_output(lstm_export):
    loaded = lstm_export.loaded
    outputs = call_generate(loaded, ["the cat"] * 8, num_words=40, no_repeat_ngram=2, temperature=0.3, seed=5)
    for row in outputs["ids"]:
        bigrams = list(zip(row[:-1], row[1:]))
        assert len(bigrams) == len(set(bigrams))


LOADER = r"""
import json, sys
BLOCKED = {"ingest", "model", "tfrecords", "nextword", "generate"}  # this project: must not be importable
# (keras is not checked: `import tensorflow` 2.21 itself imports Keras 3)
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked in this test: " + name)
        return None
sys.meta_path.insert(0, Blocker())
import tensorflow_text  # noqa: F401  registers the tokenizer ops, as the card says
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
out = loaded.signatures["generate"](
    prompts=tf.constant(["the cat", ""]), num_words=tf.constant(6), temperature=tf.constant(1.0),
    greedy=tf.constant(False), top_k=tf.constant(0), top_p=tf.constant(1.0),
    repetition_penalty=tf.constant(1.0), no_repeat_ngram=tf.constant(0), seed=tf.constant(42, tf.int64))
logits = loaded.signatures["score_ids"](context=tf.zeros([1, int(sys.argv[2])], tf.int32))["logits"]
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"ids": out["ids"].numpy().tolist(), "logits_shape": logits.shape.as_list(), "leaked": leaked}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lstm_export", "transformer_export"])
def test_loads_with_tensorflow_alone_in_a_clean_process(which, request, tmp_path):
    export = request.getfixturevalue(which)
    config, loaded = export.config, export.loaded
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    saved_model = os.path.join(export.directory, "saved_model")
    result = subprocess.run(
        [sys.executable, "-I", str(script), saved_model, str(config.context_length)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    assert report["logits_shape"] == [1, config.vocab_size]
    in_process = call_generate(loaded, ["the cat", ""], num_words=6, seed=42)["ids"].tolist()
    assert report["ids"] == in_process  # same seed, same words, across processes


TRICKY_CORPUS = [
    "Don't STOP believing, don't stop!",
    "café CAFÉ Café cafe\u0301 — the café",
    "the,cat.sat!on(mat)[dog] {x} <y> a|b",
    "ｔｈｅ ＣＡＴ sat 😀 on the mat 😀",
    "dog—ran ‘quoted’ “double” it's O'Brien's",
    "tabs\tand  many   spaces the cat",
]


@pytest.mark.slow
def test_export_tokenizes_exactly_like_the_real_ingest_wrote(tmp_path):
    """Run the real ingest on tricky text; every window it wrote must be a run of the ids the
    export's tokenizer gives the same documents (pre-padded windows must be document prefixes)."""
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TRICKY_CORPUS) + "\n", encoding="utf-8")
    data_dir = str(tmp_path / "data")
    manifest = run_ingest(IngestSettings(inputs=(str(corpus),), out=data_dir, context_length=3, val_fraction=0.0,
                                         workers=1))
    config = ModelConfig(vocab_size=manifest.vocab_size, context_length=3, layers=1, units=4, embedding_dim=4)
    export_model(build_model(config), config, data_dir, str(tmp_path / "export"), {})
    loaded = tf.saved_model.load(str(tmp_path / "export" / "saved_model"))
    tokenized = loaded.signatures["tokenize"](prompts=tf.constant(TRICKY_CORPUS))
    documents = [row[:length].tolist() for row, length in zip(tokenized["ids"].numpy(), tokenized["lengths"].numpy())]
    assert all(1 not in document for document in documents)  # every corpus word is in the vocabulary

    from conftest import dataset_windows

    records = [window for name in manifest.splits for window in dataset_windows(data_dir, name)]
    assert len(records) >= sum(len(document) for document in documents) - len(documents) > 0

    def is_run_of_a_document(window: list[int]) -> bool:
        words = [token for token in window if token != 0]
        padded = len(words) < len(window)
        for document in documents:
            starts = [0] if padded else range(len(document) - len(words) + 1)
            if any(document[start : start + len(words)] == words for start in starts):
                return True
        return False

    bad = [record for record in records if not is_run_of_a_document(record)]
    assert bad == []
