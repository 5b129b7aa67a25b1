"""Shards written in two steps: unordered under the state dir, then each one ordered and published.

Pass 2 appends every record to its shard's UNORDERED file under `DATA_DIR/.partial/` (frames,
plus a sidecar of RECORD_INFO rows: order key, size, windows), durable at checkpoints. Files
are opened only to append a buffer and closed again, so 5,000 shards need no more than a few
open files. Then each shard is read back (one shard in memory at a time), put in its seeded
random order (`ingest.windows.order_shard`) and renamed into DATA_DIR. `dataset.json`,
written last, is what makes a DATA_DIR complete, so a run killed at any moment never leaves
a file that looks complete but is not. Resuming truncates each unordered file back to the
size recorded at the last checkpoint and carries on from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import Iterable

import numpy as np

from nextword.ingest.packing import _gather
from nextword.ingest.windows import RECORD_INFO, WindowPlan, gather_segments, iter_shard, iter_shard_buckets
from nextword import storage
from nextword.storage import local_path
from nextword.errors import ArtifactError
from nextword.tfrecords.manifest import SPLITS, Shard, shard_name
from nextword.tfrecords.spans import histogram

PARTIAL_SUFFIX = ".partial"
ORDERED_SUFFIX = ".ordered.json"  # .partial/NAME.ordered.json: shard NAME is ordered and published
LEGACY_ORDER_STATE = "order.json"  # before 0.3: every ordered shard in one file
STATE_DIR = ".partial"
INFO_SUFFIX = ".info"
BUFFER_BYTES = 4 << 20  # pending appends over all shards before they go to disk (the main process holds them)
# Ordering a shard holds its records and ~50 bytes a record of sort keys and run bounds: a shard
# whose unordered files pass this is cut into buckets of consecutive order keys first, ordered one
# at a time (on short lines a 100 MB shard held ~0.1 GB a worker, two workers at once).
ORDER_BUCKET_BYTES = 8 << 20
SCATTER_ROWS = 1 << 16  # RECORD_INFO rows (1.5 MB) cut into buckets at a time


class ShardSet:
    """The unordered shard files of both splits, with running sizes and counts.

    `checkpoint()` writes out and fsyncs, returning a JSON-able state; `ShardSet(..., state)`
    resumes from one. Remote filesystems cannot append or truncate: there every file keeps one
    handle open and a resume restarts pass 2.
    """

    def __init__(self, data_dir: str, shard_counts: tuple[int, int], state: dict | None = None):
        self.data_dir = data_dir
        self.names = [[shard_name(split, index, count) for index in range(count)]
                      for split, count in zip(SPLITS, shard_counts)]
        self.records = [[0] * count for count in shard_counts]
        self.windows = [[0] * count for count in shard_counts]
        self.sizes = [[0] * count for count in shard_counts]
        self.pending: dict[tuple[int, int], list] = {}
        self.pending_bytes = 0
        self._local = local_path(data_dir)
        self._handles: dict[str, object] = {}
        storage.makedirs(storage.join(data_dir, STATE_DIR))
        if state is not None:
            self._restore(state)
        else:
            self._create_empty()

    def unordered_path(self, split: int, index: int, suffix: str = "") -> str:
        return storage.join(self.data_dir, STATE_DIR, self.names[split][index] + suffix)

    def _create_empty(self) -> None:
        for split, names in enumerate(self.names):
            for index in range(len(names)):
                for suffix in ("", INFO_SUFFIX):
                    path = self.unordered_path(split, index, suffix)
                    if self._local is not None:
                        open(local_path(path), "wb").close()
                    else:
                        self._handles[path] = storage.open_file(path, "wb")

    def _restore(self, state: dict) -> None:
        if self._local is None:
            raise ArtifactError("resuming needs a local DATA_DIR")
        if state.get("info_bytes", 16) != RECORD_INFO.itemsize:  # written by an older nextword
            raise ArtifactError("the unordered shards hold record rows of another size")
        for split, names in enumerate(self.names):
            for index in range(len(names)):
                recorded = state["shards"][split][index]
                for suffix, size in (("", recorded["bytes"]), (INFO_SUFFIX, recorded["records"] * RECORD_INFO.itemsize)):
                    path = local_path(self.unordered_path(split, index, suffix))
                    if not os.path.exists(path) or os.path.getsize(path) < size:
                        raise ArtifactError(f"{path} is shorter than its last checkpoint")
                    with open(path, "r+b") as handle:
                        handle.truncate(size)  # drop what came after the checkpoint
                self.sizes[split][index] = recorded["bytes"]
                self.records[split][index] = recorded["records"]
                self.windows[split][index] = recorded["windows"]

    def append(self, split: int, shard: int, frames: bytes, info: np.ndarray) -> None:
        self.pending.setdefault((split, shard), []).append((frames, info))
        self.pending_bytes += len(frames) + info.nbytes
        self.sizes[split][shard] += len(frames)
        self.records[split][shard] += len(info)
        self.windows[split][shard] += int(info["windows"].sum())
        if self.pending_bytes > BUFFER_BYTES:
            self._write_pending(durable=False)

    def _write_pending(self, durable: bool) -> None:
        for (split, shard), pieces in sorted(self.pending.items()):
            self._append_file(self.unordered_path(split, shard), b"".join(frames for frames, _ in pieces), durable)
            self._append_file(self.unordered_path(split, shard, INFO_SUFFIX),
                              b"".join(info.tobytes() for _, info in pieces), durable)
        self.pending, self.pending_bytes = {}, 0

    def _append_file(self, path: str, data: bytes, durable: bool) -> None:
        if self._local is None:
            self._handles[path].write(data)
            return
        with _naming_the_file(path), open(local_path(path), "ab") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())

    def checkpoint(self) -> dict:
        self._write_pending(durable=True)
        for handle in self._handles.values():
            handle.flush()
        return {"info_bytes": RECORD_INFO.itemsize, "shards": [[{"bytes": size, "records": records, "windows": windows}
                            for size, records, windows in zip(sizes, counts, window_counts)]
                           for sizes, counts, window_counts in zip(self.sizes, self.records, self.windows)]}

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}


def order_and_publish(data_dir: str, plan: WindowPlan, progress=None, pool=None) -> list[list[Shard]]:
    """Put every unordered shard in its seeded random order and give it its final name.

    One shard in memory at a time per process: the shards still to order are jobs for `pool`
    (ingest/worker_pool.py; None: one after another here), each read, ordered, written and renamed
    by its worker. Each finished shard is recorded in its own state file,
    `.partial/NAME.ordered.json` (one file for all of them, rewritten after each, was quadratic in
    the shard count), so a rerun after a kill orders only the shards still missing (recomputing
    one that was renamed just before the kill gives the same bytes)."""
    done = read_state(data_dir, LEGACY_ORDER_STATE) or {}  # an unfinished ingest of an earlier nextword
    names = [shard_name(split, index, count) for split, count in zip(SPLITS, plan.shard_counts) for index in range(count)]
    entries = {}
    for name in names:
        entry = done.get(name) or read_state(data_dir, name + ORDERED_SUFFIX)
        if entry is not None and storage.exists(storage.join(data_dir, name)):
            entries[name] = entry
    missing = [name for name in names if name not in entries]
    if pool is None:
        ordered = (_order_one(data_dir, name, plan) for name in missing)
    else:
        ordered = (future.result() for future in [pool.submit(_order_one, data_dir, name, plan) for name in missing])
    for name, entry in zip(missing, ordered):
        write_state(data_dir, name + ORDERED_SUFFIX, entry)
        entries[name] = entry
        if progress is not None:
            progress()
    for _ in range(len(names) - len(missing)):
        if progress is not None:
            progress()
    shards, first = [], 0
    for count in plan.shard_counts:
        shards.append([Shard(**{**entries[name], "record_windows": tuple(map(tuple, entries[name]["record_windows"]))})
                       for name in names[first:first + count]])
        first += count
    return shards


def _order_one(data_dir: str, name: str, plan: WindowPlan) -> dict:
    unordered = storage.join(data_dir, STATE_DIR, name)
    temporary = storage.join(data_dir, STATE_DIR, name + ".ordered")
    local = local_path(unordered)
    held = storage.size(unordered) + storage.size(unordered + INFO_SUFFIX) if local is not None else 0
    if held > ORDER_BUCKET_BYTES:  # a bucket of the shard at a time
        buckets = _scatter(local, name, -(-held // ORDER_BUCKET_BYTES))
        windows, written = [], [0]

        def each_bucket():
            for frames, info in buckets:
                windows.append(info["windows"].copy())
                yield frames, info

        entry = write_shard_file(temporary, name, iter_shard_buckets(plan, each_bucket(), written), durable=True,
                                 info=lambda: np.concatenate(windows).view([("windows", "<u4")]) if windows else
                                 np.zeros(0, RECORD_INFO), records=lambda: written[0])
    else:
        with storage.open_file(unordered, "rb") as handle:
            frames = handle.read()
        with storage.open_file(unordered + INFO_SUFFIX, "rb") as handle:
            info = np.frombuffer(handle.read(), dtype=RECORD_INFO)
        if int(info["size"].sum(dtype=np.int64)) != len(frames):
            raise _mismatch(unordered)
        pieces, info, records = iter_shard(plan, frames, info)
        entry = write_shard_file(temporary, name, pieces, info, durable=True, records=records)
    storage.rename(temporary, storage.join(data_dir, name))
    return entry


def _mismatch(unordered: str) -> ArtifactError:
    return ArtifactError(f"{unordered} does not match its record index {unordered + INFO_SUFFIX}",
                         hint="run the same ingest command with --overwrite to start over")


def _scatter(unordered: str, name: str, count: int):
    """Cut a local unordered shard into `count` bucket files of consecutive order keys (the keys are
    uniform hashes, so buckets come out ~equal), streaming it in chunks of rows; each bucket keeps
    its records in arrival order, so equal keys (duplicated documents) keep it as in one piece.
    Returns an iterator of (frames, RECORD_INFO rows) per bucket, in key order, each read back and
    removed in its turn. Memory: a chunk while cutting, then a bucket."""
    directory = os.path.dirname(unordered)
    paths = [os.path.join(directory, f"{name}.bucket-{index:04d}") for index in range(count)]
    for path in paths:
        for suffix in ("", INFO_SUFFIX):
            open(path + suffix, "wb").close()
    with open(unordered, "rb") as frames_file, open(unordered + INFO_SUFFIX, "rb") as info_file:
        while rows := info_file.read(SCATTER_ROWS * RECORD_INFO.itemsize):
            info = np.frombuffer(rows, dtype=RECORD_INFO)
            frames = frames_file.read(int(info["size"].sum(dtype=np.int64)))
            offsets = np.zeros(len(info) + 1, dtype=np.int64)
            np.cumsum(info["size"], out=offsets[1:])
            if len(frames) != offsets[-1]:
                raise _mismatch(unordered)
            # bucket = floor(key / 2^64 * count), from the key's top 32 bits: monotone in the key
            bucket = ((info["order"] >> np.uint64(32)) * np.uint64(count)) >> np.uint64(32)
            arranged = np.argsort(bucket, kind="stable")
            ends = np.searchsorted(bucket[arranged], np.arange(count, dtype=np.uint64), side="right")
            sizes = info["size"][arranged].astype(np.int64)
            if offsets[-1] < 64 * len(info):  # short records (packed ids): one numpy gather, not a slice each
                arranged_frames = _gather(np.frombuffer(frames, dtype=np.uint8), offsets[arranged], sizes).tobytes()
            else:
                arranged_frames = gather_segments(frames, offsets[arranged], sizes)
            arranged_info = info[arranged]
            frame_ends = np.cumsum(info["size"][arranged], dtype=np.int64)
            first = 0
            for index in np.flatnonzero(np.diff(ends, prepend=0)):
                end = int(ends[index])
                start_byte = int(frame_ends[first - 1]) if first else 0
                with _naming_the_file(paths[index]), open(paths[index], "ab") as handle:
                    handle.write(arranged_frames[start_byte:int(frame_ends[end - 1])])
                with _naming_the_file(paths[index] + INFO_SUFFIX), open(paths[index] + INFO_SUFFIX, "ab") as handle:
                    handle.write(arranged_info[first:end].tobytes())
                first = end
        if frames_file.read(1):
            raise _mismatch(unordered)

    def buckets():
        for path in paths:
            with open(path, "rb") as handle:
                frames = handle.read()
            with open(path + INFO_SUFFIX, "rb") as handle:
                info = np.frombuffer(handle.read(), dtype=RECORD_INFO)
            for suffix in ("", INFO_SUFFIX):
                os.remove(path + suffix)
            yield frames, info

    return buckets()


@contextlib.contextmanager
def _naming_the_file(path: str):
    """A failed write() (disk full, file size limit) names no file; the user needs to know which."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = path
        raise


