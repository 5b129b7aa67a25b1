"""`nextword eval RUN_DIR|EXPORT_DIR DATA_DIR`: loss, perplexity (per token and per word) and, for
word datasets, top-1/top-5 of the window's final token.

RUN_DIR: the model is rebuilt from run.json's config and its best checkpoint restored (the
weights with the lowest held-out loss during training, what the export holds), or the latest.
The DATA_DIR must be the run's dataset; for a blended run, any of its sources (one at a time: the
blended figure is in summary.json) or a dataset sharing their vocabulary (ingested --vocab-from).
EXPORT_DIR: card.json's sha256s are checked as `gen` checks them (nextword.export_card) and a
dataset with another vocabulary or context is refused; then `tf.saved_model.load` and its
`score_ids(context=int32[batch, C])` signature, which returns {"logits": float32[batch, vocab]}
for the word after the window.
Same metric code as per-epoch validation (model.metrics); pad targets never count.
"""

from __future__ import annotations

import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError, InputError
from nextword.export_card import verify_export
from nextword.model import checkpointing
from nextword.model.builder import build_model, final_word_logits_fn
from nextword.model.config import ModelConfig
from nextword.model.metrics import evaluate_split, tokens_per_word
from nextword.tfrecords.manifest import load_manifest, load_vocabulary


def final_logits_from_run_dir(run_dir: str, manifest, which: str = "best") -> callable:
    record = checkpointing.read_run_file(run_dir)
    config = ModelConfig.from_dict(record["model_config"])
    if (config.vocab_size, config.context_length) != (manifest.vocab_size, manifest.context_length):
        raise ArtifactError(
            f"{run_dir} holds a model for vocab {config.vocab_size} / context {config.context_length}, "
            f"the dataset has vocab {manifest.vocab_size} / context {manifest.context_length}",
            hint="evaluate on the dataset the model was trained on (see run.json data_dir)",
        )
    blend = record.get("blend")
    if blend and (manifest.fingerprint in [source["fingerprint"] for source in blend["sources"]]
                  or manifest.vocab_sha256 == blend.get("vocab_sha256")):
        pass  # a blend's source, or any dataset whose ids name the same words (ingested --vocab-from one)
    elif blend:
        raise ArtifactError(
            f"{run_dir} was trained on a blend of " + ", ".join(source["data_dir"] for source in blend["sources"])
            + f"; {manifest.fingerprint} is none of them and has another vocabulary (sha256 {manifest.vocab_sha256[:12]}…)",
            hint="evaluate on one of the blend's sources, or on a dataset ingested with --vocab-from one of them",
        )
    elif record.get("dataset_fingerprint") != manifest.fingerprint:
        # Same shapes but another vocabulary would score nonsense.
        raise ArtifactError(
            f"{run_dir} was trained on dataset {record.get('dataset_fingerprint')}, this DATA_DIR is {manifest.fingerprint}",
            hint="evaluate on the dataset the model was trained on (see run.json data_dir)",
        )
    model = build_model(config)
    checkpointing.restore_model_weights(run_dir, model, which)
    return final_word_logits_fn(model)


def saved_model_path(export_dir: str) -> str:
    """EXPORT_DIR/saved_model (the export's layout), or EXPORT_DIR itself when it is a bare SavedModel."""
    nested = storage.join(export_dir, "saved_model")
    return nested if storage.exists(storage.join(nested, "saved_model.pb")) else export_dir


