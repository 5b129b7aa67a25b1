"""verify catches damage the CRCs alone cannot; inspect decodes windows back to words."""

import json
import shutil
import struct
import subprocess
import sys

import pytest


def run_cli(*arguments):
    return subprocess.run([sys.executable, "-m", "nextword.cli", *arguments], capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path, tiny_dataset):
    target = tmp_path / "data"
    shutil.copytree(tiny_dataset, target)
    return target


def first_record_end(path) -> int:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
    return 16 + length


def test_clean_dataset_verifies(copy):
    result = run_cli("verify", str(copy), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["shards"]) == 3


def test_cut_at_a_record_boundary_is_caught(copy):
    shard = copy / "train-00000-of-00002.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: first_record_end(shard)])  # reads back as a clean, shorter file
    result = run_cli("verify", str(copy))
    assert result.returncode == 1
    assert "BAD" in result.stderr and "train-00000-of-00002.tfrecord" in result.stderr
    assert "records, the manifest says" in result.stderr


def test_flipped_byte_and_missing_shard(copy):
    shard = copy / "train-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[first_record_end(shard) + 20] ^= 0xFF
    shard.write_bytes(bytes(data))
    (copy / "val-00000-of-00001.tfrecord").unlink()
    result = run_cli("verify", str(copy), "--json")
    assert result.returncode == 1
    bad = {entry["file"]: entry["problems"] for entry in json.loads(result.stdout)["shards"] if not entry["ok"]}
    assert set(bad) == {"train-00001-of-00002.tfrecord", "val-00000-of-00001.tfrecord"}
    assert any("damaged record" in problem for problem in bad["train-00001-of-00002.tfrecord"])
    assert bad["val-00000-of-00001.tfrecord"] == ["missing"]


def test_vocabulary_tampering_is_refused(copy):
    (copy / "vocab.txt").write_text("<pad>\n<unk>\nchanged\n")
    result = run_cli("verify", str(copy))
    assert result.returncode == 1 and "does not match the sha256" in result.stderr and "Traceback" not in result.stderr


def test_inspect_decodes_windows(tiny_dataset):
    result = run_cli("inspect", tiny_dataset, "--json", "--windows", "3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["vocab_size"] == 64 and summary["context_length"] == 8
    assert len(summary["samples"]) == 3
    vocabulary = open(f"{tiny_dataset}/vocab.txt", encoding="utf-8").read().split("\n")
    for sample in summary["samples"]:
        assert sample["target"] in vocabulary and sample["target"] != "<pad>"
