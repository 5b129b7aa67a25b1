"""A wordpiece export (issue 12, item 2): the SavedModel embeds the same WordPiece tokenizer and
its detokenizer; `--words N` is N whole words; no <pad>, <unk> or partial word ever comes out;
prompt words never seen in training are spelled with known pieces; every sampling option works.

Models have random weights (a DATA_DIR from the real ingest, `--tokenizer wordpiece`): the
mechanics are under test, not the quality."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

from _cli import run_cli
from nextword.ingest.pipeline import run_ingest
from nextword.ingest.settings import IngestSettings
from nextword.ingest.text import PAD_ID, UNK_ID, TextToIds
from nextword.model.export import export_model
from nextword.model.export_graph import MAX_PIECES_PER_WORD
from test_export import TRICKY, call_generate
from test_export_fixtures import model_config_for, random_model
from nextword.tfrecords.manifest import is_continuation, join_pieces, load_manifest, load_vocabulary
from conftest import synthetic_documents, write_lines

UNSEEN = "waterfalls"  # not in the corpus; spelled with the corpus's letters
OUTSIDE = "жук"  # letters the corpus never holds: the one way a word still becomes <unk>


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory) -> str:
    documents = synthetic_documents(300, seed=3, min_words=3, max_words=20) + ["The river, the water; WALKING!"]
    corpus = write_lines(tmp_path_factory.mktemp("corpus") / "corpus.txt", documents)
    out = str(tmp_path_factory.mktemp("wordpiece") / "data")
    run_ingest(IngestSettings(inputs=(corpus,), out=out, tokenizer="wordpiece", vocab_size=80, context_length=12,
                              shards=1, val_fraction=0.1, seed=1, workers=1))
    return out


@pytest.fixture(scope="module")
def vocabulary(wordpiece_dir) -> list[str]:
    return load_vocabulary(wordpiece_dir, load_manifest(wordpiece_dir))


def exported(data_dir: str, directory, bias=None, **config):
    """Export a random model; `bias(vocabulary) -> float32[vocab]` is added to its output bias."""
    model_config = model_config_for(data_dir, **config)
    model = random_model(model_config)
    if bias is not None:
        kernel, old_bias = model.get_layer("logits").get_weights()
        model.get_layer("logits").set_weights([kernel, old_bias + bias(load_vocabulary(data_dir, load_manifest(data_dir)))])
    # the network alone: these tests steer its output through the bias (the mixture: test_ngram_export.py)
    export_model(model, model_config, data_dir, str(directory), {"steps": 0}, ngram_order=0)
    return tf.saved_model.load(os.path.join(str(directory), "saved_model"))


@pytest.fixture(scope="module")
def export_dirs(wordpiece_dir, tmp_path_factory) -> dict:
    """{arch: (loaded SavedModel, export dir)} for an LSTM and a transformer."""
    out = {}
    for arch, settings in (("lstm", {}), ("transformer", dict(arch="transformer", layers=1, units=16, heads=2, embedding_dim=16))):
        directory = tmp_path_factory.mktemp(arch) / "export"
        out[arch] = (exported(wordpiece_dir, directory, **settings), str(directory))
    return out


@pytest.fixture(params=["lstm", "transformer"])
def loaded(request, export_dirs):
    return export_dirs[request.param][0]


def check_whole_words(outputs: dict, vocabulary: list[str], num_words: int) -> list[list[str]]:
    """Every row: num_words words; its ids are its pieces, the first starting a word; no reserved
    token. Returns the rows' pieces."""
    rows = []
    for text, ids, length in zip(outputs["text"], outputs["ids"], outputs["lengths"]):
        pieces = [vocabulary[token] for token in ids[:length]]
        words = text.decode().split(" ")
        assert len(words) == num_words and all(words), text
        assert not is_continuation(pieces[0]) and join_pieces(pieces) == words
        assert PAD_ID not in ids[:length] and UNK_ID not in ids[:length] and not ids[length:].any()
        assert not any(word.startswith("##") or word in ("<pad>", "<unk>") for word in words)
        rows.append(pieces)
    return rows


SAMPLING = [
    dict(),
    dict(greedy=True),
    dict(top_k=3, temperature=0.7),
    dict(top_p=0.5),
    dict(repetition_penalty=1.8),
    dict(no_repeat_ngram=2, temperature=0.3),
]


@pytest.mark.parametrize("options", SAMPLING, ids=lambda options: ",".join(options) or "default")
def test_every_sampling_option_gives_exactly_n_whole_words(loaded, vocabulary, options):
    prompts = ["the river", "", f"WALKING by the {UNSEEN}", "a " * 40]
    outputs = call_generate(loaded, prompts, num_words=9, seed=4, **options)
    rows = check_whole_words(outputs, vocabulary, 9)
    if options.get("no_repeat_ngram"):
        window = loaded.signatures["tokenize"](prompts=tf.constant(prompts))["window"].numpy()
        for prompt_window, length, ids in zip(window, outputs["lengths"], outputs["ids"]):
            history = [*prompt_window, *ids[:length]]
            pairs = list(zip(history[:-1], history[1:]))
            for end in range(len(prompt_window) - 1, len(pairs)):  # each generated piece's pair is new
                assert pairs[end] not in pairs[:end]  # n-grams of pieces, the prompt's included
    assert sum(len(pieces) for pieces in rows) > 9 * len(prompts) or options.get("greedy")  # words of several pieces happen


