"""Artifact I/O through `tf.io.gfile`, so DATA_DIR and RUN_DIR may be local paths,
`file://` URLs, TensorFlow's in-memory `ram://` or any filesystem plugin (gs://, s3://…).

Kept tiny on purpose: every stage writes its artifacts through these few calls.

TensorFlow is imported on first use, and the calls a command that only reads JSON and writes
files needs (exists, isdir, makedirs, listdir, remove, read_text, write_atomic, open_file in a
bytes mode) serve local paths through Python's os: `nextword plot RUN_DIR` on a local run, and
the main process of `nextword ingest --workers 2`, run without importing TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import uuid

from nextword.errors import InputError, ResourceError

_READ_CHUNK = 8 << 20


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def __getattr__(name: str):
    if name == "gfile":  # storage.gfile: tf.io.gfile, imported when first asked for
        return _gfile()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_local(path: str) -> bool:
    """A plain path, not a URL (gs://, s3://, ram://, file://...)."""
    return "://" not in str(path)


def local_path(path: str) -> str | None:
    """The OS path of a local path (plain or file://), None for remote filesystems."""
    path = str(path)
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


def join(base: str, *names: str) -> str:
    return posixpath.join(base, *names)


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    return _gfile().exists(path) and _listed_in_parent(path)


def isdir(path: str) -> bool:
    if is_local(path):
        return os.path.isdir(path)
    return _gfile().isdir(path) and _listed_in_parent(path)


def _listed_in_parent(path: str) -> bool:
    """TF's in-memory ram:// filesystem answers exists/isdir by name prefix ("ram://run/export"
    "exists" once "ram://run/export.tmp-1" does); there, ask the parent's listing instead."""
    if not path.startswith("ram://"):
        return True
    parent, name = posixpath.split(path.rstrip("/"))
    if parent in ("ram:", "ram:/") or not name:
        return True
    return name in {entry.rstrip("/") for entry in _gfile().listdir(parent)}


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    else:
        _gfile().makedirs(path)


def prepare_out_dir(path: str, flag: str = "--out") -> None:
    """Refuse, before any work, an output directory that cannot be one: a file, a path under a
    file, or (local paths) a place this user cannot write. Creates nothing."""
    if exists(path) and not isdir(path):
        raise InputError(f"{flag} {path} is a file, expected a directory (new, empty, or an earlier run's)",
                         hint=f"choose another {flag}, or remove the file")
    local = local_path(path)
    if local is None:
        return  # remote filesystems: their own errors name the path when a write is refused
    nearest = os.path.abspath(local)
    while not os.path.lexists(nearest):
        nearest = os.path.dirname(nearest)
    if not os.path.isdir(nearest):
        raise InputError(f"{flag} {path} cannot be created: {nearest} is a file, not a directory",
                         hint=f"choose an {flag} whose parents are directories")
    if not os.access(nearest, os.W_OK | os.X_OK):
        where = "" if nearest == os.path.abspath(local) else f" (its nearest existing parent {nearest} is not writable)"
        raise ResourceError(f"permission denied: {flag} {path} is not writable{where}",
                            hint=f"choose an {flag} you can write, or fix its permissions")


def listdir(path: str) -> list[str]:
    if is_local(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    gfile = _gfile()
    return sorted(name.rstrip("/") for name in gfile.listdir(path)) if gfile.isdir(path) else []


def remove(path: str) -> None:
    if is_local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    gfile = _gfile()
    if gfile.isdir(path):
        gfile.rmtree(path)
    elif gfile.exists(path):
        gfile.remove(path)


def rename(source: str, target: str) -> None:
    """Rename a file or a directory. Where a directory cannot be renamed (TF's ram:// moves the
    directory entry without its files; some object stores refuse) its files are copied, then
    the source is deleted: not atomic there, but complete."""
    import tensorflow as tf

    gfile = tf.io.gfile
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
    gfile = _gfile()
    for directory, _, names in gfile.walk(source):
        relative = posixpath.relpath(directory, source)
        destination = target if relative == "." else join(target, relative)
        gfile.makedirs(destination)
        for name in names:
            gfile.copy(join(directory, name), join(destination, name), overwrite=True)


def size(path: str) -> int:
    return _gfile().stat(path).length


def open_file(path: str, mode: str = "rb"):
    if is_local(path) and "b" in mode:  # bytes on a local disk: Python's own file (no TensorFlow to load)
        return open(path, mode)
    return _gfile().GFile(path, mode)


def read_text(path: str) -> str:
    if is_local(path):
        with open(path, encoding="utf-8", newline="") as handle:  # newline="": the text as stored, like GFile
            return handle.read()
    with _gfile().GFile(path, "r") as handle:
        return handle.read()


def write_atomic(path: str, data: str | bytes) -> None:
    """Write to a temporary sibling, then rename: readers see the old file or the new one."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    data = data.encode("utf-8") if isinstance(data, str) else data
    if is_local(path):
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
        return
    gfile = _gfile()
    with gfile.GFile(temporary, "wb") as handle:
        handle.write(data)
    gfile.rename(temporary, path, overwrite=True)


def sha256_of(path: str, limit: int | None = None) -> tuple[str, int]:
    """(hex digest, bytes read) of a file, or of its first `limit` bytes."""
    digest = hashlib.sha256()
    remaining = limit
    read = 0
    with _gfile().GFile(path, "rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(_READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            read += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest(), read
