"""Write EXPORT_DIR: a self-contained SavedModel plus `card.json` beside it.

    EXPORT_DIR/
      saved_model/        tf.saved_model.save of model.export_graph.ExportModule
      vocab.txt           the dataset's vocabulary (for people and tools; the graph has its own copy)
      card.json           written last: configs, checksums of every file, how to load

Everything is written into a temporary sibling directory and renamed into place at the
end, with the card as the last file inside it, so a crash never leaves a directory that
looks like a finished export.
"""

from __future__ import annotations

import json
import posixpath
import time
import uuid

import keras
import tensorflow as tf

import nextword
from ingest.text import TOKENIZER_CONFIG
from model.config import ModelConfig
from model.export_graph import ExportModule
from nextword import storage
from nextword.errors import ArtifactError
from tfrecords.manifest import load_manifest, load_vocabulary

CARD_NAME = "card.json"
SAVED_MODEL_DIR = "saved_model"
VOCAB_NAME = "vocab.txt"
EXPORT_FORMAT = "nextword.export"
EXPORT_FORMAT_VERSION = 1

LOADING_NOTE = (
    "import tensorflow_text before tf.saved_model.load: the graph uses TF Text tokenizer ops "
    "(TF Serving needs a build with the TF Text ops too). Nothing else from nextword is needed."
)
SIGNATURES_DOC = {
    "generate": "prompts string[batch], num_words int32, temperature float32, greedy bool, top_k int32 "
    "(0 = off), top_p float32 (1 = off), repetition_penalty float32 (1 = off), no_repeat_ngram int32 "
    "(0 = off), seed int64 -> text string[batch], ids int32[batch, num_words], unknown_words "
    "string[batch] (space-separated), prompt_length int32[batch]. Never emits <pad>/<unk>.",
    "next_word_probabilities": "prompts string[batch] -> probabilities float32[batch, vocab]: "
    "softmax with <pad> and <unk> zeroed out and the rest renormalised.",
    "score_ids": "context int32[batch, context_length] (pre-padded ids) -> logits float32[batch, vocab] "
    "(raw, <pad>/<unk> included) of the word after the window.",
    "tokenize": "prompts string[batch] -> words string[batch, n], ids int32[batch, n], lengths int32[batch], "
    "window int32[batch, context_length], unknown_words string[batch].",
}


def export_model(
    model: keras.Model, config: ModelConfig, data_dir: str, export_dir: str, training_summary: dict
) -> dict:
    """Write EXPORT_DIR from a trained Keras model and its DATA_DIR; returns the card (a dict)."""
    manifest = load_manifest(data_dir)
    vocabulary = load_vocabulary(data_dir, manifest)
    _check_matches_dataset(config, manifest)
    export_dir, data_dir = str(export_dir).rstrip("/"), str(data_dir)
    staging = f"{export_dir}.tmp-{uuid.uuid4().hex[:8]}"
    storage.makedirs(staging)
    try:
        module = ExportModule(model, config, vocabulary)
        tf.saved_model.save(module, storage.join(staging, SAVED_MODEL_DIR), signatures=module.signatures())
        storage.write_atomic(storage.join(staging, VOCAB_NAME), "".join(f"{token}\n" for token in vocabulary))
        card = _card(config, manifest, training_summary, _file_checksums(staging))
        storage.write_atomic(storage.join(staging, CARD_NAME), json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        _replace_directory(staging, export_dir)
    except BaseException:
        storage.remove(staging)
        raise
    return card


def _check_matches_dataset(config: ModelConfig, manifest) -> None:
    if config.vocab_size != manifest.vocab_size or config.context_length != manifest.context_length:
        raise ArtifactError(
            f"the model (vocab_size={config.vocab_size}, context_length={config.context_length}) was not "
            f"built for this dataset (vocab_size={manifest.vocab_size}, context_length={manifest.context_length})",
            hint="export with the DATA_DIR the model was trained on",
        )


def _card(config: ModelConfig, manifest, training_summary: dict, files: dict) -> dict:
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "nextword_version": nextword.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "saved_model": SAVED_MODEL_DIR,
        "loading": LOADING_NOTE,
        "requires": {"tensorflow": tf.__version__, "tensorflow_text": _tf_text_version()},
        "signatures": SIGNATURES_DOC,
        "model": config.to_dict(),
        "generation": "recurrent state carried word to word"
        if not config.bidirectional
        else "window recomputed every word (bidirectional)",
        "tokenizer": manifest.tokenizer or TOKENIZER_CONFIG,
        "vocab_file": VOCAB_NAME,
        "vocab_size": manifest.vocab_size,
        "vocab_sha256": manifest.vocab_sha256,
        "context_length": manifest.context_length,
        "pad_id": manifest.pad_id,
        "unk_id": manifest.unk_id,
        "dataset_fingerprint": manifest.fingerprint,
        "training": training_summary,
        "files": files,
    }


def _tf_text_version() -> str:
    import tensorflow_text

    return getattr(tensorflow_text, "__version__", "unknown")


def _file_checksums(root: str) -> dict[str, dict]:
    """{relative path: {"sha256", "bytes"}} of every file under root (card excluded)."""
    files = {}
    for directory, _, names in tf.io.gfile.walk(root):
        for name in names:
            path = storage.join(directory, name)
            relative = posixpath.relpath(path, root)
            if relative == CARD_NAME:
                continue
            digest, size = storage.sha256_of(path)
            files[relative] = {"sha256": digest, "bytes": size}
    return dict(sorted(files.items()))


def _replace_directory(staging: str, export_dir: str) -> None:
    """Rename the finished staging dir into place; an old export is moved aside first."""
    if storage.exists(export_dir):
        old = f"{export_dir}.old-{uuid.uuid4().hex[:8]}"
        storage.rename(export_dir, old)
        storage.rename(staging, export_dir)
        storage.remove(old)
    else:
        parent = posixpath.dirname(export_dir)
        if parent:
            storage.makedirs(parent)
        storage.rename(staging, export_dir)