def test_seeds_repeat_and_num_words_zero_is_empty(loaded, vocabulary):
    first = call_generate(loaded, ["the river"] * 3, num_words=12, seed=7)
    again = call_generate(loaded, ["the river"] * 3, num_words=12, seed=7)
    assert list(first["text"]) == list(again["text"]) and len(set(first["text"])) > 1
    empty = call_generate(loaded, ["the river"], num_words=0, seed=7)
    assert empty["text"].tolist() == [b""] and empty["lengths"].tolist() == [0]


def test_a_model_that_only_wants_to_continue_words_still_starts_each_word_and_stops_at_the_cap(wordpiece_dir, vocabulary, tmp_path):
    """Continuation pieces (and <pad>, <unk>) get +1000: the first piece must still start a word, and
    each word ends after MAX_PIECES_PER_WORD pieces, so `--words N` terminates with N words."""
    def loves_continuing(tokens):
        return np.array([1e3 if is_continuation(token) or token in ("<pad>", "<unk>") else 0.0 for token in tokens], np.float32)

    model = exported(wordpiece_dir, tmp_path / "export", bias=loves_continuing)
    outputs = call_generate(model, ["the river", ""], num_words=3, seed=1)
    for pieces in check_whole_words(outputs, vocabulary, 3):
        assert len(pieces) == 3 * MAX_PIECES_PER_WORD
        assert [is_continuation(piece) for piece in pieces] == ([False] + [True] * (MAX_PIECES_PER_WORD - 1)) * 3
    probabilities = model.signatures["next_word_probabilities"](prompts=tf.constant(["the river"]))["probabilities"].numpy()[0]
    assert probabilities[[is_continuation(token) for token in vocabulary]].sum() == 0 and probabilities[:2].sum() == 0
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_unseen_prompt_words_become_known_pieces_exactly_as_ingest_tokenizes(loaded, vocabulary):
    prompts = [*TRICKY, f"the {UNSEEN}", f"the {OUTSIDE} river"]
    tokens = loaded.signatures["tokenize"](prompts=tf.constant(prompts))
    expected = TextToIds(vocabulary, "wordpiece")(tf.constant(prompts)).to_list()
    lengths = tokens["lengths"].numpy()
    assert [row[:length].tolist() for row, length in zip(tokens["ids"].numpy(), lengths)] == expected
    unseen = expected[-2][1:]
    assert UNSEEN not in vocabulary and len(unseen) > 1 and UNK_ID not in unseen
    assert "".join(join_pieces([vocabulary[token] for token in unseen])) == UNSEEN
    unknown = [text.decode() for text in tokens["unknown_words"].numpy()]
    assert unknown[-2] == "" and unknown[-1] == OUTSIDE and expected[-1][1] == UNK_ID and expected[-1].count(UNK_ID) == 1


def test_repetition_penalty_counts_only_the_pieces_that_start_words(wordpiece_dir, vocabulary):
    """The penalty acts on words' first pieces: a suffix such as "##s" is never marked as seen."""
    from nextword.model.export_graph import ExportModule

    config = model_config_for(wordpiece_dir)
    module = ExportModule(random_model(config), config, vocabulary, "wordpiece")
    starts = [index for index, token in enumerate(vocabulary) if index > UNK_ID and not is_continuation(token)][:2]
    continuation = [index for index, token in enumerate(vocabulary) if is_continuation(token)][:2]
    seen = module._mark_seen(tf.zeros([1, len(vocabulary)], tf.bool), tf.constant([starts + continuation], tf.int32))
    assert set(np.flatnonzero(seen.numpy()[0])) - {PAD_ID} == set(starts)  # (<pad> is never sampled)


def test_gen_prints_whole_words_from_a_wordpiece_export(export_dirs):
    """The card names the embedded tokenizer; `gen --words N` prints the prompt and N words."""
    import json

    export_dir = export_dirs["lstm"][1]
    with open(os.path.join(export_dir, "card.json")) as handle:
        card = json.load(handle)
    assert card["tokenizer"]["name"] == "nextword-wordpiece" and "dataset_tokenizer" not in card
    result = run_cli("gen", export_dir, "The river", "--words", "6", "--seed", "3", "--top-k", "20",
                     "--no-repeat-ngram", "3", "--repetition-penalty", "1.2")
    assert result.exit_code == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("The river ") and len(line.split(" ")) == 2 + 6 and "##" not in line, line
    as_json = run_cli("gen", export_dir, f"the {OUTSIDE}", "--words", "4", "--seed", "3", "--json")
    record = json.loads(as_json.stdout)
    assert len(record["text"].split(" ")) == 4 and record["unknown_prompt_words"] == [OUTSIDE]
    assert len(record["ids"]) >= 4 and 0 not in record["ids"]
