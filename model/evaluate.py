"""`nextword eval RUN_DIR|EXPORT_DIR DATA_DIR`: loss, perplexity, top-1/top-5 of the window's final word.

RUN_DIR: the model is rebuilt from run.json's config and the latest checkpoint restored.
EXPORT_DIR: `tf.saved_model.load` and its `score_ids(context=int32[batch, C])` signature,
which returns {"logits": float32[batch, vocab]} for the word after the window.
Same metric code as per-epoch validation (model.metrics); pad targets never count.
"""

from __future__ import annotations

import tensorflow as tf

from nextword import storage
from nextword.errors import ArtifactError
from model import checkpointing
from model.builder import build_model
from model.config import ModelConfig
from model.metrics import evaluate_batches
from tfrecords.manifest import load_manifest
from tfrecords.reader import ReaderConfig, make_dataset

EVAL_BATCH = 1024


def final_logits_from_run_dir(run_dir: str, manifest) -> callable:
    record = checkpointing.read_run_file(run_dir)
    config = ModelConfig.from_dict(record["model_config"])
    if (config.vocab_size, config.context_length) != (manifest.vocab_size, manifest.context_length):
        raise ArtifactError(
            f"{run_dir} holds a model for vocab {config.vocab_size} / context {config.context_length}, "
            f"the dataset has vocab {manifest.vocab_size} / context {manifest.context_length}",
            hint="evaluate on the dataset the model was trained on (see run.json data_dir)",
        )
    if record.get("dataset_fingerprint") != manifest.fingerprint:
        # Same shapes but another vocabulary would score nonsense.
        raise ArtifactError(
            f"{run_dir} was trained on dataset {record.get('dataset_fingerprint')}, this DATA_DIR is {manifest.fingerprint}",
            hint="evaluate on the dataset the model was trained on (see run.json data_dir)",
        )
    model = build_model(config)
    checkpointing.restore_model_weights(run_dir, model)

    def final_logits(context):
        logits = tf.cast(model(context, training=False), tf.float32)
        return logits[:, -1, :] if config.objective == "all" else logits

    return final_logits


def saved_model_path(export_dir: str) -> str:
    """EXPORT_DIR/saved_model (the export's layout), or EXPORT_DIR itself when it is a bare SavedModel."""
    nested = storage.join(export_dir, "saved_model")
    return nested if storage.exists(storage.join(nested, "saved_model.pb")) else export_dir


def final_logits_from_export(export_dir: str) -> callable:
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the export's graph uses)

    loaded = tf.saved_model.load(saved_model_path(export_dir))
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


def evaluate(model_dir: str, data_dir: str, split: str = "val") -> dict:
    """{"loss", "perplexity", "top1", "top5", "windows", "split", "source"} over the split's windows."""
    manifest = load_manifest(data_dir)
    manifest.split(split)
    if is_export_dir(model_dir):
        final_logits, source = final_logits_from_export(model_dir), "export"
    elif storage.exists(storage.join(model_dir, checkpointing.RUN_FILE)):
        final_logits, source = final_logits_from_run_dir(model_dir, manifest), "checkpoint"
    else:
        raise ArtifactError(
            f"{model_dir} is neither a RUN_DIR (run.json) nor an export (saved_model.pb)",
            hint="pass the --out of `nextword train` or its export/ directory",
        )
    config = ReaderConfig(batch_size=EVAL_BATCH, objective="last", training=False)
    totals = evaluate_batches(final_logits, make_dataset(data_dir, split, config, manifest=manifest))
    expected = manifest.splits[split].windows
    if int(totals.rows) != expected:
        raise ArtifactError(
            f"the {split} split read {int(totals.rows)} windows, dataset.json says {expected}",
            hint="the dataset was modified after ingest; re-run `nextword ingest`",
        )
    return {**totals.result(), "split": split, "source": source}
