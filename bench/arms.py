"""The one arm runner: train a recipe ("arm": `nextword train` flags) on a DATA_DIR for a budget of training
seconds and score it on the held-out split; and the 5-gram baseline of the same DATA_DIR to set beside it.

    row = train_arm(data_dir, run_dir, budget=180, flags=["--arch", "lstm"])
    baseline = five_gram(data_dir)

Every benchmark that compares recipes (recipe_bench, arch_bench, tune_defaults, tokenizer_bench and bench/run's
quality section) goes through these two: each arm is `nextword train DATA --out RUN --time-budget B
--epochs 100000 --no-progress [flags]` then `nextword eval` in their own processes (TensorFlow's state of one
arm never leaks into the next), and every row says the same things in the same names.
"""

from __future__ import annotations

import json
import os
import shutil

from common import load_average, nextword, python_script, run_checked, run_measured
from store import code_revision, now


def dataset_fingerprint(data_dir: str) -> str | None:
    """DATA_DIR/dataset.json's fingerprint (None for a dataset written before manifests recorded it)."""
    with open(os.path.join(data_dir, "dataset.json")) as handle:
        return json.load(handle).get("fingerprint")


def train_arm(data_dir: str, run_dir: str, budget: float, flags: list[str], export: bool = False,
              score_export: bool = False, keep: bool = False) -> dict:
    """Train `flags` on DATA_DIR for `budget` seconds of training into RUN_DIR (emptied first), score it on val.

    score_export: train exports and eval scores RUN_DIR/export (what `gen` samples from: with the default
    --ngram-order, the network mixed with its n-gram; "network_perplexity"/"network_top1" are the network
    alone's, from the training summary); else eval scores RUN_DIR's best checkpoint (the network alone).
    keep: leave RUN_DIR (e.g. for its export); else it is removed once scored.
    Returns one flat row: the summary's figures (steps, stopped_by, windows_per_second, parameters, model,
    optimization, ...), the held-out figures (perplexity, top1, top5, loss, val_windows, and "val": all
    `nextword eval` printed), and where and when (load_before, dataset_fingerprint, date, code)."""
    export = export or score_export
    shutil.rmtree(run_dir, ignore_errors=True)
    load, code, fingerprint = load_average(), code_revision(), dataset_fingerprint(data_dir)
    trained = run_checked(nextword("train", data_dir, "--out", run_dir, "--time-budget", str(budget), "--epochs", "100000",
                                   "--no-progress", "--export" if export else "--no-export", *flags))
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    scored = os.path.join(run_dir, "export") if score_export else run_dir
    val = run_checked(nextword("eval", scored, data_dir, "--json")).json()
    mixed = {}
    if score_export:
        with open(os.path.join(run_dir, "export", "card.json")) as handle:
            mixed = json.load(handle).get("ngram") or {}
    network = summary.get("validation") or {}  # the whole val split, the network alone (the exported weights)
    model = summary["model_config"]
    row = {
        "flags": list(flags), "budget_s": budget,
        "steps": summary["steps"], "stopped_by": summary.get("stopped_by"), "best_step": summary.get("best_step"),
        "wall_seconds": summary.get("wall_seconds"), "process_seconds": round(trained.seconds, 1),
        "windows_per_second": summary["windows_per_second"], "parameters": summary["parameters"],
        "target_tokens_per_second": summary["windows_per_second"] * (model["context_length"] if model["objective"] == "all" else 1),
        "utilisation": (summary.get("compute") or {}).get("utilisation"),
        "model": model, "optimization": summary.get("optimization", {}), "batch_size": summary.get("batch_size"),
        "optimizer": summary.get("optimizer"), "learning_rate": summary.get("learning_rate"),
        "perplexity": val["perplexity"], "top1": val.get("top1"), "top5": val.get("top5"), "loss": val.get("loss"),
        "val_windows": val["windows"], "val": val,
        "scored": "export" if score_export else "checkpoint",
        "network_perplexity": network.get("perplexity") if score_export else None,
        "network_top1": network.get("top1") if score_export else None,
        "export": {"ngram_order": mixed.get("order", 0) if "network_weight" in mixed else 0,
                   "context_cache": bool(mixed.get("context_cache"))},
        "ngram_network_weight": mixed.get("network_weight"), "ngram_cache_weight": mixed.get("cache_weight"),
        # the card's validation-sample perplexities: network, ngram, network_and_ngram (no cache), mixture
        "ngram_sample_perplexity": mixed.get("sample_perplexity"),
        "load_before": load, "dataset_fingerprint": fingerprint, "date": now(), "code": code,
    }
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return row


def five_gram(data_dir: str, known: dict | None = None, log=print, recount: bool = False) -> dict:
    """The interpolated modified Kneser-Ney 5-gram of DATA_DIR, to store beside a benchmark's arms: counted on the
    train windows, scored on the val windows (`bench/kneser_ney.py DATA_DIR --json`, in its own process: cached in
    bench/work/kneser-ney by the dataset's fingerprint; recount: --no-cache), plus "dataset_fingerprint",
    "data_dir" and "date". `known`, the entry an earlier run stored, comes back as it is when it has figures of
    the same fingerprint (unless recount). A failure comes back as {"error", "dataset_fingerprint", ...}, so the
    arms still run and the report says the 5-gram was not measured (bench/report.py `five_gram_missing`)."""
    data_dir = os.path.abspath(data_dir)  # the process runs in the repository
    try:
        fingerprint = dataset_fingerprint(data_dir)
    except (OSError, ValueError):
        fingerprint = None  # no readable manifest: bench/kneser_ney.py says what is wrong, stored as the error
    if (not recount and known and "error" not in known and fingerprint is not None
            and known.get("dataset_fingerprint") == fingerprint):
        return known
    stamp = {"dataset_fingerprint": fingerprint, "data_dir": data_dir, "date": now()}
    measured = run_measured(python_script("kneser_ney", data_dir, "--order", "5", "--json", *(["--no-cache"] if recount else [])))
    try:
        if measured.returncode != 0:
            said = measured.stdout.strip() or measured.stderr.strip()  # its `error: ...` line, else a traceback
            raise ValueError(f"exit {measured.returncode}: {said[-1000:]}")
        result = measured.json()
    except ValueError as error:  # also a JSONDecodeError
        log(f"  5-gram Kneser-Ney of {data_dir}: not measured: `bench/kneser_ney.py` failed: {error}")
        return {"error": f"bench/kneser_ney.py {data_dir}: {error}", **stamp}
    log(f"  5-gram Kneser-Ney of {data_dir}: perplexity {result['perplexity']:.2f}, top-1 {result['top1']:.4f} "
        f"({result['windows']:,} val windows; counted in {result['seconds']:.0f} s)")
    return {**result, **stamp}
