"""EXPORT_DIR/card.json: read it and check every file it lists BEFORE anything is loaded.

Shared by `gen` (generate.generator) and `nextword eval` (model.evaluate); model.export writes
the card. Base layer on purpose: gen must not import model (Keras), and data flows one way.
"""

from __future__ import annotations

import json
import os

from nextword.errors import ArtifactError

CARD_NAME = "card.json"  # model.export writes it; gen reads it without importing the model stage
EXPORT_FORMAT = "nextword.export"
REEXPORT = "`nextword export RUN_DIR` (from the run's best checkpoint)"


def verify_export(export_dir: str) -> dict:
    """Read the card and check every listed file's sha256 BEFORE anything is loaded."""
    from nextword import storage

    card_path = storage.join(export_dir, CARD_NAME)
    if not storage.exists(card_path):
        raise ArtifactError(
            f"{export_dir} has no {CARD_NAME}: it is not a finished nextword export",
            hint="pass the export/ directory written by `nextword train`; an export without a card was interrupted: write it again with `nextword export RUN_DIR`",
        )
    try:
        card = json.loads(storage.read_text(card_path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{card_path} is not valid JSON ({error})", hint=f"write the export again: {REEXPORT}") from None
    if not isinstance(card, dict) or card.get("format") != EXPORT_FORMAT or not isinstance(card.get("files"), dict):
        raise ArtifactError(f"{card_path} is not a nextword export card", hint="pass a directory written by the export")
    for relative, expected in card["files"].items():
        path = storage.join(export_dir, relative)
        if not storage.exists(path):
            raise ArtifactError(f"{relative} is listed in {CARD_NAME} but missing from {export_dir}", hint=f"write the export again: {REEXPORT}")
        digest, _ = storage.sha256_of(path)
        if digest != expected["sha256"]:
            raise ArtifactError(
                f"{relative} in {export_dir} fails its sha256 check (card: {expected['sha256'][:12]}…, "
                f"file: {digest[:12]}…): the export was modified or damaged",
                hint=f"copy the export again, or write it again: {REEXPORT}; nothing was loaded",
            )
    _reject_unlisted_files(export_dir, card)
    return card


def _reject_unlisted_files(export_dir: str, card: dict) -> None:
    import tensorflow as tf

    from nextword import storage

    saved_model = storage.join(export_dir, card.get("saved_model", "saved_model"))
    for directory, _, names in tf.io.gfile.walk(saved_model):
        for name in names:
            relative = os.path.relpath(storage.join(directory, name), export_dir)
            if relative not in card["files"]:
                raise ArtifactError(f"{relative} in {export_dir} is not listed in {CARD_NAME}", hint=f"write the export again: {REEXPORT}")