def write_shard_file(path: str, name: str, pieces: Iterable[bytes], info, durable: bool = False,
                     records=None) -> dict:
    """Write a shard's ordered pieces to `path` (one piece in memory at a time) and return its
    manifest entry (JSON-able): both runners write shards through this. info: a RECORD_INFO row
    per span (per record unless packed), or only their "windows"; records: the records written
    (default len(info)). Either may be a function, called once the pieces are written (the
    bucketed ordering knows them only then). The histogram counts windows per span: what the
    reader's epoch plan selects from."""
    digest, size = hashlib.sha256(), 0
    local = local_path(path)
    with _naming_the_file(path), (open(local, "wb") if local is not None else storage.open_file(path, "wb")) as handle:
        for piece in pieces:
            handle.write(piece)
            digest.update(piece)
            size += len(piece)
        if durable and local is not None:
            handle.flush()
            os.fsync(handle.fileno())
    info = info() if callable(info) else info
    records = records() if callable(records) else records
    return dict(file=name, records=len(info) if records is None else records, bytes=size, sha256=digest.hexdigest(),
                windows=int(info["windows"].sum(dtype=np.int64)),
                record_windows=[list(pair) for pair in histogram(info["windows"])])


def publish(data_dir: str, names: list[str]) -> None:
    """Give shards written as `name.partial` in DATA_DIR their final name (idempotent)."""
    for name in names:
        temporary = storage.join(data_dir, name + PARTIAL_SUFFIX)
        if storage.exists(temporary):
            storage.rename(temporary, storage.join(data_dir, name))


def ordered_shards(data_dir: str) -> int:
    """How many shards the ordering stage has finished (for the resume message)."""
    state_dir = storage.join(data_dir, STATE_DIR)
    names = storage.listdir(state_dir) if storage.isdir(state_dir) else []
    return sum(name.endswith(ORDERED_SUFFIX) for name in names) + len(read_state(data_dir, LEGACY_ORDER_STATE) or {})


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
