"""Artifact I/O through `tf.io.gfile`, so DATA_DIR and RUN_DIR may be local paths,
`file://` URLs, TensorFlow's in-memory `ram://` or any filesystem plugin (gs://, s3://…).

Kept tiny on purpose: every stage writes its artifacts through these few calls.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid

import tensorflow as tf

gfile = tf.io.gfile
_READ_CHUNK = 8 << 20


def join(base: str, *names: str) -> str:
    return posixpath.join(base, *names)


def exists(path: str) -> bool:
    return gfile.exists(path) and _listed_in_parent(path)


def isdir(path: str) -> bool:
    return gfile.isdir(path) and _listed_in_parent(path)


def _listed_in_parent(path: str) -> bool:
    """TF's in-memory ram:// filesystem answers exists/isdir by name prefix ("ram://run/export"
    "exists" once "ram://run/export.tmp-1" does); there, ask the parent's listing instead."""
    if not path.startswith("ram://"):
        return True
    parent, name = posixpath.split(path.rstrip("/"))
    if parent in ("ram:", "ram:/") or not name:
        return True
    return name in {entry.rstrip("/") for entry in gfile.listdir(parent)}


def makedirs(path: str) -> None:
    gfile.makedirs(path)


def listdir(path: str) -> list[str]:
    return sorted(name.rstrip("/") for name in gfile.listdir(path)) if gfile.isdir(path) else []


def remove(path: str) -> None:
    if gfile.isdir(path):
        gfile.rmtree(path)
    elif gfile.exists(path):
        gfile.remove(path)


def rename(source: str, target: str) -> None:
    """Rename a file or a directory. Where a directory cannot be renamed (TF's ram:// moves the
    directory entry without its files; some object stores refuse) its files are copied, then
    the source is deleted: not atomic there, but complete."""
    if source.startswith("ram://") and gfile.isdir(source):
        _copy_tree(source, target)
        gfile.rmtree(source)
        return
    try:
        gfile.rename(source, target, overwrite=True)
    except tf.errors.OpError:
        if not gfile.isdir(source):
            raise
        _copy_tree(source, target)
        gfile.rmtree(source)


def _copy_tree(source: str, target: str) -> None:
    for directory, _, names in gfile.walk(source):
        relative = posixpath.relpath(directory, source)
        destination = target if relative == "." else join(target, relative)
        gfile.makedirs(destination)
        for name in names:
            gfile.copy(join(directory, name), join(destination, name), overwrite=True)


def size(path: str) -> int:
    return gfile.stat(path).length


def open_file(path: str, mode: str = "rb"):
    return gfile.GFile(path, mode)


def read_text(path: str) -> str:
    with gfile.GFile(path, "r") as handle:
        return handle.read()


def write_atomic(path: str, data: str | bytes) -> None:
    """Write to a temporary sibling, then rename: readers see the old file or the new one."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with gfile.GFile(temporary, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    gfile.rename(temporary, path, overwrite=True)


def sha256_of(path: str, limit: int | None = None) -> tuple[str, int]:
    """(hex digest, bytes read) of a file, or of its first `limit` bytes."""
    digest = hashlib.sha256()
    remaining = limit
    read = 0
    with gfile.GFile(path, "rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(_READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            read += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest(), read
