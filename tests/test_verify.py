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


# ---------------------------------------------------------------- span datasets (reference writer)

SPAN_CONTEXT = 4


@pytest.fixture
def spans(tmp_path):
    from _span_data import write_span_data_dir

    documents = [[2 + (7 * d + i) % 30 for i in range(5 + 3 * d)] for d in range(12)]
    return write_span_data_dir(str(tmp_path / "spans"), {"train": documents, "val": documents[:3]}, vocab_size=32,
                               context_length=SPAN_CONTEXT, windows_per_record=4, shards={"train": 2}), documents


def test_clean_span_dataset_verifies(spans):
    from nextword.tfrecords.verify import verify_dataset

    manifest, reports = verify_dataset(spans[0])
    assert manifest.layout == "spans" and len(reports) == 3
    assert all(report.ok for report in reports), [report.problems for report in reports]


def test_span_window_counts_are_checked_against_the_manifest(spans):
    from nextword.tfrecords.verify import verify_dataset

    path = f"{spans[0]}/dataset.json"
    raw = json.loads(open(path).read())
    shard = raw["splits"]["train"]["shards"][0]
    shard["windows"] += 1
    raw["splits"]["train"]["shards"][1]["record_windows"][0][1] += 1  # histogram off, total unchanged
    open(path, "w").write(json.dumps(raw))
    _, reports = verify_dataset(spans[0])
    problems = {report.file: report.problems for report in reports if not report.ok}
    assert problems[shard["file"]] == (f"{shard['windows'] - 1} windows, the manifest says {shard['windows']}",)
    assert problems["train-00001-of-00002.tfrecord"] == ("windows per record differ from the manifest's record_windows",)


def test_damaged_span_record_is_named_without_tensorflow_text(spans):
    from nextword.tfrecords.verify import verify_dataset

    shard = f"{spans[0]}/train-00000-of-00002.tfrecord"
    data = bytearray(open(shard, "rb").read())
    data[first_record_end(shard) + 20] ^= 0xFF
    open(shard, "wb").write(bytes(data))
    _, reports = verify_dataset(spans[0])
    (problems,) = [report.problems for report in reports if not report.ok]
    # the second record is damaged: exactly one good record before it (a whole-batch read said 0)
    assert problems[0].startswith(f"damaged record 2 at byte {first_record_end(shard)} (the 1 before it are good): "
                                  "its data fails its CRC")
    assert "corrupted" not in problems[0] and "DataLoss" not in problems[0]


def test_inspect_frames_span_records_into_windows(spans):
    from _span_data import document_windows

    result = run_cli("inspect", spans[0], "--json", "--windows", "9")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    every = {(" ".join(f"w{token}" for token in window[:-1] if token), f"w{window[-1]}")
             for document in spans[1] for window in document_windows(document, SPAN_CONTEXT, 1)}
    samples = [(sample["context"], sample["target"]) for sample in summary["samples"]]
    assert len(samples) == 9 and set(samples) <= every  # 9 windows span 3+ records of <= 4 windows
