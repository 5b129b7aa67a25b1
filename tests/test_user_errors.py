"""A user's mistake ends in a message that says what to do and a documented exit code, never in
"unexpected …: this is a bug" or a traceback (issue 13, items 2 and 3). Each case runs the real
CLI in-process through its boundary (tests/_cli.py); eval and verify check what they claim."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct

import numpy as np
import pytest

from _cli import run_cli
from test_export_fixtures import model_config_for, random_model


def assert_message(result, exit_code: int, *phrases: str) -> None:
    assert result.exit_code == exit_code, result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.output
    for bug in ("Traceback", "unexpected", "this is a bug"):
        assert bug not in result.output, result.output


def ingest_args(corpus: str, out: str, *extra: str) -> list[str]:
    return ["ingest", corpus, "--out", out, "--vocab-size", "64", "--context", "8", "--shards", "2",
            "--val-fraction", "0.2", "--seed", "1", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def export_dir(tiny_dataset, tmp_path_factory) -> str:
    """An export (random weights: eval's checks need no training) of a model for `tiny_dataset`."""
    from nextword.model.export import export_model

    config = model_config_for(tiny_dataset, layers=1, units=8)
    path = str(tmp_path_factory.mktemp("run") / "export")
    export_model(random_model(config, seed=1), config, tiny_dataset, path, {"steps": 0})
    return path


@pytest.fixture
def data_copy(tmp_path, tiny_dataset) -> str:
    return str(shutil.copytree(tiny_dataset, tmp_path / "data"))


# ---------------------------------------------------------------- inspect / verify / plot

def test_inspect_windows_zero_is_the_summary_and_negative_is_refused(tiny_dataset):
    result = run_cli("inspect", tiny_dataset, "--windows", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == []
    assert_message(run_cli("inspect", tiny_dataset, "--windows", "-2"), 2, "--windows must be 0", "got -2")


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_missing_vocabulary_is_named(data_copy, command):
    os.remove(os.path.join(data_copy, "vocab.txt"))
    assert_message(run_cli(command, data_copy), 1, "has no vocab.txt", "restore the file")


@pytest.mark.parametrize("text", ['{"steps": [{"step": 1, "lo', "[1, 2]", '{"steps": [{"loss": 2.5}]}'])
def test_plot_on_a_damaged_history(tmp_path, text):
    (tmp_path / "history.json").write_text(text)
    assert_message(run_cli("plot", str(tmp_path)), 1, "history.json is not", "tensorboard --logdir")


# ---------------------------------------------------------------- --out that cannot be a directory

@pytest.mark.parametrize("command", ["ingest", "train"])
def test_out_that_is_a_file_or_under_a_file(tmp_path, tiny_corpus, tiny_dataset, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")

    def run(out):
        if command == "ingest":
            return run_cli(*ingest_args(tiny_corpus, out))
        return run_cli("train", tiny_dataset, "--out", out, "--max-steps", "1", "--no-progress", "--no-export")

    assert_message(run(str(a_file)), 2, f"--out {a_file} is a file")
    assert_message(run(str(a_file / "sub")), 2, f"{a_file} is a file, not a directory")


@pytest.mark.parametrize("command", ["ingest", "train"])
def test_out_that_is_not_writable(tmp_path, tiny_corpus, tiny_dataset, command):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        # root writes a 0o500 directory anyway; /proc/sys refuses even root
        out = str(locked / "out") if not os.access(locked, os.W_OK) else "/proc/sys/nextword-out"
        result = (run_cli(*ingest_args(tiny_corpus, out)) if command == "ingest" else
                  run_cli("train", tiny_dataset, "--out", out, "--max-steps", "1", "--no-progress", "--no-export"))
        assert_message(result, 74, "permission denied", "is not writable")
    finally:
        locked.chmod(0o700)


def test_parquet_column_that_is_not_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "rows.parquet")
    pq.write_table(pa.table({"text": ["a b c d e", "f g h"], "count": [1, 2]}), path)
    result = run_cli("ingest", path, "--column", "count", "--out", str(tmp_path / "out"), "--workers", "1")
    assert_message(result, 2, "column 'count' holds int64 values, not text", "--column with a string column ('text')")
    assert not (tmp_path / "out").exists()  # refused before any work


# ---------------------------------------------------------------- eval checks what it claims

def test_eval_on_a_dataset_with_a_larger_vocabulary(export_dir, tiny_corpus, tmp_path):
    other = str(tmp_path / "vocab100")
    args = ingest_args(tiny_corpus, other)
    args[args.index("--vocab-size") + 1] = "100"
    assert run_cli(*args).exit_code == 0
    assert_message(run_cli("eval", export_dir, other), 1, "vocabulary of 64 words", "100 words",
                   "the dataset the model was trained on")


def test_eval_refuses_a_vocabulary_of_the_same_size_with_other_words(export_dir, data_copy):
    words = open(os.path.join(data_copy, "vocab.txt"), encoding="utf-8").read().split("\n")
    words[2], words[3] = words[3], words[2]  # same 64 words, two ids swapped
    data = "\n".join(words).encode("utf-8")
    open(os.path.join(data_copy, "vocab.txt"), "wb").write(data)
    manifest = json.load(open(os.path.join(data_copy, "dataset.json")))
    manifest["vocab_sha256"] = hashlib.sha256(data).hexdigest()
    json.dump(manifest, open(os.path.join(data_copy, "dataset.json"), "w"))
    assert_message(run_cli("eval", export_dir, data_copy), 1, "same size, different words")


def test_eval_on_an_empty_validation_split(export_dir, tiny_corpus, tmp_path):
    no_val = str(tmp_path / "noval")
    args = ingest_args(tiny_corpus, no_val)
    args[args.index("--val-fraction") + 1] = "0"
    assert run_cli(*args).exit_code == 0
    assert_message(run_cli("eval", export_dir, no_val), 2, "the val split of", "is empty", "--split train")


def test_eval_verifies_the_export_card(export_dir, tiny_dataset, tmp_path):
    assert run_cli("eval", export_dir, tiny_dataset, "--json").exit_code == 0  # the untouched export scores
    tampered = str(shutil.copytree(export_dir, tmp_path / "export"))
    variables = os.path.join(tampered, "saved_model", "variables")
    data = sorted(name for name in os.listdir(variables) if name.startswith("variables.data"))[0]
    with open(os.path.join(variables, data), "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert_message(run_cli("eval", tampered, tiny_dataset), 1, "fails its sha256 check", "nothing was loaded")
    os.remove(os.path.join(tampered, "card.json"))
    assert_message(run_cli("eval", tampered, tiny_dataset), 1, "has no card.json")


# ---------------------------------------------------------------- verify: exact counts, our words

def record_offsets(path: str) -> list[int]:
    data = open(path, "rb").read()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 16 + struct.unpack("<Q", data[offset:offset + 8])[0]
    return offsets


def damage_middle(data_dir: str, how: str) -> tuple[str, int, int]:
    """Flip a data byte of, or cut inside, the middle record of a train shard: (file, record, byte)."""
    name = "train-00000-of-00002.tfrecord"
    path = os.path.join(data_dir, name)
    offsets = record_offsets(path)
    index = len(offsets) // 2
    data = bytearray(open(path, "rb").read())
    if how == "flip":
        data[offsets[index] + 14] ^= 0xFF
    else:
        del data[offsets[index] + 20:]
    open(path, "wb").write(bytes(data))
    return name, index, offsets[index]


@pytest.mark.parametrize("how, detail", [("flip", "its data fails its CRC"), ("cut", "the file is cut inside it")])
@pytest.mark.parametrize("read_batch", [8192, 5])  # one batch holds the damage / it is several batches in
def test_verify_counts_good_records_exactly(data_copy, monkeypatch, how, detail, read_batch):
    monkeypatch.setattr("nextword.tfrecords.verify.READ_BATCH", read_batch)
    name, index, offset = damage_middle(data_copy, how)
    result = run_cli("verify", data_copy, "--json")
    assert result.exit_code == 1, result.output
    (bad,) = [shard for shard in json.loads(result.stdout)["shards"] if not shard["ok"]]
    assert bad["file"] == name and bad["records"] == index  # exact, not the last whole batch's end
    damaged = [problem for problem in bad["problems"] if problem.startswith("damaged record")]
    assert damaged == [damaged[0]] and damaged[0].startswith(
        f"damaged record {index + 1:,} at byte {offset:,} (the {index:,} before it are good): {detail}")
    for raw in ("DataLoss", "corrupted record", "[Op:", "truncated record"):
        assert raw not in result.output


def test_verify_in_the_terminal_names_the_record(data_copy):
    name, index, _ = damage_middle(data_copy, "flip")
    assert_message(run_cli("verify", data_copy), 1, f"{name}  {index:,} records", f"damaged record {index + 1:,}")


def test_unordered_shard_that_mismatches_its_info_sidecar(tiny_corpus, tmp_path):
    """An ingest stopped while shuffling shards resumes from its unordered shards; one whose
    `.info` record index does not match it is an ArtifactError, not a crash."""
    from nextword.ingest.pipeline import run_ingest
    from nextword.ingest.settings import IngestSettings
    from nextword.ingest.windows import RECORD_INFO
    from nextword.ingest.writer import INFO_SUFFIX, STATE_DIR

    out = str(tmp_path / "data")

    class Stop(Exception):
        pass

    def stop_while_shuffling(stage, done, total, windows):
        if stage == "shuffling shards":
            raise Stop

    with pytest.raises(Stop):
        run_ingest(IngestSettings(inputs=(tiny_corpus,), out=out, vocab_size=64, context_length=8, shards=2,
                                  val_fraction=0.2, seed=1, workers=1), progress=stop_while_shuffling)
    info_path = os.path.join(out, STATE_DIR, "train-00001-of-00002.tfrecord" + INFO_SUFFIX)
    info = np.fromfile(info_path, dtype=RECORD_INFO)
    info["size"][0] += 1
    info.tofile(info_path)
    assert_message(run_cli(*ingest_args(tiny_corpus, out)), 1, "does not match its record index")
