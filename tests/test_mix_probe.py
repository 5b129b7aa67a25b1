"""bench/mix_probe.py, run as the script it is, on a real (tiny) dataset and a random-weight export: its 5-gram is
the baseline's, its buckets cover every window, and the mixture is no worse than the worse of its two parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nextword.model.export import export_model
from nextword.model.ngram import baseline
from test_export_fixtures import model_config_for, random_model

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "mix_probe.py")


def test_the_probe_scores_both_models_on_every_val_window(tiny_dataset, tmp_path):
    config = model_config_for(tiny_dataset, arch="transformer", layers=1, units=16, embedding_dim=16, heads=2,
                              dropout=0.0, objective="all")
    export_model(random_model(config), config, tiny_dataset, str(tmp_path / "run" / "export"), {})
    done = subprocess.run([sys.executable, SCRIPT, str(tmp_path / "run"), tiny_dataset, "--json"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    reference = baseline(tiny_dataset)
    assert abs(result["five_gram"]["perplexity"] - reference["perplexity"]) < 0.01
    assert result["five_gram"]["windows"] == result["network"]["windows"] == reference["windows"] > 0
    assert abs(sum(bucket["share"] for bucket in result["buckets"].values()) - 1) < 1e-3
    worse = max(result["network"]["perplexity"], result["five_gram"]["perplexity"])
    assert result["mixture"]["perplexity_two_fold"] <= worse + 0.01
    assert 0 <= result["mixture"]["top1_two_fold"] <= 1
    assert result["temperature"]["perplexity_two_fold"] > 0
