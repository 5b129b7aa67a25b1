"""Shard files written under temporary names, made durable at checkpoints, renamed at the end.

A shard only gets its final name once every window is in it, and `dataset.json` (written
last) is what makes a DATA_DIR complete, so a run killed at any moment never leaves a file
that looks complete but is not. Resuming truncates each temporary shard back to the size
recorded at the last checkpoint and carries on from there.
"""

from __future__ import annotations

import hashlib
import json
import os

from nextword import storage
from nextword.errors import ArtifactError
from tfrecords.manifest import SPLITS, Shard, shard_name

PARTIAL_SUFFIX = ".partial"
STATE_DIR = ".partial"


def local_path(path: str) -> str | None:
    """The OS path of a local DATA_DIR (plain or file://), None for remote filesystems."""
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


class ShardSet:
    """The open temporary shard files of both splits, with running sha256 and counts.

    `checkpoint()` flushes and fsyncs, returning a JSON-able state; `ShardSet(..., state)`
    resumes from one. Remote filesystems cannot truncate, so there a resume restarts pass 2.
    """

    def __init__(self, data_dir: str, shard_counts: tuple[int, int], state: dict | None = None):
        self.data_dir = data_dir
        self.names = [[shard_name(split, index, count) for index in range(count)]
                      for split, count in zip(SPLITS, shard_counts)]
        self.records = [[0] * count for count in shard_counts]
        self.sizes = [[0] * count for count in shard_counts]
        self.digests = [[hashlib.sha256() for _ in range(count)] for count in shard_counts]
        self.handles = [[None] * count for count in shard_counts]
        self._local = local_path(data_dir)
        if state is not None:
            self._restore(state)
        for split, names in enumerate(self.names):
            for index, name in enumerate(names):
                self.handles[split][index] = self._open(name, append=state is not None)

    def _temporary(self, name: str) -> str:
        return storage.join(self.data_dir, name + PARTIAL_SUFFIX)

    def _open(self, name: str, append: bool):
        if self._local is not None:
            return open(os.path.join(self._local, name + PARTIAL_SUFFIX), "ab" if append else "wb")
        return storage.open_file(self._temporary(name), "wb")

    def _restore(self, state: dict) -> None:
        if self._local is None:
            raise ArtifactError("resuming needs a local DATA_DIR")
        for split, names in enumerate(self.names):
            for index, name in enumerate(names):
                recorded = state["shards"][split][index]
                path = os.path.join(self._local, name + PARTIAL_SUFFIX)
                if not os.path.exists(path) or os.path.getsize(path) < recorded["bytes"]:
                    raise ArtifactError(f"{path} is shorter than its last checkpoint")
                with open(path, "r+b") as handle:
                    handle.truncate(recorded["bytes"])  # drop what came after the checkpoint
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(8 << 20), b""):
                        self.digests[split][index].update(chunk)
                self.sizes[split][index] = recorded["bytes"]
                self.records[split][index] = recorded["records"]

    def append(self, split: int, shard: int, frames: bytes, records: int) -> None:
        self.handles[split][shard].write(frames)
        self.digests[split][shard].update(frames)
        self.sizes[split][shard] += len(frames)
        self.records[split][shard] += records

    def checkpoint(self) -> dict:
        for handles in self.handles:
            for handle in handles:
                handle.flush()
                if self._local is not None:
                    os.fsync(handle.fileno())
        return {"shards": [[{"bytes": size, "records": records} for size, records in zip(sizes, counts)]
                           for sizes, counts in zip(self.sizes, self.records)]}

    def close(self) -> None:
        for handles in self.handles:
            for handle in handles:
                if handle is not None:
                    handle.close()

    def finished_shards(self) -> list[list[Shard]]:
        return [[Shard(file=name, records=self.records[split][index], bytes=self.sizes[split][index],
                       sha256=self.digests[split][index].hexdigest())
                 for index, name in enumerate(names)] for split, names in enumerate(self.names)]


def publish(data_dir: str, shards: list[list[Shard]]) -> None:
    """Give every temporary shard its final name (idempotent: a rerun after a kill finishes it)."""
    for split_shards in shards:
        for shard in split_shards:
            temporary = storage.join(data_dir, shard.file + PARTIAL_SUFFIX)
            if storage.exists(temporary):
                storage.rename(temporary, storage.join(data_dir, shard.file))


def read_state(data_dir: str, name: str) -> dict | None:
    path = storage.join(data_dir, STATE_DIR, name)
    if not storage.exists(path):
        return None
    try:
        return json.loads(storage.read_text(path))
    except json.JSONDecodeError:
        return None  # a state file cut mid-write is as good as none: redo that stage


def write_state(data_dir: str, name: str, state: dict) -> None:
    storage.makedirs(storage.join(data_dir, STATE_DIR))
    storage.write_atomic(storage.join(data_dir, STATE_DIR, name), json.dumps(state))
