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
import math
import posixpath
import time
import uuid

import keras
import numpy as np
import tensorflow as tf

import nextword
from nextword.ingest.text import tokenizer_config
from nextword.model.config import ModelConfig
from nextword.model.export_graph import ExportModule
from nextword.model import ngram
from nextword.model.ngram_graph import NgramMixture
from nextword import storage
from nextword.errors import ArtifactError
from nextword.export_card import CARD_NAME, EXPORT_FORMAT
from nextword.tfrecords.manifest import load_manifest, load_vocabulary

SAVED_MODEL_DIR = "saved_model"
VOCAB_NAME = "vocab.txt"
EXPORT_FORMAT_VERSION = 1

LOADING_NOTE = (
    "import tensorflow_text before tf.saved_model.load: the graph uses TF Text tokenizer ops "
    "(TF Serving needs a build with the TF Text ops too). Nothing else from nextword is needed."
)
SIGNATURES_DOC = {
    "generate": "prompts string[batch], num_words int32, temperature float32, greedy bool, top_k int32 "
    "(0 = off), top_p float32 (1 = off), repetition_penalty float32 (1 = off), no_repeat_ngram int32 "
    "(0 = off), seed int64 -> text string[batch] (num_words whole words, space-separated), ids "
    "int32[batch, n] (the tokens of text, 0-padded), lengths int32[batch] (tokens in each row's ids), "
    "unknown_words string[batch] (prompt words read as <unk>, space-separated), prompt_length "
    "int32[batch] (words). Never emits <pad>/<unk>, nor (pieces) a piece continuing the prompt's last word. "
    "Pieces: no_repeat_ngram counts pieces, repetition_penalty acts on the pieces that start words.",
    "generate_start": "generate's inputs -> state_* tensors (the sampling loop before its first draw; pass every "
    "one to generate_continue), unknown_words string[batch], prompt_length int32[batch].",
    "generate_continue": "state_* tensors, steps int32 (tokens to draw at most, >= 1) -> the next state_*, and the "
    "words completed in this call: text string[batch] (space-separated, \"\" if none), words string[batch, n], "
    "word_lengths int32[batch, n] (tokens a word), ids int32[batch, m], lengths int32[batch], done bool[batch], "
    "finished bool (stop calling). The calls draw exactly the tokens of one generate call with the same settings.",
    "serving_default": "generate for TF Serving: prompts string[batch], num_words int32 (default 30), temperature "
    "float32 (1.0), top_k int32 (0 = off), top_p float32 (1.0 = off), seed int64 (0) -> generate's outputs; greedy, "
    "repetition_penalty and no_repeat_ngram off. The defaults are in the SignatureDef (TF Serving fills them in).",
    "next_word_probabilities": "prompts string[batch] -> probabilities float32[batch, vocab]: the "
    "distribution generate draws the next word's first token from at temperature 1 (<pad>, <unk> and "
    "pieces continuing a word zeroed out, the rest renormalised).",
    "score_ids": "context int32[batch, context_length] (pre-padded ids) -> logits float32[batch, vocab] "
    "(<pad>/<unk> included) of the token after the window: the network's raw logits, or, when the card has an "
    "`ngram`, the log-probabilities of its mixture with the n-gram (their softmax is the mixture itself).",
    "tokenize": "prompts string[batch] -> words string[batch, n], ids int32[batch, m] (tokens: words, or "
    "pieces for a wordpiece export), lengths int32[batch] (tokens), window int32[batch, context_length], "
    "unknown_words string[batch].",
}