def check_export_matches(export_dir: str, card: dict, data_dir: str, manifest) -> None:
    """Refuse a dataset the export was not trained for: another vocabulary (even of the same
    size: ids would name other words) or another context length."""
    load_vocabulary(data_dir, manifest)  # the dataset's vocab.txt is the one its manifest records
    expected = card.get("vocab_sha256") or card.get("files", {}).get("vocab.txt", {}).get("sha256")
    size = card.get("vocab_size", "?")
    if expected != manifest.vocab_sha256:
        same = " (same size, different words)" if size == manifest.vocab_size else ""
        raise ArtifactError(
            f"{export_dir} was exported with a vocabulary of {size} words (sha256 {str(expected)[:12]}…), "
            f"{data_dir} has another: {manifest.vocab_size} words (sha256 {manifest.vocab_sha256[:12]}…){same}",
            hint=f"evaluate on the dataset the model was trained on (fingerprint {card.get('dataset_fingerprint')}); "
            "scores over another vocabulary mean nothing",
        )
    if card.get("context_length") != manifest.context_length:
        raise ArtifactError(
            f"{export_dir} reads windows of {card.get('context_length')} words, {data_dir} has context {manifest.context_length}",
            hint=f"evaluate on the dataset the model was trained on (fingerprint {card.get('dataset_fingerprint')})",
        )


def final_logits_from_export(export_dir: str, card: dict) -> callable:
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the export's graph uses)

    loaded = tf.saved_model.load(storage.join(export_dir, card.get("saved_model", "saved_model")))
    if "score_ids" not in loaded.signatures:
        raise ArtifactError(
            f"{export_dir} has no score_ids signature (it has {sorted(loaded.signatures)})",
            hint="pass an export written by `nextword train`",
        )
    signature = loaded.signatures["score_ids"]

    def final_logits(context):
        keep_alive = loaded  # noqa: F841  the SavedModel owns the variables the signature reads
        return signature(context=context)["logits"]

    return final_logits


def is_export_dir(path: str) -> bool:
    return storage.exists(storage.join(saved_model_path(path), "saved_model.pb"))


def evaluate(model_dir: str, data_dir: str, split: str = "val", checkpoint: str = "best") -> dict:
    """{"loss", "perplexity", "word_perplexity", "tokens_per_word", "windows", "split", "source",
    "tokenizer"} over the split's windows, and "top1", "top5" for a word dataset (MetricTotals.result).
    checkpoint: for a RUN_DIR, "best" (held-out) or "latest"."""
    manifest = load_manifest(data_dir)
    if manifest.split(split).windows == 0:
        why = f"; the dataset was ingested with --val-fraction {manifest.val_fraction:g}" if split == "val" else ""
        raise InputError(
            f"the {split} split of {data_dir} is empty (0 windows{why})",
            hint="pass --split train, or ingest again with --val-fraction above 0 (e.g. 0.1)" if split == "val"
            else f"pass --split with a split that holds windows ({', '.join(sorted(manifest.splits))})",
        )
    tokens_per_word(manifest, split)  # a manifest without word counts is refused before the model loads
    if is_export_dir(model_dir):
        card = verify_export(model_dir)  # every file's sha256, as `gen` checks it, before loading
        check_export_matches(model_dir, card, data_dir, manifest)
        final_logits, source = final_logits_from_export(model_dir, card), "export"
    elif storage.exists(storage.join(model_dir, checkpointing.RUN_FILE)):
        final_logits = final_logits_from_run_dir(model_dir, manifest, checkpoint)
        source = f"checkpoint {checkpoint}" if checkpointing.best_checkpoint(model_dir) else "checkpoint"
    else:
        raise ArtifactError(
            f"{model_dir} is neither a RUN_DIR (run.json) nor an export (saved_model.pb)",
            hint="pass the --out of `nextword train` or its export/ directory",
        )
    totals = evaluate_split(tf.distribute.get_strategy(), final_logits, data_dir, split, manifest)
    expected = manifest.splits[split].windows
    if int(totals.rows) != expected:
        raise ArtifactError(
            f"the {split} split read {int(totals.rows)} windows, dataset.json says {expected}",
            hint="the dataset was modified after ingest; re-run `nextword ingest`",
        )
    return {**totals.result(manifest, split), "split": split, "source": source, "tokenizer": manifest.tokenizer_choice}
