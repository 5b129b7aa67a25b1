"""Ordering a shard a bucket at a time (ingest/writer.py: shards past ORDER_BUCKET_BYTES) writes the
bytes and the manifest entry of ordering it whole, for every layout, duplicated documents included."""

import os

import numpy as np
import pytest

from nextword.ingest import writer
from nextword.ingest.windows import WindowPlan, document_keys, encode_block


def _unordered_shard(data_dir, plan, documents: int = 600, seed: int = 0) -> str:
    """A shard's unordered files as pass 2 leaves them: several blocks appended in document order,
    with some documents repeated (equal order keys) and lengths from empty to several records long."""
    rng = np.random.default_rng(seed)
    texts = [f"document {rng.integers(0, documents // 3)}".encode() for _ in range(documents)]  # repeats
    lengths = rng.choice([0, 1, 2, 3, 5, 9, 40, 300], size=documents)
    shards = writer.ShardSet(str(data_dir), plan.shard_counts)
    for block in np.array_split(np.arange(documents), 7):
        block_lengths = lengths[block]
        flat_ids = rng.integers(2, 5000, size=int(block_lengths.sum())).astype(np.int32)
        keys = document_keys([texts[index] for index in block])
        encoded = encode_block(plan, flat_ids, block_lengths, keys, np.zeros(len(block), dtype=bool))
        for split, shard, frames, info in encoded.pieces:
            shards.append(split, shard, frames, info)
    shards.checkpoint()
    shards.close()
    return shards.names[0][0]


@pytest.mark.parametrize("layout", ["packed", "spans", "windows"])
@pytest.mark.parametrize("bucket_bytes", [300, 2000, 9000])
def test_a_shard_ordered_in_buckets_equals_one_ordered_whole(tmp_path, monkeypatch, layout, bucket_bytes):
    plan = WindowPlan(context_length=6, stride=1, seed=3, shard_counts=(1, 0), layout=layout, windows_per_record=16)
    outputs = {}
    for label, limit in (("whole", 1 << 40), ("buckets", bucket_bytes)):
        data_dir = tmp_path / label
        name = _unordered_shard(data_dir, plan)
        monkeypatch.setattr(writer, "ORDER_BUCKET_BYTES", limit)
        entry = writer._order_one(str(data_dir), name, plan)
        outputs[label] = (entry, (data_dir / name).read_bytes())
        assert not [file for file in os.listdir(data_dir / writer.STATE_DIR) if ".bucket-" in file]
    assert outputs["buckets"] == outputs["whole"]
    entry, data = outputs["whole"]
    assert entry["records"] > 1 and len(data) == entry["bytes"]


def test_a_bucket_that_does_not_match_its_index_is_refused(tmp_path, monkeypatch):
    plan = WindowPlan(context_length=6, stride=1, seed=3, shard_counts=(1, 0))
    name = _unordered_shard(tmp_path, plan)
    with open(tmp_path / writer.STATE_DIR / name, "ab") as handle:
        handle.write(b"extra")
    monkeypatch.setattr(writer, "ORDER_BUCKET_BYTES", 1000)
    with pytest.raises(writer.ArtifactError, match="does not match its record index"):
        writer._order_one(str(tmp_path), name, plan)


def test_packed_bytes_do_not_depend_on_how_many_rows_are_packed_at_a_time(tmp_path, monkeypatch):
    from nextword.ingest import packing

    plan = WindowPlan(context_length=6, stride=1, seed=3, shard_counts=(1, 0), windows_per_record=16)
    outputs = []
    for label, rows, bucket_bytes in (("default", packing.PIECE_ROWS, 1 << 40), ("few rows", 5, 1 << 40),
                                      ("few rows, buckets", 5, 2000)):
        name = _unordered_shard(tmp_path / label, plan)
        monkeypatch.setattr(packing, "PIECE_ROWS", rows)
        monkeypatch.setattr(writer, "ORDER_BUCKET_BYTES", bucket_bytes)
        entry = writer._order_one(str(tmp_path / label), name, plan)
        outputs.append((entry, (tmp_path / label / name).read_bytes()))
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]