def export_model(
    model: keras.Model, config: ModelConfig, data_dir: str, export_dir: str, training_summary: dict,
    ngram_order: int = ngram.DEFAULT_ORDER, sample_windows: int = 2048, blend: dict | None = None,
    context_cache: bool = True,
) -> dict:
    """Write EXPORT_DIR from a trained Keras model and its DATA_DIR; returns the card (a dict).

    ngram_order >= 2: the export mixes the network with a Kneser-Ney n-gram of that order counted
    on the train split, weighted by maximum likelihood on the first `sample_windows` val windows
    (the validation sample that chose the checkpoint); 0: the network alone. context_cache: the
    mixture's third part, the window's own words (model/context_cache.py), its weight fitted with the others.
    blend: a blended run's sources and weights (run.json's "blend"), recorded in the card; DATA_DIR
    is then its first source (the vocabulary every source shares; the n-gram is counted on it)."""
    manifest = load_manifest(data_dir)
    vocabulary = load_vocabulary(data_dir, manifest)
    _check_matches_dataset(config, manifest)
    export_dir, data_dir = str(export_dir).rstrip("/"), str(data_dir)
    staging = f"{export_dir}.tmp-{uuid.uuid4().hex[:8]}"
    storage.makedirs(staging)
    try:
        network = float32_copy(model, config)
        mixture, ngram_card = build_mixture(network, config, data_dir, manifest, ngram_order, sample_windows,
                                             context_cache)
        module = ExportModule(network, config, vocabulary, manifest.tokenizer_choice, mixture)
        tf.saved_model.save(module, storage.join(staging, SAVED_MODEL_DIR), signatures=module.signatures())
        storage.write_atomic(storage.join(staging, VOCAB_NAME), "".join(f"{token}\n" for token in vocabulary))
        generation = module.decoder.description + (
            f"; mixed with a {mixture.order}-gram (network weight {mixture.network_weight:.3f})"
            + (f" and the context cache (weight {mixture.cache_weight:.3f})" if mixture.cache else "") if mixture else "")
        card = _card(config, manifest, training_summary, _file_checksums(staging), generation, ngram_card, blend)
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


