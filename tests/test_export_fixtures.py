"""Shared fixtures for the export and gen tests: a tiny DATA_DIR and tiny exports.

`tiny_data_dir` writes a valid DATA_DIR by hand (vocab.txt, one shard, dataset.json) with
a known vocabulary. Models have random weights: no training is needed to test the
export's mechanics. Both come from nextword.model.synthetic, which bench/gen_bench.py uses too.
"""

from __future__ import annotations

import json
import os

import pytest

from nextword.model.config import ModelConfig
from nextword.model.synthetic import CONTEXT_LENGTH, WORDS, random_model, write_data_dir
from nextword.tfrecords.manifest import load_manifest

__all__ = ["CONTEXT_LENGTH", "WORDS", "model_config_for", "random_model", "read_card", "tiny_data_dir", "write_data_dir"]


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """Always this module's hand-made DATA_DIR: the tests assert on its known vocabulary
    ("the", "cat" known; "zzz" not). Parity with the real ingest is tested separately
    (tests/test_export.py runs `ingest.pipeline.run_ingest` on tricky text)."""
    return write_data_dir(str(tmp_path_factory.mktemp("data")))


def model_config_for(data_dir: str, **overrides) -> ModelConfig:
    manifest = load_manifest(data_dir)
    settings = dict(arch="lstm", layers=2, units=16, embedding_dim=8, dropout=0.0, bidirectional=False, objective="all")
    settings.update(overrides)
    return ModelConfig(vocab_size=manifest.vocab_size, context_length=manifest.context_length, **settings)


def read_card(export_dir: str) -> dict:
    with open(os.path.join(export_dir, "card.json")) as handle:
        return json.load(handle)
