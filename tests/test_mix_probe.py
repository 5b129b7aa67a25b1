"""bench/mix_probe.py on a real (tiny) dataset and a random-weight export: its 5-gram is the baseline's,
its buckets cover every window, and the mixture is no worse than the worse of its two parts."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import mix_probe  # noqa: E402
from nextword.model.export import export_model  # noqa: E402
from nextword.model.ngram import baseline  # noqa: E402
from test_export_fixtures import model_config_for, random_model  # noqa: E402


def test_the_probe_scores_both_models_on_every_val_window(tiny_dataset, tmp_path, monkeypatch, capsys):
    config = model_config_for(tiny_dataset, arch="transformer", layers=1, units=16, embedding_dim=16, heads=2,
                              dropout=0.0, objective="all")
    export_model(random_model(config), config, tiny_dataset, str(tmp_path / "run" / "export"), {})
    monkeypatch.setattr(sys, "argv", ["mix_probe", str(tmp_path / "run"), tiny_dataset, "--json"])
    assert mix_probe.main() == 0
    result = json.loads(capsys.readouterr().out)
    reference = baseline(tiny_dataset)
    assert abs(result["five_gram"]["perplexity"] - reference["perplexity"]) < 0.01
    assert result["five_gram"]["windows"] == result["network"]["windows"] == reference["windows"] > 0
    assert abs(sum(bucket["share"] for bucket in result["buckets"].values()) - 1) < 1e-3
    worse = max(result["network"]["perplexity"], result["five_gram"]["perplexity"])
    assert result["mixture"]["perplexity_two_fold"] <= worse + 0.01
    assert 0 <= result["mixture"]["top1_two_fold"] <= 1
    assert result["temperature"]["perplexity_two_fold"] > 0