def float32_copy(model: keras.Model, config: ModelConfig) -> keras.Model:
    """The trained weights in a fresh float32 model outside any strategy: the export then runs
    in float32 on any device, whatever the run's mixed-precision policy or strategy were."""
    from nextword.model.builder import build_model

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        copy = build_model(config)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def build_mixture(network: keras.Model, config: ModelConfig, data_dir: str, manifest, order: int,
                  sample_windows: int, context_cache: bool = True) -> tuple[NgramMixture | None, dict | None]:
    """(the mixture, the card's `ngram` entry), or (None, None) for order 0, or (None, {"order",
    "skipped": why}) when there is nothing to count or to choose the weights on. context_cache: the
    mixture has the context cache (model/context_cache.py) as its third part."""
    if order == 0:
        return None, None
    from nextword.model.builder import final_word_logits_fn
    from nextword.model.context_cache import cache_log_probabilities
    from nextword.model.metrics import eval_batch_per_replica
    from nextword.model.validation import read_sample

    order = min(order, config.context_length + 1)  # the n-gram reads at most the window
    started = time.perf_counter()
    contexts, targets = ngram.events_from_dataset(data_dir, "train", order, max_events=ngram.MAX_EVENTS)
    counted = targets != ngram.PAD
    sample_contexts, sample_targets = read_sample(data_dir, manifest, sample_windows)
    scored = sample_targets != ngram.PAD
    sample_contexts, sample_targets = sample_contexts[scored], sample_targets[scored]
    if not counted.any() or not scored.any():
        why = "no train windows to count" if not counted.any() else "no val windows to choose its weight on"
        return None, {"order": order, "skipped": why}
    counts = ngram.count_events(contexts[counted], targets[counted], config.vocab_size, order)
    final_logits = tf.function(final_word_logits_fn(network),
                               input_signature=[tf.TensorSpec([None, config.context_length], tf.int32)])
    batch = eval_batch_per_replica(config.vocab_size)
    network_log_p = np.concatenate([
        _target_log_probabilities(final_logits(sample_contexts[start:start + batch]), sample_targets[start:start + batch])
        for start in range(0, len(sample_targets), batch)])
    ngram_log_p, _ = ngram.score_events(counts, sample_contexts[:, -(order - 1):], sample_targets)
    pair_weight = ngram.fit_network_weight(network_log_p, ngram_log_p)
    parts = {"network": network_log_p, "ngram": ngram_log_p}
    if context_cache:
        parts["cache"] = cache_log_probabilities(sample_contexts, sample_targets, ngram_log_p)
    weights = dict(zip(parts, ngram.fit_weights(list(parts.values()))))
    mixed_log_p = _mixed(parts, weights)
    perplexity = {name: round(math.exp(-float(np.mean(values))), 3) for name, values in (
        ("network", network_log_p), ("ngram", ngram_log_p),
        ("network_and_ngram", ngram.mixture_log_probabilities(network_log_p, ngram_log_p, pair_weight)),
        ("mixture", mixed_log_p))}
    train_windows = manifest.splits["train"].windows
    entry = {
        "order": order, "algorithm": ngram.ALGORITHM, "network_weight": float(weights["network"]),
        "ngram_weight": float(weights["ngram"]), "cache_weight": float(weights.get("cache", 0.0)),
        "context_cache": "the share of the window's words that are each id (model/context_cache.py)"
        if context_cache else None,
        "train_events": int(counted.sum()),
        "counted": "every train window" if len(targets) >= train_windows
        else f"the first {len(targets):,} of {train_windows:,} train windows (a sample of documents: ingest shuffles records)",
        "weight_chosen_on": f"the first {len(sample_targets):,} val windows (the validation sample that chose the "
                            "checkpoint), by maximum likelihood",
        # network_and_ngram: the two alone, their own weight refitted (what the cache adds is mixture's difference)
        "sample_perplexity": perplexity,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return NgramMixture(counts, weights["network"], weights.get("cache", 0.0), context_cache), entry


def _mixed(parts: dict, weights: dict) -> np.ndarray:
    """log(sum_k w_k p_k) of each event, from each part's log-probabilities."""
    with np.errstate(divide="ignore"):  # a weight of exactly 0, a cache without the target
        return np.logaddexp.reduce([np.log(weights[name]) + log_p for name, log_p in parts.items()], axis=0)


def _target_log_probabilities(logits: tf.Tensor, targets: np.ndarray) -> np.ndarray:
    """float64[b]: log softmax(logits)[target] of each row."""
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy().astype(np.float64)
    return log_p[np.arange(len(targets)), targets]


def _card(config: ModelConfig, manifest, training_summary: dict, files: dict, generation: str,
          ngram_entry: dict | None = None, blend: dict | None = None) -> dict:
    embedded = tokenizer_config(manifest.tokenizer_choice)
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
        "generation": generation,
        # the n-gram mixed into the network's output (model/ngram_graph.py); null: the network alone
        "ngram": ngram_entry,
        # What the graph embeds (this version's); the dataset's entry if it was tokenized by another.
        "tokenizer": embedded,
        **({"dataset_tokenizer": manifest.tokenizer}
           if manifest.tokenizer and manifest.tokenizer.get("version") != embedded["version"] else {}),
        "vocab_file": VOCAB_NAME,
        "vocab_size": manifest.vocab_size,
        "vocab_sha256": manifest.vocab_sha256,
        "context_length": manifest.context_length,
        "pad_id": manifest.pad_id,
        "unk_id": manifest.unk_id,
        "dataset_fingerprint": blend["fingerprint"] if blend else manifest.fingerprint,
        # a blend: every source (name, data_dir, fingerprint, weight: its share of the windows trained)
        **({"blend": blend} if blend else {}),
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


def export_run(run_dir: str, export_dir: str | None = None, data_dir: str | None = None,
               which: str = "best", ngram_order: int | None = None,
               context_cache: bool | None = None) -> tuple[str, dict]:
    """`nextword export RUN_DIR`: the export `train` writes at its end, from RUN_DIR's best
    held-out checkpoint (`which` "best"; the latest when no validation ran) or its latest.

    The model is rebuilt from run.json's config; the vocabulary comes from the dataset the run
    was trained on (run.json's data_dir, or `data_dir` when it has moved; its fingerprint must
    match). ngram_order, context_cache None: the run's own (run.json's settings). Returns (EXPORT_DIR, card)."""
    from nextword.model import checkpointing
    from nextword.model.builder import build_model

    record = checkpointing.read_run_file(run_dir)
    checkpoint = checkpointing.chosen_checkpoint(run_dir, which)
    if checkpoint is None:
        raise ArtifactError(
            f"{run_dir} holds no checkpoint to export",
            hint=f"train first (`nextword train DATA_DIR --out {run_dir}`), or pass the RUN_DIR that holds checkpoints/",
        )
    data_dir = data_dir or record["data_dir"]
    if not storage.exists(storage.join(data_dir, "dataset.json")):
        raise ArtifactError(
            f"the run's dataset {data_dir} is not there (the export needs its vocabulary)",
            hint="pass --data-dir DATA_DIR: where the dataset the run was trained on is now",
        )
    manifest = load_manifest(data_dir)
    blend = record.get("blend")
    expected = blend["sources"][0]["fingerprint"] if blend else record.get("dataset_fingerprint")
    if manifest.fingerprint != expected:
        raise ArtifactError(
            f"{data_dir} is not the dataset {run_dir} was trained on (fingerprint {manifest.fingerprint}, "
            f"run.json: {expected}{', the blend' + chr(39) + 's first source' if blend else ''})",
            hint="pass --data-dir with the dataset the run was trained on",
        )
    export_dir = str(export_dir or storage.join(run_dir, "export")).rstrip("/")
    _refuse_to_replace_other_files(export_dir)
    config = ModelConfig.from_dict(record["model_config"])
    model = build_model(config)
    checkpointing.restore_model_weights(run_dir, model, which)
    run_settings = record.get("settings", {})
    if ngram_order is None:  # the run's: asked for, else by its preset (TrainSettings.export_ngram_order)
        ngram_order = run_settings.get("ngram_order")
    if ngram_order is None:
        ngram_order = 0 if run_settings.get("preset") == "notebook" else ngram.DEFAULT_ORDER
    card = export_model(model, config, data_dir, export_dir, _training_summary(run_dir, checkpoint),
                        ngram_order=ngram_order, sample_windows=run_settings.get("validation_sample", 2048), blend=blend,
                        context_cache=run_settings.get("context_cache", True) if context_cache is None else context_cache)
    return export_dir, card


def _training_summary(run_dir: str, checkpoint: str) -> dict:
    """RUN_DIR/summary.json when it describes the checkpoint being exported, else its step alone."""
    from nextword.model.checkpointing import checkpoint_step

    step = checkpoint_step(checkpoint)
    path = storage.join(run_dir, "summary.json")
    summary = {}
    if storage.exists(path):
        try:
            summary = json.loads(storage.read_text(path))
        except json.JSONDecodeError:
            summary = {}
    exported = summary.get("exported") if isinstance(summary, dict) else None
    same = isinstance(summary, dict) and step in (summary.get("steps"), (exported or {}).get("step"))
    if not same:
        summary = {"steps": step}
    return {**summary, "exported_from": posixpath.basename(checkpoint)}


def _refuse_to_replace_other_files(export_dir: str) -> None:
    """An export replaces the directory it is written to: only ever an earlier export (or nothing)."""
    if storage.isdir(export_dir) and storage.listdir(export_dir) and not storage.exists(storage.join(export_dir, CARD_NAME)):
        raise ArtifactError(
            f"{export_dir} holds files that are not a nextword export; the export would replace them",
            hint="choose a new or empty --out",
        )
    if storage.exists(export_dir) and not storage.isdir(export_dir):
        raise ArtifactError(f"{export_dir} is a file, not a directory", hint="choose a new or empty --out")
