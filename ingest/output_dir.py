"""The output directory of an ingest: a finished identical dataset is found complete, a different,
foreign or unfinished other one is refused, saying what differs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from nextword import storage
from nextword.errors import ArtifactError
from nextword.ingest.settings import IngestSettings, fingerprint_of, identity_changes
from nextword.ingest.writer import STATE_DIR, read_state
from nextword.tfrecords.manifest import MANIFEST_NAME, VOCAB_NAME, Manifest

if TYPE_CHECKING:
    from nextword.ingest.pipeline import IngestSession


_OURS = (MANIFEST_NAME, VOCAB_NAME, STATE_DIR)


# storage.write_atomic's temporary siblings of our files, left behind when a kill cut the write
_LEFTOVER = re.compile("(" + "|".join(re.escape(name) for name in (MANIFEST_NAME, VOCAB_NAME)) + r")\.tmp-[0-9a-f]{8}")


def check_output_dir(settings: IngestSettings, specs, identity: dict,
                     session: IngestSession | None = None) -> Manifest | None:
    """A finished identical dataset is returned (session.already_complete); a different or foreign
    one is refused, saying what differs (`identity` is IngestSettings.identity of this command)."""
    out, fingerprint = settings.out, fingerprint_of(identity)
    storage.prepare_out_dir(out)  # a file, under a file, or unwritable: said before any work
    names = storage.listdir(out) if storage.isdir(out) else []
    if not names:
        return None
    manifest_path = storage.join(out, MANIFEST_NAME)
    if storage.exists(manifest_path) and not settings.overwrite:
        try:
            existing = Manifest.from_json(storage.read_text(manifest_path), source=manifest_path)
        except ArtifactError:
            existing = None
        legacy = settings.legacy_fingerprint(specs)
        if existing is not None and (existing.fingerprint == fingerprint or (
                not existing.identity and legacy and existing.fingerprint == legacy)):
            if session is not None:
                session.already_complete = True
            return existing
        raise ArtifactError(f"{out} already holds a different dataset: {_what_differs(existing, identity)}",
                            hint="repeat the command that wrote it, choose another --out, or pass --overwrite to replace it")
    leftovers = [name for name in names if _LEFTOVER.fullmatch(name)]
    for name in leftovers:  # a write_atomic cut by a kill: never read, never needed
        storage.remove(storage.join(out, name))
    foreign = [name for name in names if not (name in _OURS or name in leftovers
                                              or name.endswith((".tfrecord", ".tfrecord.partial")))]
    if foreign:
        raise ArtifactError(
            f"{out} is not empty and is not a nextword dataset (it holds {foreign[:3]}{'…' if len(foreign) > 3 else ''})",
            hint="choose an empty or new --out directory",
        )
    state = read_state(out, "pass1.json")
    if state is not None and state.get("fingerprint") != fingerprint and not settings.overwrite:
        changes = identity_changes(state["identity"], identity, "unfinished ingest", "it began") \
            if state.get("identity") else []
        raise ArtifactError(
            f"{out} holds an unfinished ingest of other inputs or settings"
            + (f": {'; '.join(changes)}" if changes else " (an earlier nextword's, which records no details)"),
            hint="run that ingest's command again to finish it, choose another --out, or pass --overwrite",
        )
    if settings.overwrite or (state is not None and state.get("fingerprint") != fingerprint):
        for name in names:
            storage.remove(storage.join(out, name))
    return None


def _what_differs(existing: Manifest | None, identity: dict) -> str:
    if existing is None:
        return f"its {MANIFEST_NAME} cannot be read"
    from nextword.ingest.text_spec import TOKENIZER_CONFIG

    if (existing.tokenizer or {}).get("version") != TOKENIZER_CONFIG["version"]:
        return (f"it was tokenized by tokenizer version {(existing.tokenizer or {}).get('version')}, this nextword's "
                f"is {TOKENIZER_CONFIG['version']} (see ingest/text.py): the same command now writes other ids")
    if not existing.identity:
        return (f"it was written by {existing.created_by or 'an earlier nextword'}, whose {MANIFEST_NAME} records "
                "no sizes or checksums of its inputs, and this command is not the one that wrote it")
    changes = identity_changes(existing.identity, identity, "dataset", "the dataset was written")
    return "; ".join(changes) or "other inputs or settings"
